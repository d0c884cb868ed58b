"""Soak: a real agent under mixed load, reloads and hostile packets, every answer checked.

Run with ``scripts/soak`` (default 600 s) or ``python benchmarks/soak.py --duration 60``.

What runs, all on loopback:

- the agent (``tagdns serve``) on a file source that is rewritten every
  ``--reload-interval`` seconds with a new serial, alternating two documents A
  and B (changed addresses, names only in A, names only in B); most rewrites
  are renames, some are in-place writes (the agent may read them half-written
  and must refuse that), every fifth is followed by a SIGHUP. The agent also
  keeps a hosts file and its last-known-good copy in sync.
- a hostile upstream (tests/integration/hostile_upstream.py) for names not
  owned: plain answers with a 5 s TTL, slow ones, forged replies (wrong ID, wrong
  question, another source port), NXDOMAIN with a 5 s negative TTL, and records
  for the owned names carrying a poison address it is never asked for.
- dnsperf for volume (``--qps``), a mix of owned and forwarded names.
- a checker (``--check-qps``) sending UDP and TCP queries and checking every
  reply against the document in force when it was sent: around a swap either
  document's answer is accepted for ``--grace`` seconds, then only the new one.
  Forwarded names must get the upstream's true answer; a poison address is a
  wrong answer wherever it appears.
- hostile packets (``--hostile-pps``): random bytes, truncated queries,
  compression loops, responses, oversized TCP lengths, slowloris connections.

Every ``--sample-interval`` seconds the agent's RSS, open file descriptors and
threads are read from /proc (and its asyncio task count from /metrics when the
agent exports one). Pass criteria: zero wrong answers, zero stale answers, owned
names never unanswered, RSS growth under 10 % between the first and last
quarter after warm-up, no rise of the file descriptors' floor between those
quarters (judged when each holds five samples) and back to their baseline (sampled
after one forwarded answer) once the load stops. Exit code 0 when all hold, 1
otherwise; ``--json`` writes the figures, ``--record`` puts them in
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dnslib import QTYPE, RCODE, DNSError, DNSRecord  # noqa: E402

from resolver.core.document import HostEntry, make_document  # noqa: E402
from tests.integration.hostile_upstream import POISON_V4, HostileUpstream, Mode  # noqa: E402

TAGDNS = Path(sys.executable).with_name("tagdns")
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
REGION, REMOTE_REGION, ZONE = "us-east-1", "eu-west-1", "internal"
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_METRIC_TASKS = re.compile(r"^tagdns_asyncio_tasks\s+(\d+(?:\.\d+)?)", re.MULTILINE)

# -- the two documents ------------------------------------------------------------------------

LOCAL = [f"svc-{i:03d}" for i in range(150)]
POOLS = [f"pool-{i}" for i in range(5)]
ONLY_A = [f"olda-{i:02d}" for i in range(20)]
ONLY_B = [f"oldb-{i:02d}" for i in range(20)]
REMOTE = [f"far-{i}" for i in range(10)]
FORWARDED = [f"fwd-{i:03d}.example.test" for i in range(100)]
FORGED = {
    "slow.example.test": Mode.SLOW,
    "forged-id.example.test": Mode.WRONG_ID_FIRST,
    "forged-question.example.test": Mode.WRONG_QUESTION_FIRST,
    "forged-port.example.test": Mode.SPOOF_OTHER_PORT,
}
MISSING = [f"missing-{i:02d}.example.test" for i in range(20)]
ALWAYS_OWNED = frozenset([*LOCAL, *POOLS, *REMOTE, *(f"{n}.internal" for n in LOCAL + POOLS)])
"""Names both documents own: one of these unanswered is a failure."""


@dataclass(frozen=True)
class Expected:
    """What a name answers in one document: (rcode, AA, sorted addresses) per type."""

    a: tuple[str, bool, tuple[str, ...]]
    aaaa: tuple[str, bool, tuple[str, ...]]


def _hosts(content: str) -> list[HostEntry]:
    """Document A or B as host entries (deterministic)."""
    variant = 1 if content == "A" else 2
    hosts: list[HostEntry] = []
    serial = 0

    def add(
        name: str, region: str, private: str, public: str | None, ipv6: tuple[str, ...]
    ) -> None:
        nonlocal serial
        serial += 1
        hosts.append(
            HostEntry(name, region, f"i-{serial:017x}", f"{region}a", private, public, ipv6)
        )

    for index, name in enumerate(LOCAL):
        # Even names move between the documents, odd names stay.
        third = variant if index % 2 == 0 else 0
        v6 = ipaddress.IPv6Address(f"2600:1f18:{third}::{index + 1:x}")
        ipv6 = (str(v6),) if index % 3 == 0 else ()
        add(name, REGION, f"10.{third}.{index // 200}.{index % 200 + 1}", None, ipv6)
    for index, name in enumerate(POOLS):
        for member in range(3 + (variant if index % 2 else 0)):
            add(name, REGION, f"10.50.{index}.{member + 1}", None, ())
    for index, name in enumerate(ONLY_A if content == "A" else ONLY_B):
        add(name, REGION, f"10.60.{variant}.{index + 1}", None, ())
    for index, name in enumerate(REMOTE):
        octet = variant if index % 2 == 0 else 0
        add(name, REMOTE_REGION, f"10.70.0.{index + 1}", f"203.0.{113 + octet}.{index + 1}", ())
    return hosts


def document_bytes(content: str, serial: int) -> bytes:
    return make_document(
        serial=serial,
        generated_at="2026-11-25T00:00:00Z",
        tag_key="dns",
        regions=[REGION, REMOTE_REGION],
        hosts=_hosts(content),
    ).to_bytes()


def expectations(content: str) -> dict[str, Expected]:
    """The answers of the us-east-1 view, computed from the host list (not by tagdns)."""
    by_name: dict[str, list[HostEntry]] = {}
    for host in _hosts(content):
        by_name.setdefault(host.name, []).append(host)
    nodata: tuple[str, bool, tuple[str, ...]] = ("NOERROR", True, ())
    nxdomain: tuple[str, bool, tuple[str, ...]] = ("NXDOMAIN", False, ())
    table: dict[str, Expected] = {}
    for name, hosts in by_name.items():
        local = [h for h in hosts if h.region == REGION]
        if local:
            a = ("NOERROR", True, tuple(sorted({h.private_ipv4 for h in local})))
            v6 = tuple(sorted({x for h in local for x in h.ipv6}))
            aaaa = ("NOERROR", True, v6) if v6 else nodata
            table[name] = table[f"{name}.{ZONE}"] = Expected(a, aaaa)
        else:
            public = tuple(sorted({h.public_ipv4 for h in hosts if h.public_ipv4}))
            table[name] = Expected(("NOERROR", True, public), nodata)
            table[f"{name}.{ZONE}"] = Expected(nxdomain, nxdomain)  # not owned: forwarded
    for name in ONLY_A + ONLY_B:  # absent from this document: forwarded, upstream NXDOMAIN
        if name not in table:
            table[name] = table[f"{name}.{ZONE}"] = Expected(nxdomain, nxdomain)
    return table


EXPECTED = {"A": expectations("A"), "B": expectations("B")}


def forwarded_expectation(name: str) -> Expected | None:
    nodata: tuple[str, bool, tuple[str, ...]] = ("NOERROR", False, ())
    if name in FORWARDED:
        index = FORWARDED.index(name)
        return Expected(("NOERROR", False, (f"198.51.100.{index + 1}",)), nodata)
    if name in FORGED:
        index = list(FORGED).index(name)
        return Expected(("NOERROR", False, (f"198.51.101.{index + 1}",)), nodata)
    if name in MISSING:
        return Expected(("NXDOMAIN", False, ()), ("NXDOMAIN", False, ()))
    return None


def start_upstream() -> HostileUpstream:
    upstream = HostileUpstream(delay=0.3, soa_ttl=5, soa_minimum=5)
    for index, name in enumerate(FORWARDED):
        upstream.add(name, "A", f"198.51.100.{index + 1}", ttl=5)
    for index, (name, mode) in enumerate(FORGED.items()):
        upstream.add(name, "A", f"198.51.101.{index + 1}", ttl=5)
        upstream.script(name, mode)
    # Lies about names both documents own: the agent must never ask, nor pass them on.
    for name in [*LOCAL[:20], *(f"{n}.{ZONE}" for n in LOCAL[:20]), *REMOTE]:
        upstream.add(name, "A", POISON_V4)
    return upstream.start()


# -- the document in force --------------------------------------------------------------------


@dataclass
class Timeline:
    """When each document was written; which answers a query may get."""

    grace: float
    writes: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    lags: dict[int, float] = field(default_factory=dict)
    """Write index -> seconds until the first answer that only its document gives."""

    def record(self, content: str) -> None:
        with self.lock:
            self.writes.append((time.monotonic(), content))

    def seen(self, content: str, received: float) -> None:
        """An answer only ``content`` gives arrived: the latest write of it is in force."""
        with self.lock:
            index = max(i for i, (t, c) in enumerate(self.writes) if t <= received and c == content)
            if index > 0 and index not in self.lags and self.writes[index - 1][1] != content:
                self.lags[index] = received - self.writes[index][0]

    def valid(self, sent: float, received: float) -> set[str]:
        with self.lock:
            writes = list(self.writes)
        current = max(i for i, (t, _) in enumerate(writes) if t <= sent)
        low = current
        while low > 0 and sent - writes[low][0] < self.grace:
            low -= 1  # the agent may not have swapped yet
        high = max(i for i, (t, _) in enumerate(writes) if t <= received)
        return {content for _, content in writes[low : high + 1]}


@dataclass
class Tally:
    checked: int = 0
    ok: int = 0
    wrong: int = 0
    stale: int = 0
    unanswered_owned: int = 0
    unanswered_forwarded: int = 0
    tcp: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, kind: str, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {text}")


def summarize(reply: DNSRecord, qtype: str) -> tuple[str, bool, tuple[str, ...]]:
    wanted = QTYPE.A if qtype == "A" else QTYPE.AAAA
    addresses = tuple(sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == wanted))
    return RCODE.get(reply.header.rcode), bool(reply.header.aa), addresses


# -- the checker ------------------------------------------------------------------------------


class Checker:
    """Sends queries at a fixed rate over UDP (and some over TCP) and checks every reply."""

    def __init__(self, port: int, timeline: Timeline, rate: float, rng: random.Random) -> None:
        self.port = port
        self.timeline = timeline
        self.rate = rate
        self.rng = rng
        self.tally = Tally()
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.tcp: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.tcp_pending: dict[int, asyncio.Future[bytes]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.reader: asyncio.Task[None] | None = None

    def _question(self) -> tuple[str, str]:
        roll = self.rng.random()
        if roll < 0.55:
            name = self.rng.choice(LOCAL + POOLS)
        elif roll < 0.65:
            name = self.rng.choice(ONLY_A + ONLY_B)
        elif roll < 0.72:
            name = self.rng.choice(REMOTE)
        elif roll < 0.90:
            name = self.rng.choice(FORWARDED)
        elif roll < 0.95:
            name = self.rng.choice(list(FORGED))
        else:
            name = self.rng.choice(MISSING)
        if not name.endswith(".example.test") and self.rng.random() < 0.3:
            name = f"{name}.{ZONE}"
        if self.rng.random() < 0.1:
            name = "".join(c.upper() if self.rng.random() < 0.5 else c for c in name)
        qtype = "AAAA" if self.rng.random() < 0.2 else "A"
        return name, qtype

    def check(self, name: str, qtype: str, reply: DNSRecord, sent: float, received: float) -> None:
        tally = self.tally
        tally.checked += 1
        got = summarize(reply, qtype)
        key = name.lower()
        if POISON_V4 in got[2]:
            tally.wrong += 1
            tally.note("POISON", f"{name} {qtype} -> {got}")
            return
        forwarded = forwarded_expectation(key)
        if forwarded is not None:
            want = forwarded.a if qtype == "A" else forwarded.aaaa
            if got == want:
                tally.ok += 1
            else:
                tally.wrong += 1
                tally.note("wrong", f"{name} {qtype} -> {got}, want {want}")
            return
        valid = self.timeline.valid(sent, received)
        answers = {
            c: (EXPECTED[c][key].a if qtype == "A" else EXPECTED[c][key].aaaa) for c in EXPECTED
        }
        if any(answers[c] == got for c in valid):
            tally.ok += 1
            telling = [c for c in answers if answers[c] == got]
            if len(telling) == 1:
                self.timeline.seen(telling[0], received)
        elif any(answer == got for answer in answers.values()):
            tally.stale += 1
            tally.note("stale", f"{name} {qtype} -> {got}, documents in force {sorted(valid)}")
        else:
            tally.wrong += 1
            tally.note("wrong", f"{name} {qtype} -> {got}, want one of {answers}")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        checker = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if len(data) >= 2:
                    future = checker.pending.pop(struct.unpack("!H", data[:2])[0], None)
                    if future is not None and not future.done():
                        future.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(
            Protocol, remote_addr=("127.0.0.1", self.port)
        )
        self.transport = transport

    async def _tcp_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.tcp is None or self.tcp[1].is_closing():
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.tcp = (reader, writer)
            self.reader = asyncio.ensure_future(self._tcp_reader(reader))
        return self.tcp

    async def _tcp_reader(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(length)
                future = self.tcp_pending.pop(struct.unpack("!H", data[:2])[0], None)
                if future is not None and not future.done():
                    future.set_result(data)

    def _free_id(self, table: dict[int, asyncio.Future[bytes]]) -> int:
        while True:
            qid = self.rng.randrange(65536)
            if qid not in table:
                return qid

    async def one(self, name: str, qtype: str, tcp: bool) -> None:
        loop = asyncio.get_running_loop()
        table = self.tcp_pending if tcp else self.pending
        qid = self._free_id(table)
        query = DNSRecord.question(name, qtype)
        query.header.id = qid
        data = bytes(query.pack())
        future: asyncio.Future[bytes] = loop.create_future()
        table[qid] = future
        sent = time.monotonic()
        try:
            if tcp:
                _, writer = await self._tcp_connection()
                writer.write(struct.pack("!H", len(data)) + data)
                self.tally.tcp += 1
            else:
                assert self.transport is not None
                self.transport.sendto(data)
            owned = name.lower() in ALWAYS_OWNED
            raw = await asyncio.wait_for(future, 3.0 if owned else 8.0)
        except (TimeoutError, ConnectionError, OSError):
            table.pop(qid, None)
            if name.lower() in ALWAYS_OWNED:
                self.tally.unanswered_owned += 1
                self.tally.note("unanswered", f"{name} {qtype} over {'TCP' if tcp else 'UDP'}")
            else:
                self.tally.unanswered_forwarded += 1
            return
        received = time.monotonic()
        try:
            reply = DNSRecord.parse(raw)
        except DNSError:
            self.tally.wrong += 1
            self.tally.note("unparsable", f"{name} {qtype}: {raw[:40].hex()}")
            return
        if reply.header.tc and not tcp:
            await self.one(name, qtype, True)
            return
        self.check(name, qtype, reply, sent, received)

    async def run(self, until: float) -> None:
        await self.start()
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while time.monotonic() < until:
            name, qtype = self._question()
            task = asyncio.ensure_future(self.one(name, qtype, self.rng.random() < 0.1))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if self.tasks:  # the last queries: each ends by its own timeout at the latest
            await asyncio.wait(list(self.tasks))
        if self.tcp is not None:
            self.tcp[1].close()
        if self.reader is not None:
            self.reader.cancel()
        if self.transport is not None:
            self.transport.close()


# -- hostile packets ----------------------------------------------------------------------------


def hostile_packets(rng: random.Random) -> Iterator[bytes]:
    """An endless mix of malformed and unwelcome UDP messages."""
    real = bytes(DNSRecord.question("svc-001", "A").pack())
    junk_names = [f"junk-{rng.randrange(10**6):06d}.example.test" for _ in range(300)]
    while True:
        kind = rng.randrange(8)
        if kind == 0:
            yield rng.randbytes(rng.randint(0, 600))
        elif kind == 1:
            yield real[: rng.randint(0, len(real) - 1)]
        elif kind == 2:  # a pointer loop in the question and in the additional section
            yield real[:11] + b"\x01" + b"\xc0\x0c\x00\x01\x00\x01" + b"\xc0\x12" * 60
        elif kind == 3:  # a response, to be dropped
            yield real[:2] + b"\x81\x80" + real[4:]
        elif kind == 4:  # counts that lie
            yield real[:4] + b"\xff\xff\xff\xff\xff\xff\xff\xff" + real[12:]
        elif kind == 5:  # names not owned, from a bounded pool (the negative cache stays bounded)
            yield bytes(DNSRecord.question(rng.choice(junk_names), "A").pack())
        elif kind == 6:  # EDNS with an unknown version and garbage options
            query = bytearray(real)
            query[11] = 1
            yield bytes(query) + b"\x00\x00\x29\x10\x00\x01\x07\x00\x00\x00\x08" + rng.randbytes(8)
        else:  # opcodes other than QUERY
            yield real[:2] + bytes([rng.randrange(1, 16) << 3]) + real[3:]


async def hostile(port: int, pps: float, until: float, rng: random.Random, sent: list[int]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    slowloris: list[socket.socket] = []
    packets = hostile_packets(rng)
    try:
        while time.monotonic() < until:
            sock.sendto(next(packets), ("127.0.0.1", port))
            sent[0] += 1
            if rng.random() < 0.02:  # TCP: a huge announced length, or a dribble
                conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                conn.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    conn.connect(("127.0.0.1", port))
                await asyncio.sleep(0.01)
                with contextlib.suppress(OSError):
                    conn.send(rng.choice([b"\xff\xff" + rng.randbytes(100), b"\x00"]))
                slowloris.append(conn)
                if len(slowloris) > 20:
                    slowloris.pop(0).close()
            await asyncio.sleep(rng.expovariate(pps))
    finally:
        sock.close()
        for conn in slowloris:
            conn.close()


# -- the agent, its files and its resources -----------------------------------------------------


@dataclass
class Sample:
    t: float
    rss_kb: int
    fds: int
    threads: int
    cpu_s: float
    tasks: float | None = None
    load1: float = 0.0
    """The machine's 1-minute load average (other work on shared cores)."""
    driver_stall_s: float = 0.0
    """Longest the soak's own event loop was late since the last sample."""


def sample(pid: int, started: float, metrics: str | None) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tasks = None
    if metrics is not None:
        with contextlib.suppress(OSError):
            import urllib.request  # noqa: PLC0415

            with urllib.request.urlopen(metrics, timeout=1) as reply:  # noqa: S310
                found = _METRIC_TASKS.search(reply.read().decode())
                tasks = float(found.group(1)) if found else None
    load1 = float(Path("/proc/loadavg").read_text().split()[0])
    return Sample(
        round(time.monotonic() - started, 1), rss, fds, threads, round(cpu, 2), tasks, load1
    )


async def watch_stalls(until: float, worst: list[float]) -> None:
    """How late the soak's own loop wakes: a stalled driver cannot tell a slow agent."""
    while time.monotonic() < until:
        before = time.monotonic()
        await asyncio.sleep(0.1)
        worst[0] = max(worst[0], time.monotonic() - before - 0.1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dnsperf(port: int, qps: int, seconds: int, workdir: Path) -> subprocess.Popen[str] | None:
    if shutil.which("dnsperf") is None or qps <= 0 or seconds <= 0:
        return None
    lines = [f"{name} A" for name in LOCAL + POOLS + REMOTE]
    lines += [f"{name}.{ZONE} AAAA" for name in LOCAL[::3]]
    lines += [f"{name} A" for name in FORWARDED]
    queries = workdir / "dnsperf.txt"
    queries.write_text("\n".join(lines) + "\n")
    command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries)]
    command += ["-l", str(seconds), "-Q", str(qps), "-c", "4", "-t", "5"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def parse_dnsperf(output: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    for key, pattern in {
        "sent": r"Queries sent:\s+(\d+)",
        "completed": r"Queries completed:\s+(\d+)",
        "lost": r"Queries lost:\s+(\d+)",
        "qps": r"Queries per second:\s+([\d.]+)",
        "avg_latency_ms": r"Average Latency \(s\):\s+([\d.]+)",
    }.items():
        found = re.search(pattern, output)
        if found:
            figures[key] = float(found.group(1))
    if "avg_latency_ms" in figures:
        figures["avg_latency_ms"] = round(figures["avg_latency_ms"] * 1000, 3)
    return figures


class Reloader(threading.Thread):
    """Rewrites the source every ``interval`` seconds: A, B, A, ... with rising serials."""

    def __init__(self, source: Path, timeline: Timeline, interval: float, pid: int) -> None:
        super().__init__(daemon=True)
        self.source, self.timeline, self.interval, self.pid = source, timeline, interval, pid
        self.stop = threading.Event()
        self.serial = 1000
        self.count = 0
        self.in_place = 0
        self.sighups = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.serial += 1
            self.count += 1
            content = "B" if self.count % 2 else "A"
            data = document_bytes(content, self.serial)
            self.timeline.record(content)
            if self.count % 4 == 0:  # in place: the agent may see it half-written
                self.in_place += 1
                with self.source.open("r+b") as handle:
                    handle.write(data)
                    handle.truncate()
            else:
                temporary = self.source.with_name(self.source.name + ".new")
                temporary.write_bytes(data)
                os.replace(temporary, self.source)
            if self.count % 5 == 0:
                self.sighups += 1
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGHUP)


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Result:
    duration_s: float
    warmup_s: float
    grace_s: float
    reloads: int
    in_place_writes: int
    sighups: int
    swaps_logged: int
    refusals_logged: int
    checker: dict[str, Any]
    dnsperf: dict[str, float]
    hostile_packets: int
    samples: list[dict[str, Any]]
    rss_start_kb: int
    rss_end_kb: int
    rss_growth: float
    fds_baseline: int
    fds_max: int
    fds_end: int
    swap_lag_median_s: float
    swap_lag_max_s: float
    threads_start: int
    threads_end: int
    cpu_s: float
    load_max: float
    driver_stall_max_s: float
    tracebacks: int
    alive: bool
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


def quarter_median(samples: list[Sample], start: float, end: float, field_: str) -> float:
    values = [getattr(s, field_) for s in samples if start <= s.t <= end]
    return float(statistics.median(values)) if values else 0.0


MIN_TREND_SAMPLES = 5


def fd_trend(samples: list[Sample], start: float, end: float) -> tuple[int, int] | None:
    """The lowest fd count in the first and in the last quarter of ``start``..``end``.

    A leak raises the floor; forwards in flight and held hostile connections (up
    to 20) only add peaks, so the floor is what a trend is judged on. With fewer
    than ``MIN_TREND_SAMPLES`` samples a quarter's floor is one moment's noise,
    and None says there is no trend to judge (the return to baseline still is).
    """
    span = end - start
    first = [s.fds for s in samples if start <= s.t <= start + span / 4]
    last = [s.fds for s in samples if end - span / 4 <= s.t <= end + 1]
    if min(len(first), len(last)) < MIN_TREND_SAMPLES:
        return None
    return min(first), min(last)


@dataclass
class Run:
    """What one soak observed, before it is judged."""

    samples: list[Sample]
    baseline: Sample
    reloader: Reloader
    tally: Tally
    perf: dict[str, float]
    hostile_sent: int
    alive: bool
    log: str


def start_agent(
    workdir: Path, upstream: HostileUpstream
) -> tuple[subprocess.Popen[bytes], int, str]:
    """``tagdns serve`` on the soak's files; (process, port, metrics URL) once it listens."""
    source, state, etc = workdir / "mapping.json", workdir / "state", workdir / "etc"
    state.mkdir()
    etc.mkdir()
    (etc / "hosts").write_bytes(b"127.0.0.1 localhost\n")
    source.write_bytes(document_bytes("A", 1000))
    config = workdir / "tagdns.toml"
    config.write_text(f'[hosts]\npath = "{etc / "hosts"}"\n')
    log_path = workdir / "agent.log"
    metrics = f"127.0.0.1:{_free_port()}"
    command = [
        str(TAGDNS), "serve", "--config", str(config), "--source", str(source),
        "--view", REGION, "--listen", "127.0.0.1:0", "--upstream", upstream.address,
        "--cache", str(state / "mapping.json"), "--poll", "2",
        "--metrics", metrics,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with log_path.open("wb") as log:
        agent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + 20
    while True:
        found = _LISTENING.search(log_path.read_text(errors="replace"))
        if found:
            return agent, int(found.group(1)), f"http://{metrics}/metrics"
        if agent.poll() is not None or time.monotonic() > deadline:
            agent.kill()
            raise SystemExit(f"agent did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.05)


def prime_forwarding(port: int) -> None:
    """Have the agent forward one question before the baseline is sampled.

    Its first forwarded question opens what forwarding keeps for good (an epoll set
    and a few upstream sockets made ahead of need): the baseline must hold those,
    or the return to it would read them as a leak.
    """
    query = DNSRecord.question(FORWARDED[-1], "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5.0)
        sock.sendto(query.pack(), ("127.0.0.1", port))
        with contextlib.suppress(TimeoutError):  # judged by the run's own checks
            sock.recv(4096)
    time.sleep(0.2)  # the sockets are made just after the reply goes out


async def drive(
    args: argparse.Namespace,
    workdir: Path,
    agent: subprocess.Popen[bytes],
    port: int,
    metrics: str | None,
) -> tuple[list[Sample], Reloader, Checker, dict[str, float], int]:
    """The load, the reloads and the sampling, for ``args.duration`` seconds, then quiet."""
    await asyncio.sleep(1.0)
    await asyncio.to_thread(prime_forwarding, port)
    started = time.monotonic()
    baseline = sample(agent.pid, started, metrics)
    if baseline.tasks is None:
        metrics = None  # this build does not export a task count
    samples = [baseline]
    until = started + args.duration
    seed = args.seed
    reloader = Reloader(workdir / "mapping.json", args.timeline, args.reload_interval, agent.pid)
    reloader.start()
    perf = dnsperf(port, args.qps, int(args.duration), workdir)
    checker = Checker(port, args.timeline, args.check_qps, random.Random(seed + 1))  # noqa: S311
    hostile_sent = [0]
    rng = random.Random(seed + 2)  # noqa: S311
    stall = [0.0]
    load = [
        asyncio.ensure_future(checker.run(until)),
        asyncio.ensure_future(hostile(port, args.hostile_pps, until, rng, hostile_sent)),
        asyncio.ensure_future(watch_stalls(until, stall)),
    ]
    next_sample = started + args.sample_interval
    while time.monotonic() < until:
        await asyncio.sleep(min(0.5, max(0.0, next_sample - time.monotonic())))
        if time.monotonic() >= next_sample:
            samples.append(sample(agent.pid, started, metrics))
            samples[-1].driver_stall_s, stall[0] = round(stall[0], 3), 0.0
            next_sample += args.sample_interval
            if not args.quiet:
                last, tally = samples[-1], checker.tally
                print(
                    f"t={last.t:6.1f}s rss={last.rss_kb} kB fds={last.fds} "
                    f"threads={last.threads} checked={tally.checked} "
                    f"wrong={tally.wrong} stale={tally.stale} "
                    f"unanswered={tally.unanswered_owned}/{tally.unanswered_forwarded} "
                    f"load={last.load1} stall={last.driver_stall_s}s",
                    file=sys.stderr,
                    flush=True,
                )
    reloader.stop.set()
    await asyncio.gather(*load)
    reloader.join(5)
    figures: dict[str, float] = {}
    if perf is not None:
        output, _ = await asyncio.to_thread(perf.communicate)
        figures = parse_dnsperf(output)
    # Quiet: the clients closed their connections, forwards are done: fds come back down.
    quiet_deadline = time.monotonic() + 15
    while True:
        end = sample(agent.pid, started, metrics)
        if end.fds <= baseline.fds + 1 or time.monotonic() > quiet_deadline:
            break
        await asyncio.sleep(0.5)
    samples.append(end)
    return samples, reloader, checker, figures, hostile_sent[0]


async def soak(args: argparse.Namespace) -> Run:
    workdir = Path(tempfile.mkdtemp(prefix="tagdns-soak-"))
    args.timeline = Timeline(grace=args.grace)
    args.timeline.record("A")
    upstream = start_upstream()
    agent, port, metrics = start_agent(workdir, upstream)
    try:
        samples, reloader, checker, figures, hostile_sent = await drive(
            args, workdir, agent, port, metrics
        )
        alive = agent.poll() is None
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        upstream.stop()
    log_path = workdir / "agent.log"
    text = log_path.read_text(errors="replace")
    if args.keep:
        print(f"agent log: {log_path}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return Run(samples, samples[0], reloader, checker.tally, figures, hostile_sent, alive, text)


def evaluate(args: argparse.Namespace, run: Run) -> Result:
    """The figures and the pass criteria of one run."""
    samples, baseline, tally, reloader = run.samples, run.baseline, run.tally, run.reloader
    warm = args.warmup
    span = args.duration - warm
    first = quarter_median(samples, warm, warm + span / 4, "rss_kb")
    last = quarter_median(samples, args.duration - span / 4, args.duration + 1, "rss_kb")
    floor_before, floor_after = fd_trend(samples, warm, args.duration) or (0, 0)
    lags = list(args.timeline.lags.values())
    growth = (last - first) / first if first else 0.0
    tracebacks = run.log.count("Traceback")
    checks = [
        (tally.wrong > 0, f"{tally.wrong} wrong answers"),
        (tally.stale > 0, f"{tally.stale} stale answers (older than the {args.grace} s grace)"),
        (tally.unanswered_owned > 0, f"{tally.unanswered_owned} owned-name queries unanswered"),
        (
            tally.checked < args.duration * args.check_qps * 0.5,
            f"only {tally.checked} answers checked",
        ),
        (growth > 0.10, f"RSS grew {growth:.1%} after warm-up"),
        # The leak check proper is the return to baseline below; mid-run, a rising floor.
        (floor_before + 10 < floor_after, f"fd floor rose from {floor_before} to {floor_after}"),
        (
            samples[-1].fds > baseline.fds + 1,
            f"fds did not return to baseline ({baseline.fds} -> {samples[-1].fds})",
        ),
        (tracebacks > 0, f"{tracebacks} tracebacks in the agent's log"),
        (not run.alive, "the agent died"),
        (
            reloader.count < max(1, args.duration / args.reload_interval / 2),
            f"only {reloader.count} reloads",
        ),
    ]
    return Result(
        duration_s=args.duration,
        warmup_s=warm,
        grace_s=args.grace,
        reloads=reloader.count,
        in_place_writes=reloader.in_place,
        sighups=reloader.sighups,
        swaps_logged=run.log.count("serving serial"),
        refusals_logged=run.log.count("refused:"),
        checker=asdict(tally),
        dnsperf=run.perf,
        hostile_packets=run.hostile_sent,
        samples=[asdict(s) for s in samples],
        rss_start_kb=int(first),
        rss_end_kb=int(last),
        rss_growth=round(growth, 4),
        fds_baseline=baseline.fds,
        fds_max=max(s.fds for s in samples),
        fds_end=samples[-1].fds,
        swap_lag_median_s=round(statistics.median(lags), 3) if lags else 0.0,
        swap_lag_max_s=round(max(lags), 3) if lags else 0.0,
        threads_start=samples[1].threads if len(samples) > 1 else baseline.threads,
        threads_end=samples[-1].threads,
        cpu_s=samples[-1].cpu_s,
        load_max=max(s.load1 for s in samples),
        driver_stall_max_s=max(s.driver_stall_s for s in samples),
        tracebacks=tracebacks,
        alive=run.alive,
        failures=[message for failed, message in checks if failed],
    )


def table(result: Result, command: str) -> str:
    tally = result.checker
    perf = result.dnsperf
    rows = [
        "| figure | value | criterion |",
        "|---|---:|---|",
        f"| duration (warm-up) | {result.duration_s:.0f} s ({result.warmup_s:.0f} s) | |",
        f"| document rewrites (in place / SIGHUP) | {result.reloads} "
        f"({result.in_place_writes} / {result.sighups}) | |",
        f"| swaps logged / half-written documents refused | {result.swaps_logged} / "
        f"{result.refusals_logged} | |",
        f"| rewrite to first answer from it: median, max | {result.swap_lag_median_s:.2f} s, "
        f"{result.swap_lag_max_s:.2f} s | max < grace ({result.grace_s:g} s) |",
        f"| dnsperf queries (completed, lost) | {perf.get('sent', 0):,.0f} "
        f"({perf.get('completed', 0):,.0f}, {perf.get('lost', 0):,.0f}) | |",
        f"| checked answers (over TCP) | {tally['checked']:,} ({tally['tcp']:,}) | |",
        f"| wrong answers | {tally['wrong']} | 0 |",
        f"| stale answers (beyond the grace after a swap) | {tally['stale']} | 0 |",
        f"| owned names unanswered | {tally['unanswered_owned']} | 0 |",
        f"| forwarded names unanswered (upstream deadline) | {tally['unanswered_forwarded']} | |",
        f"| hostile packets | {result.hostile_packets:,} | |",
        f"| RSS after warm-up → end | {result.rss_start_kb / 1024:.1f} → "
        f"{result.rss_end_kb / 1024:.1f} MiB ({result.rss_growth:+.1%}) | < +10 % |",
        f"| open fds: baseline, max, end | {result.fds_baseline}, {result.fds_max}, "
        f"{result.fds_end} | end = baseline |",
        f"| threads after warm-up → end | {result.threads_start} → {result.threads_end} | |",
        f"| agent CPU | {result.cpu_s:.0f} s | |",
        f"| machine load (1 min, max) / longest stall of the soak's own loop | "
        f"{result.load_max:.1f} / {result.driver_stall_max_s:.2f} s | |",
        f"| tracebacks in the agent's log | {result.tracebacks} | 0 |",
    ]
    verdict = "**passed**" if result.passed else "**FAILED**: " + "; ".join(result.failures)
    today = datetime.date.today().isoformat()
    return (
        "\n".join(rows)
        + f"\n\nResult: {verdict}. Reproduce: `{command}`\n\nMeasured: {today}, "
        + f"{os.cpu_count()} cores (shared), Python {platform.python_version()}.\n"
    )


def record(text: str) -> None:
    content = DOC.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    DOC.write_text(content[:start] + "\n" + text + content[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, help="seconds before resources are compared")
    parser.add_argument("--reload-interval", type=float, default=3.0)
    parser.add_argument("--grace", type=float, default=2.5, help="seconds either doc is ok")
    parser.add_argument("--qps", type=int, default=2000, help="dnsperf rate (0: no dnsperf)")
    parser.add_argument("--check-qps", type=float, default=300.0)
    parser.add_argument("--hostile-pps", type=float, default=50.0)
    parser.add_argument("--sample-interval", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--record", action="store_true", help="write the table to docs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and log")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(60.0, args.duration * 0.2)
    args.sample_interval = min(args.sample_interval, max(1.0, args.duration / 20))
    result = evaluate(args, asyncio.run(soak(args)))
    given = list(argv if argv is not None else sys.argv[1:])
    shown: list[str] = []
    while given:  # the run's own command, without where its outputs went
        arg = given.pop(0)
        if arg == "--json":
            given = given[1:]
        elif arg not in ("--record", "--keep", "--quiet") and not arg.startswith("--json="):
            shown.append(arg)
    text = table(result, " ".join(["scripts/soak", *shown]).strip())
    print(text)
    if args.json is not None:
        payload = asdict(result)
        payload["passed"] = result.passed
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    if args.record:
        record(text)
    for line in result.checker["examples"]:
        print(f"  {line}", file=sys.stderr)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
