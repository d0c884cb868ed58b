"""The decisions behind ``tagdns check``: who holds a port, and what to tell the operator.

Everything here works on text and numbers handed in by resolver.adapters.preflight:
the lines of ``/proc/net/{udp,tcp}{,6}``, a process's ``comm`` and command line,
the text of systemd-resolved's configuration files, the errno of a bind, and what
one question to each upstream brought back. Each check ends as one ``ok:`` or
``FAIL:`` line.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from resolver.core.endpoints import Endpoint
from resolver.core.query_stats import rcode_name
from resolver.core.upstream_reply import UPSTREAM_ERRORS, extended_error_text
from resolver.core.upstreams import is_self

TCP_LISTEN = 0x0A
RESOLVED_COMMS = frozenset({"systemd-resolve", "systemd-resolved"})
"""``comm`` is cut to 15 characters: systemd-resolved shows as ``systemd-resolve``."""
RESOLVED_STUBS = (Endpoint("127.0.0.53", 53), Endpoint("127.0.0.54", 53))
TAKEOVER_DROP_IN = "conf/resolved/tagdns-takeover.conf"
ROUTING_DROP_IN = "conf/resolved/tagdns-internal.conf"
ALTERNATE_LISTEN = "127.0.0.153:53"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    text: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL'}: {self.text}"


def ok(text: str) -> CheckResult:
    return CheckResult(True, text)


def fail(text: str) -> CheckResult:
    return CheckResult(False, text)


# -- /proc/net -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSocket:
    """One socket line of /proc/net/{udp,tcp}{,6}."""

    host: str
    port: int
    state: int
    inode: int


def _address(hex_text: str, byteorder: Literal["little", "big"]) -> str:
    """/proc/net prints each 32-bit word of the address in host byte order."""
    if len(hex_text) not in (8, 32):
        raise ValueError(hex_text)
    raw = b"".join(
        int(hex_text[i : i + 8], 16).to_bytes(4, byteorder) for i in range(0, len(hex_text), 8)
    )
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parse_proc_net(text: str, byteorder: Literal["little", "big"] = "little") -> list[ProcSocket]:
    """The sockets of one /proc/net/{udp,tcp}{,6} file; the header and odd lines are skipped."""
    sockets: list[ProcSocket] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or not fields[0].endswith(":"):
            continue
        local = fields[1]
        host_hex, _, port_hex = local.partition(":")
        try:
            sockets.append(
                ProcSocket(
                    host=_address(host_hex, byteorder),
                    port=int(port_hex, 16),
                    state=int(fields[3], 16),
                    inode=int(fields[9]),
                )
            )
        except ValueError:
            continue
    return sockets


def _unspecified(host: str) -> bool:
    return ipaddress.ip_address(host).is_unspecified


def _plain(host: str) -> str:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def blocking_inodes(sockets: Iterable[ProcSocket], endpoint: Endpoint, *, tcp: bool) -> list[int]:
    """Inodes of the sockets that stop ``endpoint`` from being bound (same port, overlapping
    address; for TCP only listeners count)."""
    wanted = _plain(endpoint.host)
    found: list[int] = []
    for sock in sockets:
        if sock.port != endpoint.port or (tcp and sock.state != TCP_LISTEN):
            continue
        overlaps = sock.host == wanted or _unspecified(sock.host) or _unspecified(wanted)
        if overlaps and sock.inode and sock.inode not in found:
            found.append(sock.inode)
    return found


# -- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    pid: int
    comm: str
    cmdline: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.comm} (pid {self.pid})"


def parse_cmdline(raw: bytes) -> tuple[str, ...]:
    """/proc/PID/cmdline: arguments separated (and ended) by NUL."""
    return tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)


def is_systemd_resolved(holder: Holder) -> bool:
    return holder.comm in RESOLVED_COMMS


def is_tagdns_agent(holder: Holder) -> bool:
    """A ``tagdns serve`` process (the console script, or ``python -m resolver.cli``)."""
    args = holder.cmdline
    if "serve" not in args:
        return False
    return holder.comm == "tagdns" or any(
        arg.rsplit("/", 1)[-1] == "tagdns" or arg == "resolver.cli" for arg in args
    )


# -- verdicts --------------------------------------------------------------------------------


def _describe_holders(holders: Sequence[Holder]) -> str:
    if not holders:
        return "another process (run as root to see which)"
    return ", ".join(str(h) for h in holders)


def resolved_fix(endpoint: Endpoint) -> str:
    return (
        f"systemd-resolved's stub listener holds {endpoint}: either turn it off with "
        f"DNSStubListener=no ({TAKEOVER_DROP_IN}) and restart systemd-resolved, or keep it "
        f"and listen on another loopback address such as {ALTERNATE_LISTEN} with resolved "
        f"sending ~internal there ({ROUTING_DROP_IN}); see docs/node-setup.md"
    )


def listen_verdict(
    endpoint: Endpoint,
    bind_errors: dict[str, tuple[int, str] | None],
    holders: Sequence[Holder],
    *,
    what: str = "listen",
    resolved_stub_off: bool = False,
) -> CheckResult:
    """One line for one listen address, from the bind attempts (``udp``/``tcp`` -> errno, text).

    ``resolved_stub_off``: resolved's configuration on disk turns its stub listener off
    (``resolved_stub_listener_off``). A resolved holding the address then lets it go at
    its next restart: the takeover is set up, and checked before that restart, while
    the node can still resolve the names the other checks need (the S3 endpoint).
    """
    failed = {proto: error for proto, error in bind_errors.items() if error is not None}
    if not failed:
        protocols = " and ".join(p.upper() for p in bind_errors)
        return ok(f"{what} {endpoint}: free ({protocols})")
    protocols = " and ".join(p.upper() for p in failed)
    codes = {code for code, _ in failed.values()}
    if errno.EADDRINUSE in codes:
        if holders and all(is_tagdns_agent(h) for h in holders):
            return ok(f"{what} {endpoint}: held by the running tagdns agent (pid {holders[0].pid})")
        if any(is_systemd_resolved(h) for h in holders):
            if resolved_stub_off:
                return ok(
                    f"{what} {endpoint}: held by systemd-resolved until it restarts: its "
                    "configuration turns the stub listener off (DNSStubListener=no)"
                )
            return fail(f"{what} {endpoint}: {protocols} port in use: {resolved_fix(endpoint)}")
        return fail(f"{what} {endpoint}: {protocols} port in use by {_describe_holders(holders)}")
    if errno.EACCES in codes or errno.EPERM in codes:
        return fail(
            f"{what} {endpoint}: permission denied: ports below 1024 need root or "
            "CAP_NET_BIND_SERVICE (conf/systemd/tagdns.service grants it)"
        )
    if errno.EADDRNOTAVAIL in codes:
        return fail(f"{what} {endpoint}: {endpoint.host} is not an address of this host")
    code, text = next(iter(failed.values()))
    return fail(f"{what} {endpoint}: cannot bind {protocols}: {text or errno.errorcode.get(code)}")


# -- systemd-resolved configuration ----------------------------------------------------------


def resolved_dns_servers(texts: Sequence[str]) -> list[Endpoint]:
    """The ``DNS=`` servers of resolved.conf and its drop-ins, read in order.

    As systemd reads them: later assignments add to the list and an empty ``DNS=``
    empties it; only the ``[Resolve]`` section counts. Server names (``#name``) and
    interfaces (``%eth0``) are dropped; an unreadable entry is skipped.
    """
    servers: list[Endpoint] = []
    for key, value in _resolve_settings(texts):
        if key != "DNS":
            continue
        entries = value.split()
        if not entries:
            servers.clear()
            continue
        for entry in entries:
            endpoint = _resolved_server(entry)
            if endpoint is not None:
                servers.append(endpoint)
    return servers


def resolved_stub_listener_off(texts: Sequence[str]) -> bool:
    """Whether resolved.conf and its drop-ins, read in order, set ``DNSStubListener=no``.

    The last assignment in a ``[Resolve]`` section wins, as systemd reads them; an
    empty one resets it to the default (on). systemd takes the booleans' usual
    spellings; ``udp`` and ``tcp`` keep half the stub, which still holds the port.
    """
    stub = "yes"
    for key, value in _resolve_settings(texts):
        if key == "DNSStubListener":
            stub = value.lower() or "yes"
    return stub in ("no", "false", "off", "0", "n", "f")


def _resolve_settings(texts: Sequence[str]) -> Iterator[tuple[str, str]]:
    """Each ``key=value`` of a ``[Resolve]`` section, in the order read."""
    for text in texts:
        section = ""
        for raw_line in text.splitlines():
            line = raw_line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
                continue
            key, sep, value = line.partition("=")
            if sep and section == "Resolve":
                yield key.strip(), value.strip()


def _resolved_server(entry: str) -> Endpoint | None:
    text = entry.split("#", 1)[0]
    port = 53
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            return None
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not (rest.startswith(":") and rest[1:].isdigit()):
                return None
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            return None
        port = int(port_text)
    else:
        host = text
    host = host.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not 0 < port <= 65535:
        return None
    return Endpoint(str(address), port)


def upstream_verdicts(
    upstreams: Sequence[Endpoint],
    listen: Sequence[Endpoint],
    resolved_servers: Sequence[Endpoint],
    stub_holders: Mapping[Endpoint, Sequence[Holder]],
) -> list[CheckResult]:
    """Loops through ourselves: an upstream that is our own listener, or a resolved stub
    while resolved sends queries to us."""
    results: list[CheckResult] = []
    routes_to_us = [server for server in resolved_servers if is_self(server, listen)]
    for upstream in upstreams:
        if is_self(upstream, listen):
            results.append(
                fail(f"upstream {upstream} is this agent's own listen address (a forwarding loop)")
            )
            continue
        holders = stub_holders.get(upstream, ())
        if routes_to_us and any(is_systemd_resolved(h) for h in holders):
            results.append(
                fail(
                    f"upstream {upstream} is systemd-resolved, which sends queries back to "
                    f"this agent (DNS={routes_to_us[0]}): a loop for names not owned; set "
                    '[dns] upstream to the VPC resolver ("169.254.169.253") or the servers '
                    "in /run/systemd/resolve/resolv.conf"
                )
            )
            continue
        results.append(ok(f"upstream {upstream}"))
    return results


ROOT_NS_QUESTION = b"\x00\x00\x02\x00\x01"
"""``. NS IN`` in wire form: a question every recursive resolver can answer."""


@dataclass(frozen=True)
class UpstreamProbe:
    """What one question to an upstream brought back."""

    rcode: int | None
    """The reply's RCODE; None when no reply came (see ``error``)."""
    seconds: float
    error: str | None = None
    """Why nothing came back: a timeout, or what the system said (port unreachable)."""
    extended_error: tuple[int, str] | None = None
    """The reply's Extended DNS Error (RFC 8914): the upstream's own reason for an error."""


def upstream_probe_verdict(upstream: Endpoint, probe: UpstreamProbe) -> CheckResult:
    """A resolver the agent forwards to must answer: a silent one holds every name not
    owned for the attempt timeout, and one that refuses recursion turns them all into
    SERVFAIL, while the agent itself starts without complaint."""
    if probe.rcode is None:
        return fail(f"upstream {upstream}: {probe.error}; names not owned would get SERVFAIL")
    if probe.rcode in UPSTREAM_ERRORS or probe.rcode > 0x0F:
        said = ""
        if probe.extended_error is not None:
            said = f" ({extended_error_text(probe.extended_error)})"
        return fail(
            f"upstream {upstream}: answered {rcode_name(probe.rcode)}{said} to a recursive "
            "question (. NS); names not owned would get SERVFAIL"
        )
    return ok(f"upstream {upstream}: answers ({probe.seconds * 1000:.0f} ms)")


# -- [hosts] ---------------------------------------------------------------------------------

DNSMASQ_COMM = "dnsmasq"


def dnsmasq_verdict(
    pidfile: str, pid: int | None, comm: str | None, *, alive: bool = False
) -> CheckResult:
    """One line for ``[hosts] dnsmasq_pidfile``, from the pid in it and that process's name.

    It mirrors what the dnsmasq feeder does after each write: no pidfile or no such
    process means dnsmasq is not running, which is no fault (it reads the file when
    it starts), so the line is ok and says so; a pid held by another process is a
    stale pidfile the feeder refuses to signal on every change, so that fails. So
    does a live process whose name cannot be read (``comm`` None, ``alive``): /proc
    mounted hidepid hides it, and the feeder will not signal what it cannot name.
    """
    what = f"hosts dnsmasq_pidfile {pidfile}"
    later = "it reads the hosts file when it starts"
    if pid is None:
        return ok(f"{what}: dnsmasq is not running (no pidfile); {later}")
    if comm is None and alive:
        return fail(
            f"{what}: pid {pid} is running but cannot be identified as {DNSMASQ_COMM} "
            f"(/proc/{pid}/comm is hidden or unreadable: /proc mounted with hidepid, or "
            "systemd's ProtectProc=invisible?): the agent would not signal it after a change"
        )
    if comm is None:
        return ok(f"{what}: dnsmasq is not running (no process {pid}); {later}")
    if comm != DNSMASQ_COMM:
        return fail(
            f"{what}: pid {pid} is {comm!r}, not {DNSMASQ_COMM}: the agent would not signal "
            "it after a change (stale pidfile?)"
        )
    return ok(f"{what}: dnsmasq running (pid {pid})")
