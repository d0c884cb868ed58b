"""The hosts file writer and the dnsmasq signaller, on real files and real processes.

Covers: owner and mode kept, nothing written when unchanged, symlinks followed,
clear one-line errors (missing directory, unreadable, read-only, broken
markers) with the file untouched, the lock (concurrent writers lose nothing),
SIGKILL at random moments of a write (old or new content, never a mix), and
the pidfile checks before any SIGHUP.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resolver.adapters.atomic_file import write_atomically, write_in_place
from resolver.adapters.dnsmasq import read_pid, reload_dnsmasq
from resolver.adapters.hosts_file import directory_lock, update_file
from resolver.core.hosts_merge import merge_hosts
from resolver.core.views import View, ViewRecord
from resolver.errors import HostsFileError
from tests.mounts import tmpfs

NOBODY = 65534
VIEW = View("eu-west-1", "internal", 3, (ViewRecord("web", ("10.0.0.1",), (), qualified=True),))
USER = b"127.0.0.1 localhost\n# keep me\n10.1.1.1 printer \xff\xfe\r\n"


def merge(path: Path) -> Callable[[bytes | None], bytes]:
    return lambda current: merge_hosts(current, VIEW, str(path))


def snapshot(path: Path) -> tuple[bytes, int, int, int, int, int]:
    info = os.stat(path)
    return (
        path.read_bytes(),
        info.st_ino,
        info.st_mtime_ns,
        info.st_mode,
        info.st_uid,
        info.st_gid,
    )


# --- writing -----------------------------------------------------------------------------


def test_new_file_is_created_0644(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    update = update_file(target, merge(target))
    assert update.changed
    assert update.method == "replaced"
    assert target.read_bytes().startswith(b"# BEGIN tagdns\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_owner_and_mode_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    target.write_bytes(USER)
    os.chmod(target, 0o640)
    os.chown(target, 1234, 5678)
    update_file(target, merge(target))
    info = target.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, 1234, 5678)
    assert target.read_bytes().startswith(USER)


def test_unchanged_content_is_not_written(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    target.write_bytes(USER)
    update_file(target, merge(target))
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(target)
    update = update_file(target, merge(target))
    assert not update.changed
    assert update.method is None
    assert snapshot(target) == before


def test_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real-hosts"
    real.write_bytes(USER)
    link = tmp_path / "hosts"
    link.symlink_to(real.name)
    update_file(link, merge(link))
    assert link.is_symlink()
    assert real.read_bytes().startswith(USER + b"# BEGIN tagdns\n")


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    target.write_bytes(USER)
    stale = tmp_path / ".hosts.abcd_123.tmp"
    stale.write_bytes(b"half a file")
    unrelated = tmp_path / ".other.abcd_123.tmp"
    unrelated.write_bytes(b"not ours")
    update_file(target, merge(target))
    assert not stale.exists()
    assert unrelated.exists()


def test_write_atomically_keeps_its_old_contract(tmp_path: Path) -> None:
    """last_known_good's call: fixed mode, no metadata kept."""
    target = tmp_path / "mapping.json"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    assert write_atomically(target, b"new") == "replaced"
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["mapping.json"]


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An 8 KiB tmpfs, for a real ENOSPC."""
    with tmpfs(tmp_path / "tiny", "size=8k") as path:
        yield path


def fill(directory: Path) -> None:
    """Use up every free block of ``directory``'s file system."""
    with contextlib.suppress(OSError), (directory / "filler").open("wb", buffering=0) as handle:
        while True:
            handle.write(b"\0" * 1024)


def test_in_place_write_that_runs_out_of_space_leaves_the_old_content(
    tiny_tmpfs: Path,
) -> None:
    """The space is reserved first: ENOSPC then comes before any byte is overwritten."""
    target = tiny_tmpfs / "hosts"
    old = b"127.0.0.1 localhost\n" * 150  # 3150 bytes: one page
    target.write_bytes(old)
    fill(tiny_tmpfs)
    with pytest.raises(OSError) as caught:
        write_in_place(target, b"10.0.0.1 grown\n" * 400)  # 6000 bytes: two pages
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == old


def test_in_place_write_without_fallocate_puts_the_old_content_back(
    tiny_tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the file system cannot reserve space, a failed write is undone from memory."""

    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    target = tiny_tmpfs / "hosts"
    old = b"127.0.0.1 localhost\n" * 150
    target.write_bytes(old)
    fill(tiny_tmpfs)
    with pytest.raises(OSError) as caught:
        write_in_place(target, b"10.0.0.1 grown\n" * 400)
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == old


def test_in_place_write_whose_undo_fails_says_the_file_is_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    target = tmp_path / "hosts"
    target.write_bytes(b"old\n")
    monkeypatch.setattr(os, "pwrite", broken)
    with pytest.raises(OSError) as caught:
        write_in_place(target, b"new\n")
    assert caught.value.errno == errno.EIO
    assert "putting the old content back failed too" in str(caught.value.strerror)
    assert "restore it by hand" in str(caught.value.strerror)


def test_in_place_write_shrinks_and_grows(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    target.write_bytes(b"x" * 5000)
    inode = target.stat().st_ino
    write_in_place(target, b"short\n")
    assert target.read_bytes() == b"short\n"
    write_in_place(target, b"y" * 9000)
    assert target.read_bytes() == b"y" * 9000
    assert target.stat().st_ino == inode


def set_xattr_or_skip(path: Path, name: str, value: bytes) -> None:
    try:
        os.setxattr(path, name, value)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"cannot set {name} on {path} here: {exc.strerror}")
        raise


def posix_acl(*entries: tuple[int, int, int]) -> bytes:
    """The kernel's system.posix_acl_access value: version 2, then (tag, perm, id) each."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def xattrs(path: Path) -> dict[str, bytes]:
    return {name: os.getxattr(path, name) for name in sorted(os.listxattr(path))}


def test_extended_attributes_are_kept_across_the_rename(tmp_path: Path) -> None:
    """A SELinux label (security.selinux) or an ACL must not be lost with the inode."""
    real = tmp_path / "real-hosts"
    real.write_bytes(USER)
    os.chmod(real, 0o664)
    set_xattr_or_skip(real, "user.origin", b"image \x00\xff")
    set_xattr_or_skip(real, "user.other", b"")
    undefined = 0xFFFFFFFF
    acl = posix_acl(
        (0x01, 6, undefined),  # owner rw
        (0x02, 6, 1234),  # user 1234 rw
        (0x04, 4, undefined),  # group r
        (0x10, 6, undefined),  # mask rw
        (0x20, 4, undefined),  # other r
    )
    set_xattr_or_skip(real, "system.posix_acl_access", acl)
    before = xattrs(real)
    inode = real.stat().st_ino
    link = tmp_path / "hosts"
    link.symlink_to(real.name)
    update = update_file(link, merge(link))
    assert update.method == "replaced"
    assert real.stat().st_ino != inode
    assert xattrs(real) == before
    assert stat.S_IMODE(real.stat().st_mode) == 0o664
    assert real.read_bytes().startswith(USER + b"# BEGIN tagdns\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set a security.* attribute")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
def test_an_attribute_that_cannot_be_kept_aborts_the_write(tmp_path: Path) -> None:
    """Root without CAP_SYS_ADMIN can read security.* attributes but not set them."""
    target = tmp_path / "hosts"
    target.write_bytes(USER)
    set_xattr_or_skip(target, "security.tagdns_test", b"label")
    before = snapshot(target)
    tagdns = Path(sys.executable).with_name("tagdns")
    example = Path(__file__).resolve().parents[1] / "conf" / "example-mapping.json"
    done = subprocess.run(
        [
            "setpriv",
            "--bounding-set",
            "-sys_admin",
            str(tagdns),
            "hosts",
            "--source",
            str(example),
            "--view",
            "us-east-1",
            "--output",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "note:" not in line]
    assert errors == [
        f"tagdns: {target}: cannot write: cannot keep its extended attribute "
        "security.tagdns_test: Operation not permitted; the file is left as it was"
    ]
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts"]


# --- errors leave the file alone ---------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "absent" / "hosts"
    with pytest.raises(HostsFileError, match=rf"^{target}: directory .*absent does not exist$"):
        update_file(target, merge(target))


def test_directory_as_target(tmp_path: Path) -> None:
    with pytest.raises(HostsFileError, match=rf"^{tmp_path}: is a directory$"):
        update_file(tmp_path, merge(tmp_path))


def test_fifo_as_target_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "hosts"
    os.mkfifo(fifo)
    with pytest.raises(HostsFileError, match=r": not a regular file$"):
        update_file(fifo, merge(fifo))


@pytest.mark.skipif(not Path("/proc/version").is_file(), reason="needs Linux's /proc")
def test_a_file_that_cannot_get_a_neighbour_says_so_in_the_same_words_each_time() -> None:
    """/proc takes no new file: the temporary file beside the target is what failed.
    Its random name is left out: the agent logs an error once until its words change,
    and the metrics carry them as a label, so a new name each poll was a new error."""
    target = Path("/proc/version")
    messages = set()
    for _ in range(2):
        with pytest.raises(HostsFileError) as caught:
            update_file(target, lambda current: (current or b"") + b"10.0.0.1 web1\n")
        messages.add(str(caught.value))
    assert messages == {
        "/proc/version: cannot write: No such file or directory "
        "(creating a temporary file in /proc)"
    }


def test_broken_markers_leave_the_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    target.write_bytes(USER + b"# BEGIN tagdns\n1.2.3.4 x\n")
    before = snapshot(target)
    with pytest.raises(HostsFileError, match=r"line 4: '# BEGIN tagdns' without '# END tagdns'"):
        update_file(target, merge(target))
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users can enter (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="tagdns-hosts-"))
    os.chmod(directory, 0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def as_nobody(action: Callable[[], object]) -> str:
    """Run ``action`` in a forked child with the uid and gid of nobody; its error, or ''."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        error = b""
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            action()
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}".encode()
        finally:
            os.write(write_end, error)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_unreadable_target(shared_dir: Path) -> None:
    target = shared_dir / "hosts"
    target.write_bytes(USER)
    os.chmod(target, 0o600)
    before = snapshot(target)
    error = as_nobody(lambda: update_file(target, merge(target)))
    assert error == f"HostsFileError: {target}: cannot read: Permission denied"
    assert snapshot(target) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_read_only_target(shared_dir: Path) -> None:
    target = shared_dir / "hosts"
    target.write_bytes(USER)
    os.chmod(target, 0o644)
    before = snapshot(target)
    error = as_nobody(lambda: update_file(target, merge(target)))
    assert error == f"HostsFileError: {target}: not writable: permission denied"
    assert snapshot(target) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_writable_file_in_a_read_only_directory(shared_dir: Path) -> None:
    target = shared_dir / "hosts"
    target.write_bytes(USER)
    os.chmod(target, 0o666)
    before = snapshot(target)
    error = as_nobody(lambda: update_file(target, merge(target)))
    assert error.startswith(f"HostsFileError: {target}: cannot write: Permission denied")
    assert "\n" not in error
    assert snapshot(target) == before


# --- the lock ----------------------------------------------------------------------------


def test_a_writer_waits_for_the_lock(tmp_path: Path) -> None:
    target = tmp_path / "hosts"
    done = threading.Event()

    def write() -> None:
        update_file(target, merge(target))
        done.set()

    with directory_lock(tmp_path, target):
        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(0.3)
        assert not target.exists()
    assert done.wait(5)
    writer.join()
    assert target.exists()


def test_a_stop_ends_the_wait_for_the_lock_and_writes_nothing(tmp_path: Path) -> None:
    """An agent stopping while another writer holds the lock gives up within one poll."""
    target = tmp_path / "hosts"
    stop = threading.Event()
    failures: list[str] = []

    def write() -> None:
        try:
            update_file(target, merge(target), stop=stop)
        except HostsFileError as exc:
            failures.append(str(exc))

    with directory_lock(tmp_path, target):
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.1)
        assert writer.is_alive()  # waiting for the lock
        started = time.monotonic()
        stop.set()
        writer.join(5)
        took = time.monotonic() - started
    assert not writer.is_alive() and took < 1
    assert failures == [
        f"{target}: not written: stopping while another writer holds the lock on {tmp_path}"
    ]
    assert not target.exists()


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """Read-modify-write under the lock: every increment of every process survives."""
    target = tmp_path / "hosts"
    target.write_bytes(b"")
    workers, rounds = 4, 40

    def appender(line: bytes) -> Callable[[bytes | None], bytes]:
        return lambda current: (current or b"") + line

    pids = []
    for worker in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            try:
                for number in range(rounds):
                    line = f"10.0.{worker}.{number} w{worker}n{number}\n".encode()
                    update_file(target, appender(line))
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    lines = target.read_bytes().splitlines()
    assert len(lines) == workers * rounds
    assert len(set(lines)) == workers * rounds


# --- SIGKILL at any moment ---------------------------------------------------------------


def test_sigkill_during_writes_leaves_old_or_new_content(tmp_path: Path) -> None:
    """A child rewrites a large hosts file in a loop; kill -9 it at random moments."""
    target = tmp_path / "hosts"
    user = b"".join(b"10.%d.%d.1 user-%d\n" % (i // 250, i % 250, i) for i in range(40_000))
    first = merge_hosts(user, VIEW, str(target))
    other_view = View("eu-west-1", "internal", 4, (ViewRecord("db", ("10.0.0.9",), (), True),))
    second = merge_hosts(user, other_view, str(target))
    target.write_bytes(first)
    rng = random.Random(1234)
    caught_mid_write = 0
    kills = 40
    for _ in range(kills):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                while True:
                    update_file(target, lambda current: second if current == first else first)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.04))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status)
        assert os.WTERMSIG(status) == signal.SIGKILL
        content = target.read_bytes()
        assert content in (first, second), f"partial file: {len(content)} bytes"
        leftovers = [p for p in tmp_path.iterdir() if p.name != "hosts"]
        caught_mid_write += bool(leftovers)
        for leftover in leftovers:
            leftover.unlink()
    # The kills must really have landed inside writes, not only between them.
    assert caught_mid_write > 0


# --- dnsmasq's pidfile -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"expected a process id, found ''"),
        (b"12abc\n", r"expected a process id, found '12abc\\n'"),
        (b"-1\n", r"expected a process id, found '-1\\n'"),
        (b"0\n", r": 0 is not a valid process id$"),
        (b"99999999\n", r": 99999999 is not a valid process id$"),
        (b"1 2\n", r"expected a process id"),
        (b"1" * 100, r"expected a process id"),
    ],
)
def test_pidfile_must_hold_one_positive_pid(tmp_path: Path, content: bytes, message: str) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    pidfile.write_bytes(content)
    with pytest.raises(HostsFileError, match=message):
        read_pid(pidfile)


def test_pidfile_read(tmp_path: Path) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    assert read_pid(pidfile) is None
    pidfile.write_bytes(b"4321\n")
    assert read_pid(pidfile) == 4321


@contextlib.contextmanager
def process_named(name: str, directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A long sleep whose /proc/PID/comm is ``name``."""
    program = directory / name
    shutil.copy("/bin/sleep", program)
    process = subprocess.Popen([str(program), "30"])
    comm = Path(f"/proc/{process.pid}/comm")
    deadline = time.monotonic() + 5
    # Until the child has exec'd, its comm is still the parent's ("pytest").
    while comm.read_text().strip() != name and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_no_pidfile_or_no_process_means_not_running(tmp_path: Path) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    assert reload_dnsmasq(pidfile).pid is None
    with process_named("dnsmasq", tmp_path) as process:
        pass
    pidfile.write_text(f"{process.pid}\n")
    reload = reload_dnsmasq(pidfile)
    assert reload.pid is None
    assert "not running" in reload.message


def test_a_pid_that_is_not_dnsmasq_is_never_signalled(tmp_path: Path) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    with process_named("sleep", tmp_path) as process:
        pidfile.write_text(f"{process.pid}\n")
        with pytest.raises(HostsFileError, match=rf"pid {process.pid} is 'sleep', not dnsmasq"):
            reload_dnsmasq(pidfile)
        time.sleep(0.1)
        assert process.poll() is None  # SIGHUP would have killed it


def test_dnsmasq_gets_sighup(tmp_path: Path) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    with process_named("dnsmasq", tmp_path) as process:
        pidfile.write_text(f"{process.pid}\n")
        reload = reload_dnsmasq(pidfile)
        assert reload.pid == process.pid
        assert process.wait(5) == -signal.SIGHUP  # sleep dies of the SIGHUP it was sent
