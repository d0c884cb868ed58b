"""End to end through the real glibc resolver, in a network namespace of its own.

This is how a node uses the agent: nothing talks to it directly. Programs call
``getaddrinfo``/``gethostbyname``; glibc reads ``/etc/nsswitch.conf`` and
``/etc/resolv.conf`` (``nameserver 127.0.0.53``, ``search internal``) and asks
the agent, which answers the fleet's names and forwards the rest to the VPC
resolver. Here:

- a fresh namespace ``tagdns-test-<pid>`` with ``lo`` and one NIC (a private IPv4
  and an IPv6 address, like a node's), so port 53 is ours;
- ``/etc/netns/<ns>/{resolv.conf,nsswitch.conf,hosts}``, which ``ip netns exec``
  bind-mounts over ``/etc/*`` for every command it runs: the test does not
  depend on the machine's resolver set-up (it says so when the machine's own
  nsswitch.conf would not ask DNS at all);
- Debian's dnsmasq on ``127.0.0.1:53`` plays the VPC resolver: an outside name
  (``www.example.test``), an AWS name (``ip-10-0-0-99.ec2.internal``) and
  NXDOMAIN for everything else under ``.internal`` and ``.test`` and for bare names;
- ``tagdns serve`` on ``127.0.0.53:53`` with the view us-east-1 of
  ``conf/example-mapping.json``, forwarding to that dnsmasq.

``getent hosts``, ``getent ahosts``, ``getent ahostsv4`` and Python's
``socket.getaddrinfo`` then run inside the namespace. The tests need root; they
are skipped, saying why, only when the kernel refuses to create the namespace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.dns_helpers import EXAMPLE_MAPPING, REPO, TAGDNS

pytestmark = pytest.mark.integration

IP = shutil.which("ip") or next(
    (path for path in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if Path(path).exists()), "ip"
)
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
START_TIMEOUT = 20.0
FAIL_FAST = 5.0  # an unknown name must fail well within this (acceptance bound, not perf)

# What `ip netns add` says when the kernel or our privileges refuse namespaces
# (EPERM, EACCES, EINVAL without CONFIG_NET_NS, ENOSYS, EOPNOTSUPP).
_REFUSED = re.compile(
    r"Operation not permitted|Permission denied|Invalid argument|"
    r"Function not implemented|not supported",
    re.IGNORECASE,
)

# Loopback, and a NIC with a VPC-style address of each family, as on a node. It matters:
# getaddrinfo with AI_ADDRCONFIG (getent ahosts*) returns nothing for a family the host
# has no non-loopback address of. A veth pair, both ends inside: needs no driver module.
NODE_NETWORK = (
    ("ip", "link", "set", "lo", "up"),
    ("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"),
    ("ip", "link", "set", "eth0", "up"),
    ("ip", "link", "set", "eth0-peer", "up"),
    ("ip", "address", "add", "10.0.9.9/24", "dev", "eth0"),
    ("ip", "address", "add", "fd00:ec2::9/64", "dev", "eth0", "nodad"),
)
RESOLV_CONF = "nameserver 127.0.0.53\nsearch internal\noptions timeout:1 attempts:1\n"
NSSWITCH_CONF = "hosts: files dns\n"
# localhost only: none of the names under test may come from a file.
HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"

# The VPC resolver's data (dnsmasq host-records answer NODATA for the other family).
OUTSIDE_NAME = "www.example.test"
OUTSIDE_V4, OUTSIDE_V6 = "192.0.2.80", "2001:db8::80"
AWS_NAME = "ip-10-0-0-99.ec2.internal"
AWS_V4 = "10.0.0.99"
# A name held outside the fleet that points at a fleet name, as a Route 53 record
# may: the VPC resolver gives the CNAME alone, and the agent completes it.
ALIAS_NAME = "db.corp.example.test"

# conf/example-mapping.json seen from us-east-1.
WEB1_V4, WEB1_V6 = "10.0.1.10", "2600:1f18:1::10"  # api and web1 share this instance
API_V4 = (WEB1_V4, "10.0.2.21")
WEB2_V4 = "10.0.2.20"
CACHE_V4 = {f"10.0.3.{host}" for host in range(1, 41)}
DB_PUBLIC = "34.240.0.5"  # db only exists in eu-west-1: its public address, bare name only


@dataclass
class Namespace:
    name: str
    workdir: Path
    processes: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    @property
    def etc(self) -> Path:
        return Path("/etc/netns") / self.name

    def command(self, *argv: str) -> list[str]:
        return [IP, "netns", "exec", self.name, *argv]

    def run(self, *argv: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self, label: str, *argv: str) -> tuple[subprocess.Popen[bytes], Path]:
        """A long-running process inside the namespace (``ip netns exec`` execs it: same pid)."""
        log = self.workdir / f"{label}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                self.command(*argv), stdout=sink, stderr=subprocess.STDOUT, cwd=REPO
            )
        self.processes.append((label, process, log))
        return process, log

    def logs(self) -> str:
        return "\n".join(
            f"--- {label}\n{log.read_text(errors='replace')}" for label, _, log in self.processes
        )


def _wait_for_line(process: subprocess.Popen[bytes], log: Path, needle: str, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if needle in text:
            return
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}:\n{text}")
        time.sleep(0.05)
    raise AssertionError(f"{what} not ready within {START_TIMEOUT:.0f} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _create_namespace(name: str) -> None:
    """``ip netns add``; skip only when the kernel or our privileges refuse it."""
    try:
        added = subprocess.run(
            [IP, "netns", "add", name], capture_output=True, text=True, timeout=15, check=False
        )
    except FileNotFoundError:
        pytest.fail(f"{IP}: not found; install iproute2 (scripts/test does)")
    if added.returncode != 0:
        message = added.stderr.strip() or f"exit code {added.returncode}"
        if _REFUSED.search(message):
            pytest.skip(
                f"the kernel refuses network namespaces here (ip netns add {name}: {message}); "
                "these tests need root and CONFIG_NET_NS"
            )
        pytest.fail(f"ip netns add {name} failed: {message}")


def _machine_nsswitch_note() -> None:
    """Say so when this machine's own glibc would not ask DNS (the namespace has its own file)."""
    try:
        text = Path("/etc/nsswitch.conf").read_text()
    except OSError as exc:
        warnings.warn(f"/etc/nsswitch.conf unreadable ({exc}): glibc defaults apply", stacklevel=2)
        return
    hosts = [line for line in text.splitlines() if line.strip().startswith("hosts:")]
    if not hosts or "dns" not in hosts[-1].split("#")[0].split():
        warnings.warn(
            f"this machine's /etc/nsswitch.conf has {hosts[-1] if hosts else 'no hosts line'!r}: "
            "without 'dns' there, glibc would never ask the agent; the test namespace "
            "uses its own nsswitch.conf ('hosts: files dns')",
            stacklevel=2,
        )


@pytest.fixture(scope="module")
def netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    """The namespace with its upstream and the agent on 127.0.0.53:53, torn down after."""
    _machine_nsswitch_note()
    namespace = Namespace(f"tagdns-test-{os.getpid()}", tmp_path_factory.mktemp("netns"))
    _create_namespace(namespace.name)
    try:
        for argv in NODE_NETWORK:
            done = namespace.run(*argv)
            assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
        namespace.etc.mkdir(parents=True, exist_ok=True)
        (namespace.etc / "resolv.conf").write_text(RESOLV_CONF)
        (namespace.etc / "nsswitch.conf").write_text(NSSWITCH_CONF)
        (namespace.etc / "hosts").write_text(HOSTS)

        # The VPC resolver. --domain-needed: bare names are NXDOMAIN, not forwarded.
        upstream, upstream_log = namespace.start(
            "dnsmasq",
            DNSMASQ,
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--port=53",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--log-facility=-",
            f"--host-record={OUTSIDE_NAME},{OUTSIDE_V4},{OUTSIDE_V6}",
            f"--host-record={AWS_NAME},{AWS_V4}",
            f"--cname={ALIAS_NAME},web1.internal,600",
            "--local=/internal/",
            "--local=/test/",
            "--domain-needed",
        )
        _wait_for_line(upstream, upstream_log, "started", "dnsmasq")

        agent, agent_log = namespace.start(
            "agent",
            str(TAGDNS),
            "serve",
            "--source",
            str(EXAMPLE_MAPPING),
            "--view",
            "us-east-1",
            "--listen",
            "127.0.0.53:53",
            "--upstream",
            "127.0.0.1",
            "--cache",
            "none",
        )
        _wait_for_line(agent, agent_log, "ready:", "tagdns serve")
        yield namespace
    finally:
        for _, process, _ in reversed(namespace.processes):
            _stop(process)
        subprocess.run([IP, "netns", "del", namespace.name], capture_output=True, check=False)
        shutil.rmtree(namespace.etc, ignore_errors=True)


@dataclass(frozen=True)
class Lookup:
    code: int
    lines: list[list[str]]
    seconds: float
    output: str


def getent(netns: Namespace, database: str, key: str) -> Lookup:
    started = time.monotonic()
    completed = netns.run("getent", database, key)
    seconds = time.monotonic() - started
    output = f"getent {database} {key}: exit {completed.returncode}\n{completed.stdout}"
    output += completed.stderr
    lines = [line.split() for line in completed.stdout.splitlines() if line.strip()]
    return Lookup(completed.returncode, lines, seconds, output + "\n" + netns.logs())


# --- the set-up itself ---------------------------------------------------------------------


def test_the_namespace_sees_its_own_resolver_files(netns: Namespace) -> None:
    for name, text in (
        ("resolv.conf", RESOLV_CONF),
        ("nsswitch.conf", NSSWITCH_CONF),
        ("hosts", HOSTS),
    ):
        seen = netns.run("cat", f"/etc/{name}")
        assert seen.stdout == text, f"/etc/{name} in the namespace: {seen.stdout!r}"


# --- getent hosts: gethostbyname2, AF_INET6 first, then AF_INET ----------------------------


@pytest.mark.parametrize(
    ("key", "address", "canonical"),
    [
        # `web1` has no dot: glibc tries the search domain first, and web1.internal is ours.
        # getent hosts asks for IPv6 first; web1 has an IPv6 address.
        ("web1", WEB1_V6, "web1.internal"),
        ("web1.internal", WEB1_V6, "web1.internal"),
        # Matched case-insensitively, echoed as asked.
        ("WEB2.Internal", WEB2_V4, "WEB2.Internal"),
        # No IPv6 for web2: the agent answers NODATA (not NXDOMAIN), glibc falls back to A.
        ("web2", WEB2_V4, "web2.internal"),
        # Remote: db.internal is not ours (the VPC resolver says NXDOMAIN), bare `db` is.
        ("db", DB_PUBLIC, "db"),
        # AWS's own names under .internal keep resolving: forwarded.
        (AWS_NAME, AWS_V4, AWS_NAME),
        # The outside world: forwarded.
        (OUTSIDE_NAME, OUTSIDE_V6, OUTSIDE_NAME),
        # A CNAME from outside to a fleet name: glibc names the fleet name canonical.
        (ALIAS_NAME, WEB1_V6, "web1.internal"),
        # Reverse: the PTR of a view address is the first name in sorted order.
        (WEB1_V4, WEB1_V4, "api.internal"),
    ],
)
def test_getent_hosts(netns: Namespace, key: str, address: str, canonical: str) -> None:
    found = getent(netns, "hosts", key)
    assert found.code == 0, found.output
    assert found.lines[0][:2] == [address, canonical], found.output


# --- getent ahosts / Python getaddrinfo: AF_UNSPEC, A and AAAA together ---------------------


@pytest.mark.parametrize(
    ("key", "addresses", "canonical"),
    [
        ("api", {*API_V4, WEB1_V6}, "api.internal"),  # two instances, one with IPv6
        ("web1.internal", {WEB1_V4, WEB1_V6}, "web1.internal"),
        ("db", {DB_PUBLIC}, "db"),
        (AWS_NAME, {AWS_V4}, AWS_NAME),
        (OUTSIDE_NAME, {OUTSIDE_V4, OUTSIDE_V6}, OUTSIDE_NAME),
        (ALIAS_NAME, {WEB1_V4, WEB1_V6}, "web1.internal"),
    ],
)
def test_getent_ahosts(netns: Namespace, key: str, addresses: set[str], canonical: str) -> None:
    found = getent(netns, "ahosts", key)
    assert found.code == 0, found.output
    assert {line[0] for line in found.lines} == addresses, found.output
    assert found.lines[0][2:] == [canonical], found.output  # AI_CANONNAME on the first line


def test_getent_ahostsv4_asks_for_ipv4_only(netns: Namespace) -> None:
    found = getent(netns, "ahostsv4", "api")
    assert found.code == 0, found.output
    assert {line[0] for line in found.lines} == set(API_V4), found.output


def test_forty_addresses_do_not_fit_a_plain_udp_answer_and_glibc_gets_them_over_tcp(
    netns: Namespace,
) -> None:
    found = getent(netns, "ahosts", "cache")  # 40 instances: TC over UDP, then TCP
    assert found.code == 0, found.output
    assert {line[0] for line in found.lines} == CACHE_V4, found.output


@pytest.mark.parametrize(
    "options",
    [
        "edns0 trust-ad",  # what systemd-resolved's stub resolv.conf says
        "use-vc",  # TCP only
        "single-request",  # A, then AAAA, one at a time
        "single-request-reopen",  # and a new socket for the second
    ],
)
def test_resolver_options_of_real_nodes(netns: Namespace, options: str) -> None:
    resolv_conf = netns.etc / "resolv.conf"
    resolv_conf.write_text(RESOLV_CONF.replace("attempts:1", f"attempts:1 {options}"))
    try:
        api = getent(netns, "ahosts", "api")
        cache = getent(netns, "ahosts", "cache")
        outside = getent(netns, "ahosts", OUTSIDE_NAME)
    finally:
        resolv_conf.write_text(RESOLV_CONF)
    assert {line[0] for line in api.lines} == {*API_V4, WEB1_V6}, api.output
    assert {line[0] for line in cache.lines} == CACHE_V4, cache.output
    assert {line[0] for line in outside.lines} == {OUTSIDE_V4, OUTSIDE_V6}, outside.output


_GETADDRINFO = """
import json, socket, sys, time
results = {}
for name in sys.argv[1:]:
    started = time.monotonic()
    try:
        infos = socket.getaddrinfo(name, 443, proto=socket.IPPROTO_TCP)
        results[name] = {"addresses": sorted({info[4][0] for info in infos})}
    except socket.gaierror as exc:
        results[name] = {"error": exc.errno, "message": exc.strerror}
    results[name]["seconds"] = time.monotonic() - started
print(json.dumps(results))
"""


def test_python_getaddrinfo(netns: Namespace) -> None:
    expected: dict[str, set[str] | None] = {
        "web1": {WEB1_V4, WEB1_V6},
        "api.internal": {*API_V4, WEB1_V6},
        "db": {DB_PUBLIC},
        AWS_NAME: {AWS_V4},
        OUTSIDE_NAME: {OUTSIDE_V4, OUTSIDE_V6},
        "nosuch-host": None,
    }
    completed = netns.run(sys.executable, "-c", _GETADDRINFO, *expected)
    assert completed.returncode == 0, completed.stderr + netns.logs()
    results = json.loads(completed.stdout)
    for name, addresses in expected.items():
        result = results[name]
        if addresses is None:
            assert result.get("error") == socket.EAI_NONAME, (name, result)
            assert result["seconds"] < FAIL_FAST, (name, result)
        else:
            assert set(result.get("addresses", ())) == addresses, (name, result)


# --- unknown names fail, and fail fast -----------------------------------------------------


@pytest.mark.parametrize(
    ("database", "key"),
    [
        ("hosts", "nosuch-host"),  # nosuch-host.internal, then nosuch-host: both NXDOMAIN
        ("hosts", "nosuch.example.test"),
        ("ahosts", "nosuch-host"),
    ],
)
def test_an_unknown_name_fails_fast(netns: Namespace, database: str, key: str) -> None:
    found = getent(netns, database, key)
    assert found.code == 2, found.output  # getent: "key not found"
    assert not found.lines, found.output
    assert found.seconds < FAIL_FAST, f"took {found.seconds:.1f} s\n{found.output}"


# --- the upstream gone -------------------------------------------------------------------

_SILENT_UPSTREAM = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
print("listening", flush=True)
while True:
    sock.recv(4096)  # and never a reply: a VPC resolver that went away without a word
"""


def test_fleet_names_stay_quick_for_glibc_while_the_upstream_is_silent(
    tmp_path: Path,
) -> None:
    """EC2's resolv.conf has `search ec2.internal`, and glibc asks web2.ec2.internal
    (forwarded) before web2 (owned), going on after SERVFAIL. With the upstream silent
    each expansion waited out the forwarding deadline: 18 s for `getent hosts web2`,
    every time. Only the first lookup to find every upstream down waits now."""
    namespace = Namespace(f"tagdns-down-{os.getpid()}", tmp_path)
    _create_namespace(namespace.name)
    try:
        assert namespace.run("ip", "link", "set", "lo", "up").returncode == 0
        namespace.etc.mkdir(parents=True, exist_ok=True)
        # glibc's defaults (timeout 5 s, 2 attempts), as an EC2 AMI ships them.
        (namespace.etc / "resolv.conf").write_text("nameserver 127.0.0.53\nsearch ec2.internal\n")
        (namespace.etc / "nsswitch.conf").write_text(NSSWITCH_CONF)
        (namespace.etc / "hosts").write_text(HOSTS)
        silent, silent_log = namespace.start("silent", sys.executable, "-c", _SILENT_UPSTREAM)
        _wait_for_line(silent, silent_log, "listening", "the silent upstream")
        agent, agent_log = namespace.start(
            "agent", str(TAGDNS), "serve", "--source", str(EXAMPLE_MAPPING),
            "--view", "us-east-1", "--listen", "127.0.0.53:53", "--upstream", "127.0.0.1",
            "--cache", "none", "--metrics", "none",
        )  # fmt: skip
        _wait_for_line(agent, agent_log, "ready:", "tagdns serve")
        first = getent(namespace, "hosts", "web2")
        later = [getent(namespace, "hosts", name) for name in ("web2", "api", "db")]
    finally:
        for _, process, _ in reversed(namespace.processes):
            _stop(process)
        subprocess.run([IP, "netns", "del", namespace.name], capture_output=True, check=False)
        shutil.rmtree(namespace.etc, ignore_errors=True)
    assert first.lines == [[WEB2_V4, "web2"]], first.output
    assert first.seconds < 12, first.output  # finds the upstream down: one deadline
    for lookup in later:
        assert lookup.code == 0, lookup.output
        assert lookup.seconds < 2, f"took {lookup.seconds:.1f} s\n{lookup.output}"
