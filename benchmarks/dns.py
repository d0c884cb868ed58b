"""DNS benchmark (issue 3): the agent against dnsmasq and unbound on the same fleet.

Run with ``scripts/bench dns``. The three servers load the same 1,000 names (the
agent from a mapping document, dnsmasq from the hosts text rendered from the same
view, unbound from ``local-data``), are checked with dig to give the same answers,
and are then measured with dnsperf in interleaved rounds: saturated throughput,
CPU per query at fixed rates, and resident memory. A second agent serves a
100,000-name document for the memory target, and the compile time of that
document is measured in-process.

The machine this runs on is shared, so absolute numbers drift between runs; all
competitors run in the same run on the same data and the ratios are the figure to
trust. The result is printed and written into docs/performance.md between the
``bench:dns`` markers; everything else in that file is kept as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

from devsupport.net import free_port
from devsupport.report import (
    DOC_TITLE,
    add_output_arguments,
    load_average,
    publish,
    revision,
    work_directory,
)
from resolver.adapters.memory import collector_paused
from resolver.agent import load_in_worker
from resolver.core.document import HostEntry, MappingDocument, make_document, parse_document
from resolver.core.hosts_text import render_hosts
from resolver.core.pipeline import ZoneSettings
from resolver.core.views import View, build_view
from resolver.core.zone import ReplySettings, compile_image

ROOT = Path(__file__).resolve().parent.parent
TAGDNS = ROOT / ".venv" / "bin" / "tagdns"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
BEGIN_MARKER = "<!-- bench:dns:begin -->"
END_MARKER = "<!-- bench:dns:end -->"
DOC_INTRO = (
    "Benchmarks of tagdns, run with `scripts/bench` (all) or `scripts/bench NAME`.\n"
    "Each section is written by its benchmark between its own markers.\n"
)

REGION = "us-east-1"
ZONE = "internal"
TTL = 30
SEED = 20240503
AGENT = "tagdns agent"
DNSMASQ = "dnsmasq"
DNSMASQ_DEFAULT_CACHE = "dnsmasq, default cache-size"
AGENT_LOGGING = "tagdns agent, --log-queries"
DNSMASQ_LOGGING = "dnsmasq, --log-queries"
CEILING = "ceiling (C echo)"
CEILING_BATCHED = "ceiling (C echo, batched)"
PYTHON_FLOOR = "floor (Python echo, uvloop)"
PYTHON_FLOOR_THREAD = "floor (Python echo, blocking thread)"
SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")

# Targets for owned names (issue 3).
TARGET_QPS_VS_DNSMASQ = 3.0
TARGET_QPS_VS_UNBOUND = 1.0
TARGET_RSS_100K_MB = 150.0
TARGET_COMPILE_100K_S = 1.5


# -- the fleet ------------------------------------------------------------------------------


def host_name(i: int, count: int) -> str:
    """``host-0001``: numbered names, zero-padded to at least four digits."""
    return f"host-{i:0{max(4, len(str(count)))}d}"


def make_fleet(count: int, *, ipv6_every: int = 4) -> MappingDocument:
    """``count`` names ``host-0001``... in one region, private IPv4, every n-th with IPv6."""
    hosts = []
    private = ipaddress.IPv4Address("10.0.0.0")
    public = ipaddress.IPv4Address("198.18.0.0")
    v6_base = ipaddress.IPv6Address("2600:1f18:1234:5600::")
    for i in range(1, count + 1):
        ipv6 = (str(v6_base + i),) if i % ipv6_every == 0 else ()
        hosts.append(
            HostEntry(
                name=host_name(i, count),
                region=REGION,
                instance_id=f"i-{i:017x}",
                az=f"{REGION}a",
                private_ipv4=str(private + 256 + i),
                public_ipv4=str(public + i),
                ipv6=ipv6,
            )
        )
    return make_document(
        serial=1,
        generated_at="2024-05-03T12:00:00Z",
        tag_key="dns",
        regions=[REGION],
        hosts=hosts,
    )


def region_view(document: MappingDocument) -> View:
    return build_view(document, REGION, ZONE)


def unbound_local_data(view: View) -> list[str]:
    """The view's A/AAAA records as unbound ``local-zone``/``local-data`` lines.

    Every bare name gets its own static zone and ``internal.`` is static too, so
    unbound answers each owned name authoritatively (NODATA for a missing type)
    and never recurses.
    """
    lines = [f'local-zone: "{ZONE}." static']
    for record in view.records:
        owners = [record.name]
        lines.append(f'local-zone: "{record.name}." static')
        if record.qualified:
            owners.append(f"{record.name}.{ZONE}")
        for owner in owners:
            lines.extend(f'local-data: "{owner}. {TTL} IN A {a}"' for a in record.ipv4)
            lines.extend(f'local-data: "{owner}. {TTL} IN AAAA {a}"' for a in record.ipv6)
    return lines


def query_lines(view: View, total: int, seed: int = SEED) -> list[str]:
    """dnsperf input: A for ``name`` and ``name.zone``, AAAA where the name has IPv6."""
    pool: list[str] = []
    for record in view.records:
        pool.append(f"{record.name} A")
        if record.qualified:
            pool.append(f"{record.name}.{ZONE} A")
        if record.ipv6:
            pool.append(f"{record.name} AAAA")
            pool.append(f"{record.name}.{ZONE} AAAA")
    rng = random.Random(seed)  # noqa: S311 - a fixed, reproducible order, not a secret
    return [rng.choice(pool) for _ in range(total)]


# -- processes ------------------------------------------------------------------------------


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if found is None:
        raise SystemExit(f"bench dns: {name} not found (scripts/lib/setup.sh installs it)")
    return found


def dns_query(name: str, qtype: int = 1, qid: int = 0x4242) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


@dataclass
class Server:
    """One DNS server process under test."""

    label: str
    port: int
    argv: list[str]
    log_path: Path
    answers: bool = True
    """False for the ceiling: it echoes queries, so any reply with our ID means ready."""
    nodata: bool = True
    """False for dnsmasq: without an upstream it answers a name's missing type REFUSED."""
    logs_queries: bool = False
    """Writes a log line per query: its dirty pages are synced after each of its rounds,
    so their writeback does not take CPU from the next server measured."""
    process: subprocess.Popen[bytes] | None = None
    log_file: BinaryIO | None = None

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.log_file = log
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_ready(self, probe: str, timeout: float = 60.0) -> float:
        """Block until the server answers ``probe`` over UDP; the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        query = dns_query(probe)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            while time.monotonic() < deadline:
                self.check_alive()
                sock.sendto(query, ("127.0.0.1", self.port))
                try:
                    reply = sock.recv(4096)
                except TimeoutError:
                    continue
                answered = reply[3] & 0x0F == 0 and reply[6:8] != b"\0\0"
                if reply[:2] == query[:2] and (answered or not self.answers):
                    return time.monotonic() - started
                time.sleep(0.1)
        raise SystemExit(f"bench dns: {self.label} did not answer {probe} in {timeout:.0f} s")

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise SystemExit(
                f"bench dns: {self.label} exited with {self.process.returncode}: "
                f"{self.log_path.read_text(errors='replace')[-2000:]}"
            )

    def cpu_seconds(self) -> tuple[float, float]:
        """(utime, stime) of the server process in seconds, from /proc/PID/stat."""
        self.check_alive()
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick  # fields 14 and 15 of proc(5)

    def rss_mb(self) -> float:
        self.check_alive()
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise SystemExit(f"bench dns: no VmRSS for {self.label}")

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


def agent_server(
    label: str, document_path: Path, work: Path, *, log_queries: bool = False
) -> Server:
    """The agent; with ``log_queries`` its query lines go to its log file."""
    port = free_port()
    argv = [
        str(TAGDNS),
        "serve",
        "--source",
        str(document_path),
        "--view",
        REGION,
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        "none",
        "--cache",
        "none",
        "--log-level",
        "warning",
        *(["--log-queries"] if log_queries else []),
    ]
    return Server(label, port, argv, work / f"{slug(label)}.log", logs_queries=log_queries)


def dnsmasq_server(
    hosts_path: Path,
    work: Path,
    *,
    label: str = DNSMASQ,
    cache_size: int | None = 10_000,
    log_queries: bool = False,
) -> Server:
    """dnsmasq from the view's hosts text; ``cache_size`` None keeps dnsmasq's default.

    With ``log_queries`` it logs each query (and its answer) to a file beside its log.
    """
    port = free_port()
    argv = [
        tool("dnsmasq"),
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        f"--addn-hosts={hosts_path}",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        *([f"--cache-size={cache_size}"] if cache_size is not None else []),
        f"--local-ttl={TTL}",
        "--user=root",
        "--pid-file=",
    ]
    if log_queries:
        argv += ["--log-queries", f"--log-facility={work / f'{slug(label)}-queries.log'}"]
    log_path = work / f"{slug(label)}.log"
    return Server(label, port, argv, log_path, nodata=False, logs_queries=log_queries)


def slug(label: str) -> str:
    """A file name for a server's label."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def unbound_server(view: View, work: Path) -> Server:
    port = free_port()
    config = work / "unbound.conf"
    lines = [
        "server:",
        "  num-threads: 1",
        "  do-daemonize: no",
        '  chroot: ""',
        '  username: ""',
        f'  directory: "{work}"',
        '  pidfile: ""',
        "  verbosity: 0",
        "  use-syslog: no",
        '  logfile: ""',
        "  log-queries: no",
        f"  interface: 127.0.0.1@{port}",
        f"  port: {port}",
        "  do-ip6: no",
        "  access-control: 127.0.0.0/8 allow",
        "  so-reuseport: no",
        *(f"  {line}" for line in unbound_local_data(view)),
        "remote-control:",
        "  control-enable: no",
    ]
    config.write_text("\n".join(lines) + "\n")
    checkconf = shutil.which("unbound-checkconf", path=os.pathsep.join(SBIN))
    if checkconf:
        checked = subprocess.run(
            [checkconf, str(config)], capture_output=True, text=True, check=False
        )
        if checked.returncode != 0:
            raise SystemExit(f"bench dns: unbound config rejected: {checked.stderr.strip()}")
    argv = [tool("unbound"), "-d", "-c", str(config)]
    return Server("unbound", port, argv, work / "unbound.log")


def python_floor_server(work: Path, mode: str = "loop") -> Server:
    """benchmarks/python_floor.py: the least a Python server spends, on the loop or off it."""
    port = free_port()
    argv = [sys.executable, str(ROOT / "benchmarks" / "python_floor.py"), str(port), mode]
    label = PYTHON_FLOOR if mode == "loop" else PYTHON_FLOOR_THREAD
    return Server(label, port, argv, work / f"python-floor-{mode}.log", answers=False)


def ceiling_servers(work: Path) -> list[Server]:
    """The C echoes of benchmarks/udp_ceiling.c (packet by packet, batched); none without cc."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        print("bench dns: no C compiler: no ceiling rows", file=sys.stderr)
        return []
    binary = work / "udp_ceiling"
    subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(ROOT / "benchmarks" / "udp_ceiling.c")],
        check=True,
    )
    servers = []
    for label, mode in ((CEILING, []), (CEILING_BATCHED, ["batch"])):
        port = free_port()
        argv = [str(binary), str(port), *mode]
        log_path = work / f"ceiling{'-'.join(['', *mode])}.log"
        servers.append(Server(label, port, argv, log_path, answers=False))
    return servers


# -- checks and measurements ----------------------------------------------------------------


@dataclass(frozen=True)
class DigAnswer:
    status: str
    authoritative: bool
    records: tuple[str, ...]


_STATUS = re.compile(r"status: ([A-Z]+)")
_FLAGS = re.compile(r";; flags: ([a-z ]+);")


def dig(port: int, name: str, qtype: str) -> DigAnswer:
    """One query with dig; status, AA and the answer records (name TTL class type data)."""
    result = subprocess.run(
        [tool("dig"), "@127.0.0.1", "-p", str(port), name, qtype, "+tries=1", "+time=3"],
        capture_output=True,
        text=True,
        check=False,
    )
    status = _STATUS.search(result.stdout)
    flags = _FLAGS.search(result.stdout)
    if result.returncode != 0 or status is None or flags is None:
        raise SystemExit(f"bench dns: dig {name} {qtype} on port {port} failed: {result.stdout}")
    records: list[str] = []
    in_answer = False
    for line in result.stdout.splitlines():
        if line.startswith(";; ANSWER SECTION:"):
            in_answer = True
        elif in_answer and (not line.strip() or line.startswith(";")):
            in_answer = False
        elif in_answer:
            records.append(" ".join(line.split()).lower())
    return DigAnswer(status.group(1), "aa" in flags.group(1).split(), tuple(sorted(records)))


def check_same_answers(servers: Sequence[Server], queries: Sequence[str], sample: int) -> int:
    """Fail loudly unless every server gives the same answer to a sample of the queries."""
    rng = random.Random(SEED + 1)  # noqa: S311 - reproducible sample
    picked = sorted(set(queries))
    picked = rng.sample(picked, min(sample, len(picked)))
    # NODATA (a name without IPv6) is not in the query mix: dnsmasq without an upstream
    # answers it REFUSED. Only the agent and unbound are held to it.
    nodata = ["host-0001 AAAA", "host-0001.internal AAAA"]
    for line in [*picked, *nodata]:
        name, qtype = line.split()
        asked = [s for s in servers if line not in nodata or s.nodata]
        answers = {server.label: dig(server.port, name, qtype) for server in asked}
        reference = answers[servers[0].label]
        if not reference.authoritative or reference.status != "NOERROR":
            raise SystemExit(f"bench dns: {servers[0].label} {line}: {reference}")
        if qtype == "A" and not reference.records:
            raise SystemExit(f"bench dns: {servers[0].label} has no data for {line}")
        for answer in answers.values():
            if answer != reference:
                raise SystemExit(
                    f"bench dns: answers differ for {line}:\n"
                    + "\n".join(f"  {k}: {v}" for k, v in answers.items())
                )
    return len(picked) + len(nodata)


@dataclass(frozen=True)
class PerfResult:
    qps: float
    sent: int
    completed: int
    lost: int
    seconds: float
    client_cpu: float
    """Seconds of CPU (user + system) dnsperf itself used."""


_PERF_FIELDS = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
    "seconds": re.compile(r"Run time \(s\):\s+([\d.]+)"),
}


def dnsperf(port: int, query_file: Path, args: Sequence[str]) -> PerfResult:
    command = [tool("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(query_file), *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = {key: pattern.search(result.stdout) for key, pattern in _PERF_FIELDS.items()}
    if result.returncode != 0 or not all(found.values()):
        raise SystemExit(f"bench dns: dnsperf failed: {result.stdout}{result.stderr}")
    values = {key: match.group(1) for key, match in found.items() if match is not None}
    return PerfResult(
        qps=float(values["qps"]),
        sent=int(values["sent"]),
        completed=int(values["completed"]),
        lost=int(values["lost"]),
        seconds=float(values["seconds"]),
        client_cpu=after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
    )


@dataclass
class Measurements:
    qps: list[float] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    """Share of one core the server used during each throughput round."""
    per_cpu: list[float] = field(default_factory=list)
    """Queries answered per CPU-second of the server during each throughput round."""
    client_us: list[float] = field(default_factory=list)
    """dnsperf's own CPU per answered query during each throughput round, in µs."""
    cpu_us: list[float] = field(default_factory=list)
    user_us: list[float] = field(default_factory=list)
    cpu_us_by_rate: dict[int, list[float]] = field(default_factory=dict)
    """CPU per answered query at the ``--sweep-rates`` (the three DNS servers only)."""
    rss_mb: float = 0.0


def measure_cpu(server: Server, query_file: Path, rate: int, seconds: int) -> tuple[float, float]:
    """CPU (user + system) and user time alone, in microseconds per answered query."""
    user_before, system_before = server.cpu_seconds()
    result = dnsperf(server.port, query_file, ["-Q", str(rate), "-l", str(seconds)])
    user_after, system_after = server.cpu_seconds()
    answered = max(result.completed, 1)
    user = user_after - user_before
    total = user + system_after - system_before
    return total / answered * 1e6, user / answered * 1e6


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def load_generator_limit(dnsmasq_qps: float, client_us: float) -> str:
    """What the 3x-dnsmasq target asks of the load generator on this machine's cores."""
    wanted = TARGET_QPS_VS_DNSMASQ * dnsmasq_qps
    cores = wanted * client_us / 1e6
    return (
        f"What {TARGET_QPS_VS_DNSMASQ:.0f}x dnsmasq asks of this machine: dnsperf itself "
        f"spent {client_us:.1f} µs of CPU per query in the agent's throughput rounds "
        f"(*dnsperf CPU µs/query*), so sending and receiving {wanted:,.0f} queries/s "
        f"({TARGET_QPS_VS_DNSMASQ:.0f}x dnsmasq's median) would take {cores:.1f} cores "
        f"for dnsperf alone, before any server work; the machine has {os.cpu_count()}."
    )


def time_compile(data: bytes, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds for the whole load (what the agent runs for each document: parse,
    validate, view, zone) and for the zone compile alone (view to answers index)."""
    settings = ZoneSettings(view=REGION, zone=ZONE, ttl=TTL)
    loads, zones = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        load_in_worker(data, settings, None, keep_entries_later=True)  # kept once it serves
        loads.append(time.perf_counter() - started)
    view = region_view(parse_document(data))
    with collector_paused():  # as in the agent's load
        for _ in range(rounds):
            started = time.perf_counter()
            compile_image(view, ReplySettings(ttl=TTL)).materialize()
            zones.append(time.perf_counter() - started)
    return loads, zones


# -- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    date: str
    revision: str
    load_before: str
    perf_args: str
    duration: int
    rounds: int
    cpu_rounds: int
    rate: int
    sweep_rates: tuple[int, ...]
    cpu_seconds: int
    query_count: int
    checked: int
    results: dict[str, Measurements]
    names: int
    big_names: int
    rss_100k_mb: float
    ready_100k_s: float
    compile_100k_s: list[float]
    zone_compile_100k_s: list[float]

    def _rows(self) -> list[str]:
        dnsmasq, unbound = self.results[DNSMASQ], self.results["unbound"]
        rows = [
            "| server | queries/s (median) | rounds | lost | vs dnsmasq | vs unbound "
            "| server CPU busy | queries per CPU-second | vs dnsmasq | vs unbound "
            "| CPU µs/query at fixed rate (user) | RSS MB | dnsperf CPU µs/query |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, m in self.results.items():
            qps, per_cpu = median(m.qps), median(m.per_cpu)
            rows.append(
                f"| {label} | {qps:,.0f} | {' / '.join(f'{q:,.0f}' for q in m.qps)} "
                f"| {sum(m.lost)} of {sum(m.sent):,} "
                f"| {qps / median(dnsmasq.qps):.2f}x | {qps / median(unbound.qps):.2f}x "
                f"| {median(m.busy):.0%} | {per_cpu:,.0f} "
                f"| {per_cpu / median(dnsmasq.per_cpu):.2f}x "
                f"| {per_cpu / median(unbound.per_cpu):.2f}x "
                f"| {median(m.cpu_us):.1f} ({median(m.user_us):.1f}) | {m.rss_mb:.1f} "
                f"| {median(m.client_us):.1f} |"
            )
        return rows

    def _python_floor(self) -> list[str]:
        """What the CPU target asks of a Python server, from the floor rows if they ran."""
        floor, thread = self.results.get(PYTHON_FLOOR), self.results.get(PYTHON_FLOOR_THREAD)
        if floor is None or thread is None:
            return []
        dnsmasq_us = median(self.results[DNSMASQ].cpu_us)
        floor_us, thread_us = median(floor.cpu_us), median(thread.cpu_us)
        return [
            "",
            f"What the CPU target asks of a Python server: at {self.rate:,} queries/s each "
            "query wakes the server on its own. Before any DNS work, the floor rows spend "
            f"{floor_us:.1f} µs of CPU per query on the event loop (a uvloop echo) and "
            f"{thread_us:.1f} µs off it (a thread blocked in `recvfrom`), against dnsmasq's "
            f"{dnsmasq_us:.1f} µs ({floor_us / dnsmasq_us:.2f}x and "
            f"{thread_us / dnsmasq_us:.2f}x). The agent answers UDP on its event loop, "
            "beside TCP, forwarding and reloads, so the first is its floor.",
        ]

    def _cpu_by_rate(self) -> list[str]:
        """CPU per query of the three DNS servers at each rate, when more than one ran."""
        if not self.sweep_rates:
            return []
        rates = (self.rate, *self.sweep_rates)
        servers = (AGENT, DNSMASQ, "unbound")
        rows = [
            "CPU per query by rate (`dnsperf -Q RATE -l "
            f"{self.cpu_seconds}`, median of {self.cpu_rounds} interleaved rounds; at higher "
            "rates each wake-up finds more queries waiting, which the agent reads and answers "
            "in one batch):",
            "",
            "| queries/s | "
            + " | ".join(f"{label} µs/query" for label in servers)
            + " | agent vs dnsmasq |",
            "|---:|" + "---:|" * (len(servers) + 1),
        ]
        for rate in rates:
            cells = [self._cpu_at(label, rate) for label in servers]
            rows.append(
                f"| {rate:,} | "
                + " | ".join(f"{cell:.1f}" for cell in cells)
                + f" | {cells[0] / cells[1]:.2f}x |"
            )
        return ["", *rows]

    def _cpu_at(self, label: str, rate: int) -> float:
        """Median CPU µs per query of one server at one of the rates measured."""
        m = self.results[label]
        return median(m.cpu_us if rate == self.rate else m.cpu_us_by_rate[rate])

    def _variants(self) -> list[str]:
        """dnsmasq as shipped, and both servers logging every query, if those rows ran."""
        if DNSMASQ_DEFAULT_CACHE not in self.results:
            return []
        agent, tuned = median(self.results[AGENT].qps), median(self.results[DNSMASQ].qps)
        shipped = median(self.results[DNSMASQ_DEFAULT_CACHE].qps)
        agent_logging = median(self.results[AGENT_LOGGING].qps)
        dnsmasq_logging = median(self.results[DNSMASQ_LOGGING].qps)
        return [
            "",
            "Other settings, in the same rounds. dnsmasq with its default `cache-size` (150) "
            f"instead of 10,000 answered {shipped:,.0f} queries/s ({shipped / tuned:.2f}x the "
            "`dnsmasq` row). With every query logged: dnsmasq (`--log-queries`: two lines per "
            f"query, to a file) answered {dnsmasq_logging:,.0f} ({dnsmasq_logging / tuned:.2f}x "
            "its rate without), the agent (`--log-queries`: one line per reply, to its log "
            "file, the lines of a UDP batch written together) "
            f"{agent_logging:,.0f} ({agent_logging / agent:.2f}x its rate without; "
            f"{agent_logging / dnsmasq_logging:.2f}x dnsmasq's). The targets are judged "
            "against the `dnsmasq` row: tuned, and not logging.",
        ]

    def _targets(self) -> list[str]:
        agent, dnsmasq = self.results[AGENT], self.results[DNSMASQ]
        unbound = self.results["unbound"]
        vs_dnsmasq = median(agent.qps) / median(dnsmasq.qps)
        vs_unbound = median(agent.qps) / median(unbound.qps)
        cap_dnsmasq = median(agent.per_cpu) / median(dnsmasq.per_cpu)
        cap_unbound = median(agent.per_cpu) / median(unbound.per_cpu)
        agent_cpu, dnsmasq_cpu = median(agent.cpu_us), median(dnsmasq.cpu_us)
        compile_s = median(self.compile_100k_s)
        zone_s = median(self.zone_compile_100k_s)

        def verdict(ok: bool) -> str:
            return "met" if ok else "**not met**"

        return [
            "| target (owned names) | goal | measured | |",
            "|---|---|---|---|",
            f"| throughput vs dnsmasq | ≥ {TARGET_QPS_VS_DNSMASQ:.1f}x | {vs_dnsmasq:.2f}x "
            f"(per CPU-second: {cap_dnsmasq:.2f}x) "
            f"| {verdict(vs_dnsmasq >= TARGET_QPS_VS_DNSMASQ)} |",
            f"| throughput vs unbound | ≥ {TARGET_QPS_VS_UNBOUND:.1f}x | {vs_unbound:.2f}x "
            f"(per CPU-second: {cap_unbound:.2f}x) "
            f"| {verdict(vs_unbound >= TARGET_QPS_VS_UNBOUND)} |",
            f"| CPU per query at {self.rate:,} queries/s | ≤ dnsmasq ({dnsmasq_cpu:.1f} µs) "
            f"| {agent_cpu:.1f} µs | {verdict(agent_cpu <= dnsmasq_cpu)} |",
            *(
                f"| the same at {rate:,} queries/s | ≤ dnsmasq ({self._cpu_at(DNSMASQ, rate):.1f} "
                f"µs) | {self._cpu_at(AGENT, rate):.1f} µs "
                f"| {verdict(self._cpu_at(AGENT, rate) <= self._cpu_at(DNSMASQ, rate))} |"
                for rate in self.sweep_rates
            ),
            f"| RSS serving {self.big_names:,} names | < {TARGET_RSS_100K_MB:.0f} MB "
            f"| {self.rss_100k_mb:.1f} MB | {verdict(self.rss_100k_mb < TARGET_RSS_100K_MB)} |",
            f"| compile {self.big_names:,} names: the zone compile (view to answers index) "
            f"| < {TARGET_COMPILE_100K_S:.1f} s "
            f"| {zone_s:.2f} s | {verdict(zone_s < TARGET_COMPILE_100K_S)} |",
            f"| compile {self.big_names:,} names: the whole load (parse, validate, view, zone) "
            f"| < {TARGET_COMPILE_100K_S:.1f} s "
            f"| {compile_s:.2f} s | {verdict(compile_s < TARGET_COMPILE_100K_S)} |",
        ]

    def markdown(self) -> str:
        compile_all = " / ".join(f"{t:.2f}" for t in self.compile_100k_s)
        zone_all = " / ".join(f"{t:.2f}" for t in self.zone_compile_100k_s)
        ceiling = ""
        if CEILING in self.results:
            ceiling = (
                " The two **ceiling** rows are not DNS servers: benchmarks/udp_ceiling.c "
                "sends each query back with QR set, doing no DNS work. Packet by packet (one "
                "`recvfrom()` and one `sendto()` per query, as dnsmasq and unbound do), it "
                "marks the most this machine and this dnsperf setting can show for a server "
                "that answers that way. Batched (one `recvmmsg()` for up to 64 waiting queries "
                "and one `sendmmsg()` for their replies, as the agent does), it marks the most "
                "dnsperf itself can drive here. The two **floor** rows are not DNS servers "
                "either: benchmarks/python_floor.py sends each query back with QR set, from a "
                "uvloop `datagram_received` (the least any server on Python's event loop spends "
                "per query) or from a thread blocked in `recvfrom` beside an idle uvloop loop "
                "(the least a Python server spends off the event loop, one datagram per wake-up)."
            )
        lines = [
            "## DNS: the agent against dnsmasq and unbound",
            "",
            f"Command: `scripts/bench dns`. Run {self.date} on {self.revision}; load average "
            f"before the run {self.load_before}.",
            "",
            "Measured on a **shared 2-core VM** (other work runs beside it, and dnsperf "
            "itself takes one of the two cores): absolute numbers drift from run to run, so "
            "all servers run in the same run on the same data and the **ratios are the "
            "figure to trust**.",
            "",
            f"Setup: {self.names:,} names in one region (private IPv4, every fourth name with "
            "IPv6), the same view for all three servers: the agent (`tagdns serve --upstream none "
            "--cache none`, uvloop, UDP read and answered in batches of up to 64 datagrams "
            "with `recvmmsg`/`sendmmsg`) from the mapping document; dnsmasq from the hosts text of "
            "the view (`--addn-hosts`, `name` and `name.internal`, no upstream, "
            "`--cache-size=10000`); unbound (`num-threads: 1`) from `local-data` in static "
            "local zones. Three more rows unless `--no-variants`: dnsmasq with its default "
            "`cache-size`, and the agent and dnsmasq each logging every query. Before "
            "measuring, dig checked that all of them give the same status, "
            f"AA flag and records for {self.checked} sample queries (NODATA only between the "
            "agent and unbound: dnsmasq without an upstream answers it REFUSED). Query file: "
            f"{self.query_count:,} lines, a seeded random mix of `name A`, `name.internal A` "
            "and AAAA for the names with IPv6.",
            "",
            f"Throughput: `dnsperf {self.perf_args} -l {self.duration}`, {self.rounds} rounds "
            "interleaved (agent, dnsmasq, unbound, ..., agent, ...), median reported. CPU per "
            f"query: `dnsperf -Q {self.rate} -l {self.cpu_seconds}` (a rate all of them "
            "sustain), utime+stime of the server process from `/proc/PID/stat` divided by "
            f"the queries answered, median of {self.cpu_rounds} interleaved rounds; user time "
            "alone in parentheses. "
            "RSS: `VmRSS` after the load.",
            "",
            "dnsperf, the server and the machine's other tenants share two cores, so no "
            "setting gives a server a whole core: *server CPU busy* is the share of one core "
            "the server got during the throughput rounds. *Queries per CPU-second* (queries "
            "answered divided by the server's utime+stime in the same rounds) is its capacity "
            "with a core to itself, and is much less sensitive to the noise than queries/s; "
            "the targets are judged on queries/s as specified, with the capacity ratio beside "
            "them." + ceiling,
            "",
            *self._rows(),
            *self._cpu_by_rate(),
            "",
            f"{self.big_names:,} names: the agent's RSS while serving is {self.rss_100k_mb:.1f} MB "
            f"(answering {self.ready_100k_s:.1f} s after start); compiling the document "
            "(`resolver.agent.load_in_worker`, what the agent runs off its event loop: parse, "
            "validate, view, compile, with the cyclic collector paused) takes "
            f"{median(self.compile_100k_s):.2f} s (median of {compile_all} s); of that, the zone "
            f"compile alone (`compile_image` and `materialize`, from the view to the answers "
            f"index) takes {median(self.zone_compile_100k_s):.2f} s (median of {zone_all} s).",
            "",
            *self._targets(),
            "",
            load_generator_limit(
                median(self.results[DNSMASQ].qps), median(self.results[AGENT].client_us)
            ),
            *self._python_floor(),
            *self._variants(),
        ]
        return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------------


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[None]:
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


def interleave(servers: Sequence[Server], rounds: int, step: Callable[[Server], None]) -> None:
    for round_no in range(rounds):
        for server in servers:
            print(f"  round {round_no + 1}: {server.label}", file=sys.stderr, flush=True)
            step(server)
            if server.logs_queries:
                os.sync()


@dataclass(frozen=True)
class Inputs:
    """The files every server reads, from one document."""

    view: View
    document: Path
    hosts: Path
    queries: Path
    query_lines: list[str]


def write_inputs(names: int, query_count: int, work: Path) -> Inputs:
    document = make_fleet(names)
    view = region_view(document)
    inputs = Inputs(view, work / "mapping.json", work / "fleet.hosts", work / "queries.txt", [])
    inputs.document.write_bytes(document.to_bytes())
    inputs.hosts.write_text(render_hosts(view))
    inputs.query_lines.extend(query_lines(view, query_count))
    inputs.queries.write_text("\n".join(inputs.query_lines) + "\n")
    return inputs


def measure_servers(
    args: argparse.Namespace, inputs: Inputs, work: Path
) -> tuple[dict[str, Measurements], int]:
    """Check answers, then throughput, CPU per query and RSS of every server, interleaved."""
    perf_args = perf_settings(args)
    dns_servers = [
        agent_server(AGENT, inputs.document, work),
        dnsmasq_server(inputs.hosts, work),
        unbound_server(inputs.view, work),
    ]
    servers = list(dns_servers)
    if args.ceiling:
        servers.extend(ceiling_servers(work))
        if importlib.util.find_spec("uvloop") is not None:
            servers.append(python_floor_server(work))
            servers.append(python_floor_server(work, "thread"))
    if args.variants:
        servers += [
            dnsmasq_server(inputs.hosts, work, label=DNSMASQ_DEFAULT_CACHE, cache_size=None),
            agent_server(AGENT_LOGGING, inputs.document, work, log_queries=True),
            dnsmasq_server(inputs.hosts, work, label=DNSMASQ_LOGGING, log_queries=True),
        ]
    results = {server.label: Measurements() for server in servers}

    def throughput(server: Server) -> None:
        before = sum(server.cpu_seconds())
        result = dnsperf(server.port, inputs.queries, [*perf_args, "-l", str(args.seconds)])
        used = max(sum(server.cpu_seconds()) - before, 1e-9)
        m = results[server.label]
        m.qps.append(result.qps)
        m.lost.append(result.lost)
        m.sent.append(result.sent)
        m.busy.append(used / result.seconds)
        m.per_cpu.append(result.completed / used)
        m.client_us.append(result.client_cpu / max(result.completed, 1) * 1e6)

    def cpu(server: Server) -> None:
        total, user = measure_cpu(server, inputs.queries, args.rate, args.cpu_seconds)
        results[server.label].cpu_us.append(total)
        results[server.label].user_us.append(user)

    def cpu_at(rate: int, server: Server) -> None:
        total, _user = measure_cpu(server, inputs.queries, rate, args.cpu_seconds)
        results[server.label].cpu_us_by_rate.setdefault(rate, []).append(total)

    with running(servers):
        for server in servers:
            server.wait_ready(inputs.view.records[0].name)
        answering = [server for server in servers if server.answers]
        checked = check_same_answers(answering, inputs.query_lines, args.check)
        print(f"dig: same answers from all {len(answering)} for {checked} queries", file=sys.stderr)
        for server in servers:  # warm-up: caches, allocator, CPU frequency
            dnsperf(server.port, inputs.queries, [*perf_args, "-l", "2"])
        os.sync()  # the logging servers' warm-up lines, written out now
        interleave(servers, args.rounds, throughput)
        interleave(servers, args.cpu_rounds, cpu)
        for rate in args.sweep_rates:
            interleave(dns_servers, args.cpu_rounds, partial(cpu_at, rate))
        for server in servers:
            results[server.label].rss_mb = server.rss_mb()
    return results, checked


def measure_big(
    args: argparse.Namespace, work: Path
) -> tuple[float, float, tuple[list[float], list[float]]]:
    """RSS of an agent serving ``--big-names`` names, its start-up, and compile times."""
    data = make_fleet(args.big_names).to_bytes()
    path = work / "mapping-big.json"
    path.write_bytes(data)
    agent = agent_server(f"{AGENT} {args.big_names}", path, work)
    with running([agent]):
        ready = agent.wait_ready(host_name(1, args.big_names), timeout=180)
        dnsperf(agent.port, query_file_for(work, args.big_names), ["-Q", "5000", "-l", "3"])
        rss = agent.rss_mb()
    print(f"{args.big_names} names: RSS {rss:.1f} MB; timing compiles", file=sys.stderr)
    return rss, ready, time_compile(data, args.compile_rounds)


def add_load_arguments(parser: argparse.ArgumentParser, whose: str = "") -> None:
    """dnsperf's -c, -q and -T as options (``whose`` ends their help), for ``perf_settings``."""
    parser.add_argument("--clients", type=int, default=10, help=f"dnsperf -c{whose}")
    parser.add_argument("--outstanding", type=int, default=100, help=f"dnsperf -q{whose}")
    parser.add_argument("--threads", type=int, default=1, help=f"dnsperf -T{whose}")


def perf_settings(args: argparse.Namespace) -> list[str]:
    return ["-c", str(args.clients), "-q", str(args.outstanding), "-T", str(args.threads)]


def run(args: argparse.Namespace) -> Report:
    load_before = load_average()
    with work_directory(args.work, "tagdns-bench-") as work:
        inputs = write_inputs(args.names, args.queries, work)
        results, checked = measure_servers(args, inputs, work)
        rss_big, ready_big, (load_times, zone_times) = measure_big(args, work)
    return Report(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        revision=revision(),
        load_before=load_before,
        perf_args=" ".join(perf_settings(args)),
        duration=args.seconds,
        rounds=args.rounds,
        cpu_rounds=args.cpu_rounds,
        rate=args.rate,
        sweep_rates=tuple(args.sweep_rates),
        cpu_seconds=args.cpu_seconds,
        query_count=args.queries,
        checked=checked,
        results=results,
        names=args.names,
        big_names=args.big_names,
        rss_100k_mb=rss_big,
        ready_100k_s=ready_big,
        compile_100k_s=load_times,
        zone_compile_100k_s=zone_times,
    )


def query_file_for(work: Path, names: int) -> Path:
    """A query file over the big fleet, so the big agent serves real lookups."""
    path = work / "queries-big.txt"
    rng = random.Random(SEED + 2)  # noqa: S311 - reproducible queries
    lines = []
    for _ in range(20_000):
        name = host_name(rng.randint(1, names), names)
        lines.append(f"{name} A" if rng.random() < 0.5 else f"{name}.{ZONE} A")
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=50_000, help="lines in the query file")
    parser.add_argument("--check", type=int, default=60, help="dig sample size")
    parser.add_argument("--seconds", type=int, default=8, help="dnsperf -l per round")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds")
    parser.add_argument("--cpu-rounds", type=int, default=3, help="fixed-rate CPU rounds")
    add_load_arguments(parser)
    parser.add_argument("--rate", type=int, default=10_000, help="dnsperf -Q for CPU/query")
    parser.add_argument("--cpu-seconds", type=int, default=10, help="dnsperf -l for CPU/query")
    parser.add_argument(
        "--sweep-rates",
        type=lambda text: [int(rate) for rate in text.split(",") if rate],
        default=[30_000, 60_000],
        help="more dnsperf -Q rates for CPU/query of the three DNS servers ('' for none)",
    )
    parser.add_argument("--big-names", type=int, default=100_000)
    parser.add_argument("--compile-rounds", type=int, default=3)
    parser.add_argument(
        "--no-ceiling", dest="ceiling", action="store_false", help="skip the C echo row"
    )
    parser.add_argument(
        "--no-variants",
        dest="variants",
        action="store_false",
        help="skip dnsmasq with its default cache-size and both servers logging queries",
    )
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    publish(
        run(args).markdown(),
        PERFORMANCE_DOC,
        BEGIN_MARKER,
        END_MARKER,
        write=not args.no_write,
        new_file=DOC_TITLE + DOC_INTRO,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
