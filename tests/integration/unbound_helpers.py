"""Debian's unbound as a reference server holding the same names the agent owns.

``reference_local_data`` turns a mapping document into unbound ``local-zone`` and
``local-data`` lines for one region's view; ``unbound`` runs unbound in the
foreground on a free loopback port with those lines and yields it once it answers.

The lines are derived from the mapping JSON here, by the rules of DESIGN.md
("Views", "DNS behaviour of the agent"), not from ``resolver.core``: a bug in the
agent's view building then shows as a disagreement instead of being copied into
the reference. (``benchmarks/dns.py`` has a similar generator; tests do not import
benchmarks, and this one also needs reverse names and SOAs.)

How the configuration mirrors the agent with ``--upstream none``:

- Every apex the agent puts in a NODATA's authority section (each bare name,
  each reverse name, and the zone, ``internal``, for ``name.internal``) is a
  ``static`` local zone holding an SOA at its apex, so unbound's NODATA carries
  an SOA with the same owner and, given the agent's SOA rdata, the same data.
- ``local-zone: "." refuse`` refuses every other name without reaching the
  iterator, as the agent without an upstream does; ``unblock-lan-zones`` drops
  unbound's built-in RFC 1918 reverse zones, which would answer
  ``*.10.in-addr.arpa`` NXDOMAIN.
- No validator module: the agent is not DNSSEC-aware either.

What this cannot mirror, and the comparison therefore names as differences: a
static zone denies (NXDOMAIN) the names under its apex that it has no data for,
where the agent forwards them; the apex of ``internal`` exists in unbound (it
holds the SOA); unbound's refuse zone sets AA on REFUSED. ``transparent`` zones
would send such names on to the iterator instead, and refusing them there
(``access-control: ... refuse_non_local``) gives, in unbound 1.17, a REFUSED
without the question: further from the agent than ``static``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devsupport.net import free_port
from tests.integration.dns_helpers import START_TIMEOUT, stop_process, udp_exchange

UNBOUND = Path("/usr/sbin/unbound")
_PROBE = bytes.fromhex("beef01000001000000000000") + b"\x05ready\x07invalid\x00\x00\x01\x00\x01"


def reference_local_data(
    mapping: Path,
    view: str,
    *,
    soa_rdata: str,
    soa_ttl: int,
    zone: str = "internal",
    ttl: int = 30,
) -> list[str]:
    """unbound ``server:`` lines answering what the agent owns in ``view``.

    ``soa_rdata`` (zone-file text) and ``soa_ttl`` are taken from one of the
    agent's own NODATA replies, so that the SOAs of both servers can be compared
    field for field.

    DESIGN.md: a name with an instance in ``view`` answers as ``name`` and
    ``name.<zone>`` with the private IPv4 and the IPv6 addresses of those
    instances; a name only found elsewhere answers as ``name`` alone with public
    IPv4 addresses; each address served under ``name.<zone>`` reverses to the
    first such name in sorted order.
    """
    document = json.loads(mapping.read_text())
    local: dict[str, tuple[set[str], set[str]]] = {}
    remote: dict[str, set[str]] = {}
    for host in document["hosts"]:
        if host["region"] == view:
            ipv4, ipv6 = local.setdefault(host["name"], (set(), set()))
            ipv4.add(host["private_ipv4"])
            ipv6.update(host["ipv6"])
        elif host["public_ipv4"] is not None:
            remote.setdefault(host["name"], set()).add(host["public_ipv4"])

    def apex(name: str) -> list[str]:
        return [
            f'local-zone: "{name}." static',
            f'local-data: "{name}. {soa_ttl} IN SOA {soa_rdata}"',
        ]

    def addresses(owner: str, ipv4: set[str], ipv6: set[str]) -> list[str]:
        return [f'local-data: "{owner}. {ttl} IN A {a}"' for a in sorted(ipv4)] + [
            f'local-data: "{owner}. {ttl} IN AAAA {a}"' for a in sorted(ipv6)
        ]

    lines = ['local-zone: "." refuse', *apex(zone)]
    pointers: dict[str, str] = {}
    for name in sorted(local.keys() | remote.keys()):
        lines += apex(name)
        if name in local:
            ipv4, ipv6 = local[name]
            lines += addresses(name, ipv4, ipv6) + addresses(f"{name}.{zone}", ipv4, ipv6)
            for address in ipv4 | ipv6:
                pointers.setdefault(address, f"{name}.{zone}.")  # names come sorted
        else:
            lines += addresses(name, remote[name], set())
    for address, target in sorted(pointers.items()):
        reverse = ipaddress.ip_address(address).reverse_pointer
        lines += [*apex(reverse), f'local-data: "{reverse}. {ttl} IN PTR {target}"']
    return lines


def unbound_config(port: int, workdir: Path, server_lines: Sequence[str]) -> str:
    """A complete unbound.conf: one thread, foreground, loopback only, nothing outside.

    EDNS buffer 1232 as the agent's; minimal responses (no extra NS or glue).
    """
    lines = [
        "server:",
        "  num-threads: 1",
        "  do-daemonize: no",
        '  chroot: ""',
        '  username: ""',
        f'  directory: "{workdir}"',
        '  pidfile: ""',
        "  verbosity: 0",
        "  use-syslog: no",
        '  logfile: ""',
        f"  interface: 127.0.0.1@{port}",
        f"  port: {port}",
        "  do-ip6: no",
        "  so-reuseport: no",
        "  access-control: 127.0.0.0/8 allow",
        '  module-config: "iterator"',
        "  edns-buffer-size: 1232",
        "  minimal-responses: yes",
        "  unblock-lan-zones: yes",
        "  insecure-lan-zones: yes",
        "  hide-identity: yes",
        "  hide-version: yes",
        *(f"  {line}" for line in server_lines),
        "remote-control:",
        "  control-enable: no",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Unbound:
    """A running unbound: its port, its config and log, and a way to stop it."""

    port: int
    process: subprocess.Popen[bytes]
    config: Path
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


@contextlib.contextmanager
def unbound(server_lines: Sequence[str], workdir: Path, *, attempts: int = 5) -> Iterator[Unbound]:
    """unbound in the foreground (``-d``) on 127.0.0.1 with ``server_lines``; yields it
    once it answers over UDP (it binds UDP and TCP before it serves either).

    As with ``dnsmasq()``, the port is picked free and only then bound by unbound,
    so an unbound that exits before answering is started again on another port.
    """
    failures: list[str] = []
    for attempt in range(attempts):
        port = free_port()
        config = workdir / f"unbound-{attempt}.conf"
        log = workdir / f"unbound-{attempt}.log"
        config.write_text(unbound_config(port, workdir, server_lines))
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [str(UNBOUND), "-d", "-c", str(config)], stdout=log_file, stderr=subprocess.STDOUT
            )
        running = Unbound(port, process, config, log)
        try:
            if _answers(process, port):
                yield running
                return
            failures.append(log.read_text(errors="replace").strip())
        finally:
            running.stop()
    raise RuntimeError(f"unbound did not start in {attempts} attempts: {failures}")


def _answers(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether unbound answers on ``port``; False if it exited first."""
    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if udp_exchange("127.0.0.1", port, _PROBE, timeout=0.2) is not None:
                return True
        except OSError:  # ICMP port unreachable: not bound yet
            pass
        time.sleep(0.05)
    if process.poll() is None:
        raise RuntimeError(f"unbound on port {port} did not answer in {START_TIMEOUT:.0f} s")
    return False
