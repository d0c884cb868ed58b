"""Hostile-client benchmark: what one costly local client takes from the others.

Run with ``scripts/bench hostile``. The agent (``--upstream none``) and unbound
(``num-threads: 1``) serve the same 1,000-name fleet as ``scripts/bench dns``, built
and started with that benchmark's helpers. Each answers every client from one thread
(the agent's event loop, unbound's one worker), so whatever one client's messages cost
is taken from everyone else. Two measurements, in interleaved rounds, medians:

1. A normal client (dnsperf, owned A/AAAA) alone, then beside a hostile one: a UDP
   sender of 4 KB queries carrying 330 additional records each at a fixed rate, or a
   TCP client streaming 64 KB messages on one connection with a few unanswered. How
   much of its own rate the normal client keeps, as a ratio to the same server alone.
2. Server CPU per query by query shape at a rate both servers sustain: the owned-name
   fast path and the shapes that leave it (EDNS options, ANY, NODATA, names not
   owned, BADVERS, many additional records), against unbound on the same queries.

The machine is shared and noisy, so the ratios are the figures to trust. The result
is printed and written into docs/performance.md between the ``bench:hostile``
markers; everything else in that file is kept as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from dnslib import DNSError, DNSRecord

from benchmarks.dns import (
    AGENT,
    PERFORMANCE_DOC,
    ZONE,
    Inputs,
    Server,
    add_load_arguments,
    agent_server,
    check_same_answers,
    dns_query,
    dnsperf,
    host_name,
    interleave,
    median,
    perf_settings,
    query_lines,
    running,
    unbound_server,
    write_inputs,
)
from devsupport.report import (
    add_output_arguments,
    load_average,
    publish,
    revision,
    work_directory,
)

BEGIN_MARKER = "<!-- bench:hostile:begin -->"
END_MARKER = "<!-- bench:hostile:end -->"
UNBOUND = "unbound"
ALONE = "alone"
UDP_FLOOD = "udp"
TCP_STREAM = "tcp"
FLOOD_RECORDS = 330
"""Minimal additional records (12 bytes each) that fill a query to just under 4 KB."""
TCP_OPTIONS = 16_000
"""Empty EDNS options (4 bytes each) that fill a query to just under 64 KB."""
FLOOD_SHAPE = f"{FLOOD_RECORDS} additional records (4 KB)"
RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    16: "BADVERS",
}


# -- messages -------------------------------------------------------------------------------
# Built here rather than with resolver.core.wire, so the client does not share the code
# it measures.


def with_additional(query: bytes, records: Sequence[bytes]) -> bytes:
    """``query`` (from ``dns_query``: no additional records) with ``records`` appended."""
    return query[:10] + struct.pack("!H", len(records)) + query[12:] + b"".join(records)


def opt_record(*, version: int = 0, options: bytes = b"", payload: int = 1232) -> bytes:
    """An OPT pseudo-record: root owner, ``payload`` as its class, ``version`` in its TTL."""
    return b"\0" + struct.pack("!HHBBHH", 41, payload, 0, version, 0, len(options)) + options


def edns_option(code: int, value: bytes) -> bytes:
    return struct.pack("!HH", code, len(value)) + value


COOKIE = edns_option(10, bytes(range(8)))
"""A client cookie alone (RFC 7873), as dig sends with every first query."""
EMPTY_TXT = b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 0, 0)
"""The smallest additional record: a pointer to the question name, TXT, no data."""


def flood_query(name: str) -> bytes:
    return with_additional(dns_query(name), [EMPTY_TXT] * FLOOD_RECORDS)


def tcp_query(name: str) -> bytes:
    options = edns_option(65001, b"") * TCP_OPTIONS
    return with_additional(dns_query(name), [opt_record(options=options)])


def shapes(inputs: Inputs, count: int) -> dict[str, list[bytes]]:
    """The query shapes measured for CPU per query, ``count`` messages each.

    Owned names are the A lines of the dns benchmark's query mix (``name`` and
    ``name.internal``). Names not owned are under ``internal.``: unbound holds that
    zone static (NXDOMAIN), the agent without an upstream refuses them.
    """
    lines = query_lines(inputs.view, count * 2)
    owned = [line.split()[0] for line in lines if line.endswith(" A")][:count]
    return {
        "owned A (fast path)": [dns_query(name) for name in owned],
        "owned A, EDNS with COOKIE (as dig asks)": [
            with_additional(dns_query(name), [opt_record(options=COOKIE)]) for name in owned
        ],
        "ANY, owned name": [dns_query(name, 255) for name in owned],
        "TXT, owned name (NODATA)": [dns_query(name, 16) for name in owned],
        "A, name not owned (`nothere-N.internal`)": [
            dns_query(f"nothere-{i}.{ZONE}") for i in range(len(owned))
        ],
        "owned A, EDNS version 1 (BADVERS)": [
            with_additional(dns_query(name), [opt_record(version=1)]) for name in owned
        ],
        FLOOD_SHAPE: [flood_query(owned[0])],
    }


def write_binary(path: Path, messages: Sequence[bytes]) -> Path:
    """A ``dnsperf -B`` input file: each message behind its 2-byte length, as on TCP."""
    path.write_bytes(b"".join(struct.pack("!H", len(m)) + m for m in messages))
    return path


def rcode(reply: bytes) -> str:
    """The reply's RCODE, extended by its OPT record when it has one (BADVERS is 16)."""
    code = reply[3] & 0x0F
    with contextlib.suppress(DNSError, IndexError, ValueError):
        for record in DNSRecord.parse(reply).ar:
            if record.rtype == 41:
                code |= (record.ttl >> 24) << 4
    return RCODES.get(code, f"RCODE {code}")


def ask(port: int, message: bytes) -> str:
    """One message over UDP; the RCODE of its reply, or ``no reply``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(message, ("127.0.0.1", port))
        try:
            return rcode(sock.recv(65535))
        except TimeoutError:
            return "no reply"


# -- hostile clients ------------------------------------------------------------------------


@dataclass
class Tally:
    """What a hostile client sent and got back, and for how long it ran."""

    sent: int = 0
    answered: int = 0
    seconds: float = 0.0
    connections: int = 0
    cpu: float = 0.0
    """Seconds of CPU the client's own thread used: it shares the cores with the rest."""
    rcodes: set[int] = field(default_factory=set)

    def count(self, reply: bytes | bytearray) -> None:
        self.answered += 1
        self.rcodes.add(reply[3] & 0x0F)


def udp_flood(port: int, message: bytes, rate: int, stop: threading.Event, tally: Tally) -> None:
    """Send ``message`` (new ID each time) at ``rate`` per second until ``stop``.

    Paced on the clock, not on the replies: a server that drops these gets every
    one all the same, as it would from a client that does not care for answers.
    """
    query = bytearray(message)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)

        def drain() -> None:
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                while True:
                    tally.count(sock.recv(65535))

        started = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            with contextlib.suppress(BlockingIOError):  # the rest goes out next time
                while tally.sent < due:
                    query[:2] = struct.pack("!H", tally.sent & 0xFFFF)
                    sock.send(query)
                    tally.sent += 1
            drain()
            time.sleep(0.0005)
        tally.seconds = time.monotonic() - started
        time.sleep(0.2)  # replies still on their way
        drain()


def tcp_stream(port: int, message: bytes, window: int, stop: threading.Event, tally: Tally) -> None:
    """Stream ``message`` on one TCP connection, at most ``window`` unanswered.

    A connection the server closes is opened again (``Tally.connections``).
    """
    frame = struct.pack("!H", len(message)) + message
    started = time.monotonic()
    while not stop.is_set():
        tally.connections += 1
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setblocking(False)
            unsent, received, unanswered = memoryview(b""), bytearray(), 0
            with contextlib.suppress(ConnectionError):
                while not stop.is_set():
                    if not unsent and unanswered < window:
                        unsent, unanswered = memoryview(frame), unanswered + 1
                        tally.sent += 1
                    readable, writable, _ = select.select(
                        [sock], [sock] if unsent else [], [], 0.05
                    )
                    if writable:
                        unsent = unsent[sock.send(unsent) :]
                    if readable:
                        data = sock.recv(1 << 16)
                        if not data:
                            break
                        received += data
                        while len(received) >= 2 and len(received) >= 2 + (
                            size := int.from_bytes(received[:2])
                        ):
                            tally.count(received[2 : 2 + size])
                            del received[: 2 + size]
                            unanswered -= 1
    tally.seconds = time.monotonic() - started


@contextlib.contextmanager
def hostile(client: Callable[[threading.Event, Tally], None]) -> Iterator[Tally]:
    """Run ``client`` (``udp_flood`` or ``tcp_stream``, bound to its server) in a thread
    for the ``with`` block; what it sent and got back once it has stopped."""
    tally = Tally()
    stop = threading.Event()

    def body() -> None:
        started = time.thread_time()
        try:
            client(stop, tally)
        finally:
            tally.cpu = time.thread_time() - started

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    time.sleep(0.3)  # under way before the measurement starts
    try:
        yield tally
    finally:
        stop.set()
        thread.join()


# -- measurements ---------------------------------------------------------------------------

LOADS = (ALONE, UDP_FLOOD, TCP_STREAM)


@dataclass
class Results:
    """Per (load or shape, server label): one entry per round."""

    qps: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    tallies: dict[tuple[str, str], list[Tally]] = field(default_factory=dict)
    cpu_us: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    answered: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    """Share of the queries sent that were answered, in the CPU rounds."""
    rcodes: dict[tuple[str, str], str] = field(default_factory=dict)
    """What each server answers one message of each shape (checked before the rounds)."""
    sizes: dict[str, int] = field(default_factory=dict)
    """Each shape, in the order measured, and the bytes of its first message."""
    checked: int = 0


def load_client(
    load: str, port: int, args: argparse.Namespace, name: str
) -> contextlib.AbstractContextManager[Tally]:
    """The hostile client of ``load`` against ``port``; nothing for ``alone``."""
    if load == UDP_FLOOD:
        return hostile(partial(udp_flood, port, flood_query(name), args.flood_rate))
    if load == TCP_STREAM:
        return hostile(partial(tcp_stream, port, tcp_query(name), args.window))
    return contextlib.nullcontext(Tally())


def measure(args: argparse.Namespace, inputs: Inputs, work: Path) -> Results:
    """Check both servers answer alike, then the two measurements, interleaved."""
    agent = agent_server(AGENT, inputs.document, work)
    agent.argv += ["--metrics", "none"]  # no port 9153 taken (or needed) beside a test run
    servers = [agent, unbound_server(inputs.view, work)]
    name = host_name(1, args.names)
    messages = shapes(inputs, 2_000)
    files = {
        label: write_binary(work / f"shape-{i}.bin", batch)
        for i, (label, batch) in enumerate(messages.items())
    }
    results = Results(sizes={label: len(batch[0]) for label, batch in messages.items()})
    normal_perf = [*perf_settings(args), "-l", str(args.seconds), "-t", "1"]

    def beside(server: Server) -> None:
        for load in LOADS:
            with load_client(load, server.port, args, name) as tally:
                result = dnsperf(server.port, inputs.queries, normal_perf)
            results.qps.setdefault((load, server.label), []).append(result.qps)
            results.tallies.setdefault((load, server.label), []).append(tally)

    def by_shape(server: Server) -> None:
        for label, path in files.items():
            before = sum(server.cpu_seconds())
            if label == FLOOD_SHAPE:
                flood = partial(udp_flood, server.port, messages[label][0], args.rate)
                with hostile(flood) as tally:
                    time.sleep(args.cpu_seconds)
                sent, answered = tally.sent, tally.answered
            else:
                fixed = ["-B", "-Q", str(args.rate), "-l", str(args.cpu_seconds)]
                result = dnsperf(server.port, path, fixed)
                sent, answered = result.sent, result.completed
            used = sum(server.cpu_seconds()) - before
            key = (label, server.label)
            results.cpu_us.setdefault(key, []).append(used / max(sent, 1) * 1e6)
            results.answered.setdefault(key, []).append(answered / max(sent, 1))

    with running(servers):
        for server in servers:
            server.wait_ready(name)
        results.checked = check_same_answers(servers, inputs.query_lines, args.check)
        for server in servers:
            for label, batch in messages.items():
                results.rcodes[label, server.label] = ask(server.port, batch[0])
            dnsperf(server.port, inputs.queries, [*perf_settings(args), "-l", "2"])  # warm-up
        interleave(servers, args.rounds, beside)
        interleave(servers, args.cpu_rounds, by_shape)
    return results


# -- report ---------------------------------------------------------------------------------


def machine() -> str:
    """A sentence on the machine: cores and CPU model."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"a shared {os.cpu_count()}-core VM ({model})"


@dataclass(frozen=True)
class Report:
    args: argparse.Namespace
    results: Results
    date: str
    revision: str
    load_before: str
    run_seconds: float

    def _beside(self) -> list[str]:
        r, a = self.results, self.args
        load_names = {
            ALONE: "none (dnsperf alone)",
            UDP_FLOOD: f"UDP: {FLOOD_RECORDS} additional records per query "
            f"({r.sizes[FLOOD_SHAPE]:,} bytes), "
            f"{a.flood_rate:,}/s",
            TCP_STREAM: f"TCP: 64 KB messages ({TCP_OPTIONS:,} empty EDNS options) on one "
            f"connection, ≤ {a.window} unanswered",
        }
        rows = [
            "| hostile client beside dnsperf | agent queries/s | vs alone | unbound queries/s "
            "| vs alone | agent / unbound | hostile messages answered/s (of sent/s): agent "
            "| unbound |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for load in LOADS:
            qps = {s: median(r.qps[load, s]) for s in (AGENT, UNBOUND)}
            alone = {s: median(r.qps[ALONE, s]) for s in (AGENT, UNBOUND)}
            rows.append(
                f"| {load_names[load]} | {qps[AGENT]:,.0f} | {qps[AGENT] / alone[AGENT]:.2f}x "
                f"| {qps[UNBOUND]:,.0f} | {qps[UNBOUND] / alone[UNBOUND]:.2f}x "
                f"| {qps[AGENT] / qps[UNBOUND]:.2f}x "
                f"| {self._hostile(load, AGENT)} | {self._hostile(load, UNBOUND)} |"
            )
        return rows

    def _hostile(self, load: str, server: str) -> str:
        if load == ALONE:
            return "-"
        tallies = self.results.tallies[load, server]
        answered = median([t.answered / t.seconds for t in tallies])
        sent = median([t.sent / t.seconds for t in tallies])
        codes = sorted({code for t in tallies for code in t.rcodes})
        named = ", ".join(RCODES.get(code, str(code)) for code in codes) or "no reply"
        connections = max(t.connections for t in tallies)
        reopened = f", {connections} connections" if connections > 1 else ""
        busy = median([t.cpu / t.seconds for t in tallies])
        return f"{answered:,.0f} of {sent:,.0f} ({named}{reopened}; client CPU {busy:.0%})"

    def _by_shape(self) -> list[str]:
        r = self.results
        fast_path = next(iter(r.sizes))
        base = {s: median(r.cpu_us[fast_path, s]) for s in (AGENT, UNBOUND)}
        rows = [
            "| query shape | bytes | answer: agent / unbound | agent µs/query | unbound µs/query "
            "| agent / unbound | added to the fast path, µs: agent / unbound "
            "| answered: agent / unbound |",
            "|---|---:|---|---:|---:|---:|---:|---|",
        ]
        for label, size in r.sizes.items():
            us = {s: median(r.cpu_us[label, s]) for s in (AGENT, UNBOUND)}
            share = {s: median(r.answered[label, s]) for s in (AGENT, UNBOUND)}
            added = " / ".join(f"{round(us[s] - base[s], 1) + 0.0:+.1f}" for s in (AGENT, UNBOUND))
            rows.append(
                f"| {label} | {size:,} | {r.rcodes[label, AGENT]} / {r.rcodes[label, UNBOUND]} "
                f"| {us[AGENT]:.1f} | {us[UNBOUND]:.1f} | {us[AGENT] / us[UNBOUND]:.2f}x "
                f"| {added if label != fast_path else '(base)'} "
                f"| {share[AGENT]:.0%} / {share[UNBOUND]:.0%} |"
            )
        return rows

    def markdown(self) -> str:
        a = self.args
        lines = [
            "## Hostile clients: what costly messages take from everyone else",
            "",
            f"Command: `scripts/bench hostile`. Run {self.date} on {self.revision}; load average "
            f"before the run {self.load_before}; the run took {self.run_seconds / 60:.1f} min.",
            "",
            f"Measured on {machine()}: other work runs beside it, and dnsperf and the "
            "hostile client take CPU from the same two cores, so absolute numbers drift "
            "from run to run and the **ratios are the figure to trust**.",
            "",
            f"Setup: the fleet of `scripts/bench dns` ({a.names:,} names), served by the agent "
            "(`tagdns serve --upstream none --cache none --metrics none`) and by unbound "
            "(`num-threads: 1`, `local-data` in static local zones, `internal.` static). Before "
            f"measuring, dig checked both give the same answers to {self.results.checked} "
            "queries. Both answer every client from one thread (the agent's event loop, "
            "unbound's one worker): what one client's messages cost, the others lose.",
            "",
            f"**A normal client beside a hostile one.** dnsperf sends the `scripts/bench dns` "
            f"query mix (owned names, A and AAAA; `dnsperf {' '.join(perf_settings(a))} "
            f"-l {a.seconds} -t 1`) to each server alone, then beside a second local client "
            "started 0.3 s before it and stopped after it: a UDP sender (a Python thread "
            "pacing on `time.monotonic`, whatever the replies) or a TCP client keeping one "
            "connection full, as fast as the server answers. *vs alone* is each server's "
            "rate against its own rate alone; median of "
            f"{a.rounds} interleaved rounds (agent: alone, UDP, TCP; unbound: the same; "
            "again). Last columns: the hostile client's messages answered per second, the "
            "RCODEs it saw, and the share of a core its own thread used (taken from the "
            "same two cores as dnsperf and the server). unbound leaves most of the UDP "
            "sender's queries unanswered: it rate-limits its error replies (below).",
            "",
            *self._beside(),
            "",
            f"**CPU per query by query shape.** Each shape at {a.rate:,} queries/s for "
            f"{a.cpu_seconds} s, a rate both servers sustain: `dnsperf -B -Q {a.rate} -l "
            f"{a.cpu_seconds}` from 2,000 wire-format messages, except the "
            f"{FLOOD_RECORDS}-record queries, sent by the paced UDP sender at the same rate "
            "(dnsperf stalls once a server leaves its queries unanswered). utime+stime of "
            "the server process from `/proc/PID/stat` divided by the queries *sent*, median "
            f"of {a.cpu_rounds} interleaved rounds. *Answer* is the RCODE each server gave "
            "one message of the shape; *answered* the share of the queries sent that got a "
            "reply. The owned names are the A lines of the dns query mix; the names not "
            "owned are under `internal.`, which unbound holds as a static zone (NXDOMAIN) "
            "and the agent without an upstream refuses. At this rate most queries wake the "
            "server on their own, so the fast-path row is mostly the cost of a wake-up; "
            "*added to the fast path* is what each shape costs beyond it. unbound answers "
            "about 100 error replies to malformed requests a second (`ERROR_RATELIMIT` "
            "in its daemon/worker.c) and drops the rest unanswered: hence its low "
            f"*answered* share for the {FLOOD_RECORDS}-record queries.",
            "",
            *self._by_shape(),
        ]
        return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Report:
    started = time.monotonic()
    load_before = load_average()
    with work_directory(args.work, "tagdns-bench-") as work:
        results = measure(args, write_inputs(args.names, args.queries, work), work)
    return Report(
        args=args,
        results=results,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        revision=revision(),
        load_before=load_before,
        run_seconds=time.monotonic() - started,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=50_000, help="lines in the query file")
    parser.add_argument("--check", type=int, default=30, help="dig sample size")
    parser.add_argument("--seconds", type=int, default=5, help="dnsperf -l, normal client")
    parser.add_argument("--rounds", type=int, default=3, help="rounds beside a hostile client")
    add_load_arguments(parser, ", normal client")
    parser.add_argument("--flood-rate", type=int, default=2_000, help="hostile UDP queries/s")
    parser.add_argument("--window", type=int, default=8, help="hostile TCP unanswered at most")
    parser.add_argument("--rate", type=int, default=5_000, help="queries/s for CPU per query")
    parser.add_argument("--cpu-seconds", type=int, default=4, help="seconds per shape and round")
    parser.add_argument("--cpu-rounds", type=int, default=3, help="rounds of CPU per shape")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    publish(
        run(args).markdown(), PERFORMANCE_DOC, BEGIN_MARKER, END_MARKER, write=not args.no_write
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
