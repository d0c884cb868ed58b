"""``tagdns hosts`` and HostsSync end to end: the real console script, real files,
a real dnsmasq answering dig, and a real bind mount in a mount namespace."""

from __future__ import annotations

import ipaddress
import json
import os
import plistlib
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from devsupport.net import free_port
from resolver.cli import main
from resolver.config import HostsConfig, load_config
from resolver.core.document import parse_document
from resolver.core.views import build_view
from resolver.errors import HostsFileError
from resolver.hosts_sync import HostsSync
from tests.integration import dns_helpers
from tests.integration.dns_helpers import DNSMASQ, AgentProcess, dnsmasq

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "conf" / "example-mapping.json"
TAGDNS = Path(sys.executable).with_name("tagdns")
DIG = shutil.which("dig")
UNSHARE = shutil.which("unshare")

USER_LINES = (
    b"127.0.0.1\tlocalhost\n"
    b"# The following lines are desirable for IPv6 capable hosts\n"
    b"::1     ip6-localhost ip6-loopback\n"
    b"\n"
    b"10.20.30.40 printer.office printer   # caf\xe9 (latin-1)\r\n"
)
STALE_BLOCK = b"# BEGIN tagdns\n# old\n10.9.9.9 gone.internal gone\n# END tagdns\n"
USER_TAIL = b"192.168.1.5 nas\n# last line has no newline"


def tagdns(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TAGDNS), *args], capture_output=True, text=True, timeout=30, check=False, cwd=cwd
    )


def example() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return raw


def write_document(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(json.dumps(raw))
    return path


def add_host(raw: dict[str, Any], name: str, address: str, serial_step: int = 1) -> None:
    raw["hosts"].append(
        {
            "name": name,
            "region": "us-east-1",
            "instance_id": "i-0fedcba9876543210",
            "az": "us-east-1a",
            "private_ipv4": address,
            "public_ipv4": None,
            "ipv6": [],
        }
    )
    raw["serial"] += serial_step


def split_block(content: bytes) -> tuple[bytes, bytes]:
    """(everything but the block, the block)."""
    start = content.index(b"# BEGIN tagdns\n")
    end = content.index(b"# END tagdns\n") + len(b"# END tagdns\n")
    return content[:start] + content[end:], content[start:end]


# --- the acceptance path -----------------------------------------------------------------


def test_hosts_keeps_user_lines_replaces_the_block_then_does_nothing(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(USER_LINES + STALE_BLOCK + USER_TAIL)
    os.chmod(hosts, 0o640)

    first = tagdns("hosts", "--source", str(EXAMPLE), "--view", "us-east-1", "--output", str(hosts))
    assert first.returncode == 0, first.stderr
    assert "managed block updated" in first.stdout
    content = hosts.read_bytes()
    user, block = split_block(content)
    assert user == USER_LINES + USER_TAIL  # every user byte, in place
    assert content.startswith(USER_LINES + b"# BEGIN tagdns\n")
    assert b"gone" not in block
    assert b"10.0.1.10 web1.internal web1\n" in block  # local: private, qualified
    assert b"10.0.2.20 web2.internal web2\n" in block
    assert stat.S_IMODE(hosts.stat().st_mode) == 0o640

    before = os.stat(hosts)
    second = tagdns(
        "hosts", "--source", str(EXAMPLE), "--view", "us-east-1", "--output", str(hosts)
    )
    assert second.returncode == 0, second.stderr
    assert "managed block unchanged" in second.stdout
    after = os.stat(hosts)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert hosts.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts"]


def test_public_view_to_stdout_has_public_addresses_only(tmp_path: Path) -> None:
    done = tagdns("hosts", "--source", f"file://{EXAMPLE}", "--view", "public", "--output", "-")
    assert done.returncode == 0, done.stderr
    hosts = example()["hosts"]
    public = {h["public_ipv4"] for h in hosts if h["public_ipv4"]} | {
        a for h in hosts for a in h["ipv6"]
    }
    private = {h["private_ipv4"] for h in hosts}
    lines = done.stdout.splitlines()
    assert lines[0] == "# BEGIN tagdns"
    assert lines[-1] == "# END tagdns"
    data = [line.split() for line in lines if not line.startswith("#")]
    assert data
    for address, *names in data:
        assert address in public
        assert address not in private
        ipaddress.ip_address(address)
        assert names == [f"{names[1]}.internal", names[1]]
    assert {names[1] for _, *names in data} == {h["name"] for h in hosts if h["public_ipv4"]}
    assert "batch (i-00000000000000006: no public IPv4 address)" in done.stderr


def test_hostile_document_leaves_the_file_untouched(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(USER_LINES + STALE_BLOCK)
    before = (hosts.read_bytes(), os.stat(hosts).st_mtime_ns)
    raw = example()
    raw["hosts"][0]["name"] = "evil\n127.0.0.1 bank.example.com"
    hostile = write_document(tmp_path / "hostile.json", raw)
    done = tagdns("hosts", "--source", str(hostile), "--view", "public", "--output", str(hosts))
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"tagdns: {hostile}: hosts[0].name: ")
    assert line.endswith("nothing written")
    assert (hosts.read_bytes(), os.stat(hosts).st_mtime_ns) == before


@pytest.mark.parametrize(
    ("existing", "output", "code", "message"),
    [
        (None, "absent/hosts", 1, r"^tagdns: \S+/absent/hosts: directory \S+ does not exist$"),
        (
            b"x\n# BEGIN tagdns\n# BEGIN tagdns\n# END tagdns\n",
            "hosts",
            1,
            r"^tagdns: \S+/hosts: line 3: a second '# BEGIN tagdns'",
        ),
    ],
    ids=["missing-directory", "broken-markers"],
)
def test_bad_targets_are_one_line_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    existing: bytes | None,
    output: str,
    code: int,
    message: str,
) -> None:
    target = tmp_path / output
    if existing is not None:
        target.write_bytes(existing)
    args = ["hosts", "--source", str(EXAMPLE), "--view", "public", "--output", str(target)]
    assert main(args) == code
    errors = [line for line in capsys.readouterr().err.splitlines() if "note:" not in line]
    assert len(errors) == 1
    assert re.match(message, errors[0]), errors[0]
    if existing is not None:
        assert target.read_bytes() == existing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "invalid choice: 'xml'"),
        (["--view", "mars"], "[view] region 'mars' is not a region, public or auto"),
        (["--source", "ftp://x/y"], "only s3://, file:// and plain paths"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["hosts", "--source", str(EXAMPLE), *args]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert message in line


# --- dnsmasq -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "existing",
    [USER_LINES, USER_LINES + STALE_BLOCK + USER_TAIL, b"10.0.0.1 web\n"],
    ids=["etc-hosts", "etc-hosts-with-block", "someone-elses-addn-hosts"],
)
def test_dnsmasq_format_never_replaces_a_file_tagdns_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], existing: bytes
) -> None:
    """``--format dnsmasq --output /etc/hosts`` would otherwise erase localhost and every
    user line: the dnsmasq file is written whole."""
    victim = tmp_path / "victim"
    victim.write_bytes(existing)
    args = ["hosts", "--source", str(EXAMPLE), "--view", "us-east-1"]
    assert main([*args, "--format", "dnsmasq", "--output", str(victim)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "note:" not in line]
    assert errors == [
        f"tagdns: {victim}: not a dnsmasq file written by tagdns (its first line is not "
        "tagdns's header), so it is not replaced whole; name another file, or remove or "
        "empty this one first"
    ]
    assert victim.read_bytes() == existing
    # What tagdns wrote (and an empty file) it replaces, as before.
    victim.write_bytes(b"")
    assert main([*args, "--format", "dnsmasq", "--output", str(victim)]) == 0
    assert main([*args, "--view", "public", "--format", "dnsmasq", "--output", str(victim)]) == 0
    assert b"(view public, zone internal)" in victim.read_bytes()


def test_the_agents_feeder_never_replaces_a_file_tagdns_did_not_write(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(USER_LINES)
    feed = tmp_path / "dnsmasq.hosts"
    feed.write_bytes(USER_LINES)
    sync = HostsSync(HostsConfig(path=str(hosts), dnsmasq_file=str(feed)), "internal")
    view = build_view(parse_document(EXAMPLE.read_bytes()), "us-east-1", "internal")
    with pytest.raises(HostsFileError, match=rf"^{feed}: not a dnsmasq file written by tagdns"):
        sync.apply(view)
    assert feed.read_bytes() == USER_LINES
    assert hosts.read_bytes().startswith(USER_LINES + b"# BEGIN tagdns\n")  # still written


def dig(port: int, name: str, qtype: str = "A") -> list[str]:
    assert DIG is not None
    done = subprocess.run(
        [DIG, "@127.0.0.1", "-p", str(port), "+short", "+time=1", "+tries=2", name, qtype],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return sorted(done.stdout.split())


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


needs_dnsmasq = pytest.mark.skipif(
    not DNSMASQ.exists() or DIG is None, reason="needs /usr/sbin/dnsmasq and dig"
)


@needs_dnsmasq
def test_dnsmasq_answers_from_the_dnsmasq_format_and_reloads(tmp_path: Path) -> None:
    feed = tmp_path / "dnsmasq.hosts"
    pidfile = tmp_path / "dnsmasq.pid"
    config = tmp_path / "tagdns.toml"
    config.write_text(
        f'[source]\nurl = "{EXAMPLE}"\n[view]\nregion = "us-east-1"\n'
        f'[hosts]\ndnsmasq_file = "{feed}"\ndnsmasq_pidfile = "{pidfile}"\n'
    )
    first = tagdns("hosts", "--config", str(config), "--format", "dnsmasq")
    assert first.returncode == 0, first.stderr
    assert "dnsmasq is not running" in first.stdout
    with dnsmasq(f"--addn-hosts={feed}", pidfile=pidfile) as running:
        port = running.port
        assert dig(port, "web1.internal") == ["10.0.1.10"]
        assert dig(port, "web1") == ["10.0.1.10"]
        assert dig(port, "api.internal") == ["10.0.1.10", "10.0.2.21"]
        assert dig(port, "api.internal", "AAAA") == ["2600:1f18:1::10"]

        raw = example()
        add_host(raw, "newbox", "10.0.7.7")
        document = write_document(tmp_path / "mapping.json", raw)
        second = tagdns(
            "hosts", "--config", str(config), "--source", str(document), "--format", "dnsmasq"
        )
        assert second.returncode == 0, second.stderr
        assert "sent SIGHUP to dnsmasq" in second.stdout
        wait_for(lambda: dig(port, "newbox.internal") == ["10.0.7.7"])
        assert dig(port, "web1.internal") == ["10.0.1.10"]

        # Same names, new serial: nothing written, nobody signalled.
        raw["serial"] += 1
        write_document(document, raw)
        third = tagdns(
            "hosts", "--config", str(config), "--source", str(document), "--format", "dnsmasq"
        )
        assert third.returncode == 0, third.stderr
        assert "unchanged" in third.stdout
        assert "SIGHUP" not in third.stdout


@needs_dnsmasq
def test_a_failed_sighup_is_noted_in_the_file_and_retried_by_the_next_run(
    tmp_path: Path,
) -> None:
    """An unchanged file asks for no signal, so a failed one must leave a trace in it."""
    feed = tmp_path / "dnsmasq.hosts"
    pidfile = tmp_path / "dnsmasq.pid"
    config = tmp_path / "tagdns.toml"
    config.write_text(
        f'[source]\nurl = "{EXAMPLE}"\n[view]\nregion = "us-east-1"\n'
        f'[hosts]\ndnsmasq_file = "{feed}"\ndnsmasq_pidfile = "{pidfile}"\n'
    )
    assert tagdns("hosts", "--config", str(config), "--format", "dnsmasq").returncode == 0
    raw = example()
    add_host(raw, "newbox", "10.0.7.7")
    document = write_document(tmp_path / "mapping.json", raw)
    run = ("hosts", "--config", str(config), "--source", str(document), "--format", "dnsmasq")
    with dnsmasq(f"--addn-hosts={feed}", pidfile=pidfile) as running:
        real_pid = pidfile.read_text()
        stranger = subprocess.Popen(["sleep", "30"])
        try:
            pidfile.write_text(f"{stranger.pid}\n")  # a stale pidfile: no signal can go out
            failed = tagdns(*run)
        finally:
            stranger.kill()
            stranger.wait()
        assert failed.returncode == 1
        error = failed.stderr.splitlines()[-1]  # after the note on names left out
        assert "not dnsmasq; not signalling it" in error
        assert "noted so that the next run signals again" in error
        assert feed.read_bytes().endswith(b"the next run tells it\n")
        assert dig(running.port, "newbox.internal") == []

        pidfile.write_text(real_pid)
        retried = tagdns(*run)
        assert retried.returncode == 0, retried.stderr
        assert "sent SIGHUP to dnsmasq" in retried.stdout
        wait_for(lambda: dig(running.port, "newbox.internal") == ["10.0.7.7"])
        assert b"tagdns: dnsmasq could not" not in feed.read_bytes()


@needs_dnsmasq
def test_hosts_sync_keeps_both_files_and_dnsmasq_in_step(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(USER_LINES)
    feed = tmp_path / "dnsmasq.hosts"
    pidfile = tmp_path / "dnsmasq.pid"
    sync = HostsSync(
        HostsConfig(path=str(hosts), dnsmasq_file=str(feed), dnsmasq_pidfile=str(pidfile)),
        "internal",
    )
    raw = example()
    view = build_view(parse_document(json.dumps(raw).encode()), "us-east-1", "internal")
    changes = sync.apply(view)
    assert [c.split(":")[0] for c in changes[:2]] == [str(hosts), str(feed)]
    assert "dnsmasq is not running" in changes[2]
    assert sync.apply(view) == []
    with dnsmasq(f"--addn-hosts={feed}", pidfile=pidfile) as running:
        port = running.port
        add_host(raw, "added", "10.0.8.8")
        newer = build_view(parse_document(json.dumps(raw).encode()), "us-east-1", "internal")
        changes = sync.apply(newer)
        assert len(changes) == 3
        assert changes[2].startswith("sent SIGHUP to dnsmasq")
        wait_for(lambda: dig(port, "added.internal") == ["10.0.8.8"])
        assert b"10.0.8.8 added.internal added\n" in hosts.read_bytes()
        assert hosts.read_bytes().startswith(USER_LINES)

    # A failing file is reported as one line; the other file is still written.
    hosts.write_bytes(b"# END tagdns\n")
    add_host(raw, "later", "10.0.9.9")
    latest = build_view(parse_document(json.dumps(raw).encode()), "us-east-1", "internal")
    with pytest.raises(HostsFileError, match=rf"^{hosts}: line 1: no '# BEGIN tagdns'") as caught:
        sync.apply(latest)
    assert "\n" not in str(caught.value)
    assert b"10.0.9.9 later.internal later\n" in feed.read_bytes()


# --- bind mounts (containers) ------------------------------------------------------------


def unshare_works() -> bool:
    if UNSHARE is None or os.geteuid() != 0:
        return False
    done = subprocess.run(
        [UNSHARE, "--mount", "--propagation", "private", "true"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return done.returncode == 0


needs_unshare = pytest.mark.skipif(
    not unshare_works(), reason="unshare --mount is refused here (needs root and CAP_SYS_ADMIN)"
)


def in_mount_namespace(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``sh -c script`` with positional ``args`` in a private mount namespace."""
    assert UNSHARE is not None
    return subprocess.run(
        [UNSHARE, "--mount", "--propagation", "private", "sh", "-euc", script, "sh", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@needs_unshare
def test_bind_mounted_hosts_file_is_updated_in_place(tmp_path: Path) -> None:
    """As /etc/hosts in a container: rename over a mount point fails with EBUSY."""
    etc = tmp_path / "etc"
    etc.mkdir()
    target = etc / "hosts"
    target.write_bytes(b"# the image's own file\n")
    mounted = tmp_path / "runtime-hosts"
    mounted.write_bytes(USER_LINES)
    os.chmod(mounted, 0o604)
    inode = os.stat(mounted).st_ino
    done = in_mount_namespace(
        'mount --bind "$1" "$2" && exec "$3" hosts --source "$4" --view us-east-1 --output "$2"',
        str(mounted),
        str(target),
        str(TAGDNS),
        str(EXAMPLE),
    )
    assert done.returncode == 0, done.stderr
    assert "updated in place (bind mount)" in done.stdout
    content = mounted.read_bytes()
    assert content.startswith(USER_LINES + b"# BEGIN tagdns\n")
    assert b"10.0.1.10 web1.internal web1\n" in content
    assert os.stat(mounted).st_ino == inode
    assert stat.S_IMODE(os.stat(mounted).st_mode) == 0o604
    assert target.read_bytes() == b"# the image's own file\n"  # the mount point itself
    assert sorted(p.name for p in etc.iterdir()) == ["hosts"]  # no temp file left


@needs_unshare
def test_read_only_root_with_a_writable_bind_mounted_hosts_file(tmp_path: Path) -> None:
    """docker run --read-only: the directory is read-only (EROFS), the file is not."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hosts").write_bytes(b"")
    mounted = tmp_path / "runtime-hosts"
    mounted.write_bytes(USER_LINES)
    done = in_mount_namespace(
        'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && '
        'mount --bind "$2" "$1/hosts" && '
        'exec "$3" hosts --source "$4" --view public --output "$1/hosts"',
        str(etc),
        str(mounted),
        str(TAGDNS),
        str(EXAMPLE),
    )
    assert done.returncode == 0, done.stderr
    assert "in place" in done.stdout
    assert mounted.read_bytes().startswith(USER_LINES + b"# BEGIN tagdns\n")


@needs_unshare
def test_read_only_bind_mount_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    target.write_bytes(USER_LINES)
    done = in_mount_namespace(
        'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && '
        'exec "$2" hosts --source "$3" --view public --output "$1"',
        str(target),
        str(TAGDNS),
        str(EXAMPLE),
    )
    assert done.returncode == 1
    assert f"tagdns: {target}: not writable: read-only file system" in done.stderr.splitlines()
    assert target.read_bytes() == USER_LINES


@needs_unshare
def test_full_disk_under_a_bind_mounted_hosts_file_leaves_it_as_it_was(tmp_path: Path) -> None:
    """ENOSPC part way through an in-place write must not leave half a file.

    The file sits on an 8 KiB tmpfs that a filler has all but used up, and is
    bind-mounted over the target, so the rename fails with EBUSY and the write
    goes in place. The new content needs a page the tmpfs no longer has.
    """
    original = (
        b"127.0.0.1 localhost\n" + b"# pad\n" * 480 + STALE_BLOCK + b"10.9.9.9 mytail-host\n" * 40
    )
    assert 3500 < len(original) < 4096  # one page; the merged file needs two
    (tmp_path / "original").write_bytes(original)
    disk = tmp_path / "disk"
    disk.mkdir()
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hosts").write_bytes(b"")
    done = in_mount_namespace(
        'mount -t tmpfs -o size=8k tmpfs "$1" && cp "$2" "$1/hosts" && '
        '{ head -c 65536 /dev/zero > "$1/filler" 2>/dev/null || true; } && '
        'mount --bind "$1/hosts" "$3/hosts" && '
        'rc=0; "$4" hosts --source "$5" --view us-east-1 --output "$3/hosts" || rc=$?; '
        'cp "$1/hosts" "$6" && exit $rc',
        str(disk),
        str(tmp_path / "original"),
        str(etc),
        str(TAGDNS),
        str(EXAMPLE),
        str(tmp_path / "after"),
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if "note:" not in line]
    assert errors == [f"tagdns: {etc / 'hosts'}: cannot write: No space left on device"]
    assert (tmp_path / "after").read_bytes() == original


SETPRIV = shutil.which("setpriv")
NOBODY = 65534


@needs_unshare
@pytest.mark.skipif(SETPRIV is None, reason="needs setpriv")
def test_a_dnsmasq_hidden_by_hidepid_is_an_error_not_not_running(tmp_path: Path) -> None:
    """ProtectProc=invisible: the pid is alive (pidfd_open works) but its /proc entry is hidden.

    tagdns runs as root without CAP_SYS_PTRACE and outside group 0 (hidepid's
    default gid=), with /proc mounted hidepid=invisible in a private mount
    namespace; "dnsmasq" runs as another user, so its /proc/PID cannot be seen.
    That is not "dnsmasq is not running": nothing is signalled, the error says
    why, and the file carries the note so that the next run signals. `tagdns
    check` fails on it too.
    """
    shared = Path(tempfile.mkdtemp(prefix="tagdns-hidepid-"))
    os.chmod(shared, 0o755)
    program = shared / "dnsmasq"
    shutil.copy("/bin/sleep", program)
    os.chmod(program, 0o755)
    feed = tmp_path / "dnsmasq.hosts"
    pidfile = tmp_path / "dnsmasq.pid"
    config = tmp_path / "hosts.toml"
    config.write_text(
        f'[view]\nregion = "us-east-1"\n'
        f'[hosts]\ndnsmasq_file = "{feed}"\ndnsmasq_pidfile = "{pidfile}"\n'
    )
    hidden = subprocess.Popen([str(program), "30"], user=NOBODY, group=NOBODY, extra_groups=[])
    try:
        comm = Path(f"/proc/{hidden.pid}/comm")
        wait_for(lambda: comm.read_text().strip() == "dnsmasq")
        pidfile.write_text(f"{hidden.pid}\n")
        done = in_mount_namespace(
            "mount -t proc -o hidepid=invisible proc /proc; "
            'hide="$2 --regid 65533 --clear-groups --bounding-set -sys_ptrace"; '
            '$hide test ! -e "/proc/$1" || { echo "setup: /proc/$1 is visible" >&2; exit 3; }; '
            'exec $hide "$3" hosts --config "$4" --source "$5" --format dnsmasq',
            str(hidden.pid),
            str(SETPRIV),
            str(TAGDNS),
            str(config),
            str(EXAMPLE),
        )
        checked = in_mount_namespace(
            'mount -t proc -o hidepid=invisible proc /proc; exec "$1" --regid 65533 '
            '--clear-groups --bounding-set -sys_ptrace "$2" check --config "$3" --source "$4" '
            '--listen "127.0.0.1:$5" --upstream none --metrics none --cache none',
            str(SETPRIV),
            str(TAGDNS),
            str(config),
            str(EXAMPLE),
            str(free_port()),
        )
        time.sleep(0.1)
        assert hidden.poll() is None  # a SIGHUP would have ended the sleep
    finally:
        hidden.kill()
        hidden.wait()
        shutil.rmtree(shared)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "not running" not in done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if "note:" not in line]
    assert len(errors) == 1, (done.stdout, done.stderr)
    assert errors[0].startswith(f"tagdns: {pidfile}: pid {hidden.pid} is running but cannot be")
    assert errors[0].endswith(f"{feed} is noted so that the next run signals again")
    assert feed.read_bytes().endswith(b"the next run tells it\n")
    assert "cannot be identified" in checked.stdout, (checked.stdout, checked.stderr)
    assert checked.returncode == 1


# --- the shipped configuration -----------------------------------------------------------

LAPTOP = REPO / "conf" / "laptop"


@needs_dnsmasq
def test_dnsmasq_helper_moves_to_another_port_when_its_port_was_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race a picked-then-bound port leaves open: here it is lost on purpose."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1], free_port()])
        monkeypatch.setattr(dns_helpers, "free_port", lambda: next(ports))
        with dnsmasq() as running:
            assert running.port != taken.getsockname()[1]
            assert dig(running.port, "ready.invalid") == []  # answered (REFUSED), not timed out


@pytest.mark.skipif(not DNSMASQ.exists(), reason="needs /usr/sbin/dnsmasq")
def test_dnsmasq_snippet_passes_dnsmasq_syntax_check() -> None:
    done = subprocess.run(
        [str(DNSMASQ), "--test", f"--conf-file={REPO / 'conf' / 'dnsmasq-tagdns.conf'}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "syntax check OK" in done.stderr


def test_laptop_files_agree_on_the_agent_address() -> None:
    """resolved's DNS=, macOS's resolver file, the unit, the plist and laptop.toml."""
    config = load_config(LAPTOP / "laptop.toml")
    assert config.view.region == "public"
    assert config.dns.listen == ("127.0.0.1:10053",)
    resolved = (LAPTOP / "tagdns.conf").read_text()
    assert "\nDNS=127.0.0.1:10053\n" in resolved
    assert "\nDomains=~internal\n" in resolved
    macos = (LAPTOP / "resolver-internal").read_text().splitlines()
    assert [line for line in macos if not line.startswith("#")] == [
        "nameserver 127.0.0.1",
        "port 10053",
    ]
    unit = (LAPTOP / "tagdns-laptop.service").read_text()
    assert "--view public" in unit
    assert "--listen 127.0.0.1:10053" in unit
    with (LAPTOP / "com.example.tagdns.plist").open("rb") as handle:
        arguments = plistlib.load(handle)["ProgramArguments"]
    assert arguments[1:2] == ["serve"]
    assert arguments[arguments.index("--listen") + 1] == "127.0.0.1:10053"
    assert arguments[arguments.index("--view") + 1] == "public"


def documented_laptop_drop_in() -> str:
    """The ``systemctl --user edit tagdns-laptop`` drop-in shown in hosts-and-laptops.md."""
    doc = (REPO / "docs" / "hosts-and-laptops.md").read_text()
    after_edit = doc[doc.index("systemctl --user edit tagdns-laptop") :]
    found = re.search(r"```ini\n(\[Service\]\n.*?)```", after_edit, re.DOTALL)
    assert found is not None, "no [Service] drop-in shown after systemctl --user edit"
    return found.group(1)


def test_documented_laptop_drop_in_clears_exec_start_before_setting_it() -> None:
    lines = documented_laptop_drop_in().splitlines()
    starts = [line for line in lines if line.startswith("ExecStart=")]
    assert starts[0] == "ExecStart=", "systemd refuses a second ExecStart= for Type=exec"
    assert len(starts) == 2
    assert any(line.startswith("Environment=AWS_PROFILE=") for line in lines)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_documented_laptop_drop_in_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit with the drop-in beside it, as systemd would load the pair."""
    unit = (LAPTOP / "tagdns-laptop.service").read_text()
    (tmp_path / "tagdns-laptop.service").write_text(
        unit.replace("%h/.local/bin/tagdns", str(TAGDNS))
    )
    drop_in = re.sub(
        r"(?m)^(ExecStart=)\S+/tagdns\b", rf"\g<1>{TAGDNS}", documented_laptop_drop_in()
    )
    (tmp_path / "tagdns-laptop.service.d").mkdir()
    (tmp_path / "tagdns-laptop.service.d" / "override.conf").write_text(drop_in)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "tagdns-laptop.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [line for line in result.stderr.splitlines() if "tagdns-laptop" in line]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.skipif(DIG is None, reason="needs dig")
def test_laptop_agent_answers_public_addresses(tmp_path: Path) -> None:
    """conf/laptop/laptop.toml as shipped, on a free port, with the example document."""
    laptop = ("--config", str(LAPTOP / "laptop.toml"), "--source", str(EXAMPLE))
    agent = AgentProcess(tmp_path, serve_args=(*laptop, "--cache", "none", "--metrics", "none"))
    try:
        wait_for(lambda: dig(agent.port, "web1.internal") == ["54.12.0.10"], timeout=10)
        assert dig(agent.port, "web1") == ["54.12.0.10"]
        assert dig(agent.port, "batch.internal") == []  # no public address: not on laptops
    finally:
        assert agent.terminate() == 0, agent.stderr
