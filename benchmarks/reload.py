"""Reload benchmark (live mapping): a 100,000-name document replaced under query load.

Run with ``scripts/bench reload``. Two measurements, both on real processes:

1. **Reload under load.** A real ``tagdns serve`` agent serves a 100,000-name
   document from a file source. dnsperf sends owned names at a fixed rate
   (``-Q``) while the file is replaced (by rename, as deploy tools do) with a new
   serial that changes some addresses. The reload wall time runs from the rename to
   the agent's "serving serial N" log line (watch debounce, read, parse, validate,
   build the view, compile, swap); the agent's own "loaded in" figure is the
   parse-to-compile part. Queries lost are dnsperf's "Queries lost" for the run
   that spans the reload (a query counts as lost after dnsperf's 5 s timeout).
2. **Bytes per unchanged S3 poll.** The same document as an S3 object in a
   moto_server of its own; the agent polls it every second through a small HTTP
   proxy that records every exchange. After the first GET, each unchanged poll
   should be a 304 without a body.

The result is printed and written into docs/performance.md between the
``bench:reload`` markers; everything else in that file is kept as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import http.server
import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dnslib import QTYPE, DNSRecord

from devsupport.net import free_port
from devsupport.report import (
    add_output_arguments,
    load_average,
    publish,
    revision,
    work_directory,
)
from resolver.adapters.memory import collector_paused
from resolver.agent import load_in_worker
from resolver.core.canonical_reader import read_canonical
from resolver.core.document import (
    HostEntry,
    decode_document,
    document_from_json,
    make_document,
)
from resolver.core.pipeline import ZoneSettings
from resolver.core.views import build_view
from resolver.core.zone import compile_zone

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
TAGDNS = VENV_BIN / "tagdns"
MOTO_SERVER = VENV_BIN / "moto_server"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
BEGIN_MARKER = "<!-- bench:reload:begin -->"
END_MARKER = "<!-- bench:reload:end -->"

REGION = "us-east-1"
ZONE = "internal"
SEED = 20240507
BUCKET = "fleet-config"
KEY = "dns/mapping.json"
TARGET_RELOAD_S = 1.5

_LOG_TIME = r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3})"
_READY = re.compile(r"ready: 127\.0\.0\.1:(\d+)")


def log_time(stamp: str) -> float:
    """The agent's asctime (local time, milliseconds) as a Unix time."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def serving_line(serial: int) -> re.Pattern[str]:
    return re.compile(_LOG_TIME + rf" INFO tagdns\.agent: serving serial {serial} .*"
                      r"\(loaded in ([0-9.]+) s: "
                      r"(full load|rebuilt \d+ changed names?)\)")  # fmt: skip


# -- the fleet --------------------------------------------------------------------------------


def host_name(i: int) -> str:
    return f"host-{i:06d}"


def changed_address(i: int, generation: int) -> str:
    return str(ipaddress.IPv4Address("10.128.0.0") + generation * 65536 + i // 100)


def fleet_document(
    names: int, serial: int, changed_every: int, *, redeployed: bool = False
) -> bytes:
    """``names`` names in one region; generation ``serial`` moves every n-th name.

    ``redeployed``: every name is on a new instance, so every host entry differs
    from the last generation's and the agent must load the document in full.
    """
    base = ipaddress.IPv4Address("10.0.0.0")
    hosts = []
    for i in range(1, names + 1):
        moved = serial > 1 and i % changed_every == 0
        hosts.append(
            HostEntry(
                name=host_name(i),
                region=REGION,
                instance_id=f"i-{serial:04x}{i:013x}" if redeployed else f"i-{i:017x}",
                az=f"{REGION}a",
                private_ipv4=changed_address(i, serial) if moved else str(base + 256 + i),
                public_ipv4=None,
            )
        )
    return make_document(
        serial=serial,
        generated_at=f"2026-01-01T00:{serial // 60 % 60:02d}:{serial % 60:02d}Z",
        tag_key="dns",
        regions=[REGION],
        hosts=hosts,
    ).to_bytes()


def write_queries(path: Path, names: int, count: int) -> None:
    rng = random.Random(SEED)  # noqa: S311 - reproducible queries
    lines = []
    for _ in range(count):
        name = host_name(rng.randint(1, names))
        lines.append(f"{name} A" if rng.random() < 0.5 else f"{name}.{ZONE} A")
    path.write_text("\n".join(lines) + "\n")


# -- processes --------------------------------------------------------------------------------


def tool(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if found is None:
        raise SystemExit(f"bench reload: {name} not found (scripts/test installs it)")
    return found


class Agent:
    """``tagdns serve`` with its stderr in a file."""

    def __init__(self, work: Path, label: str, args: Sequence[str], env: dict[str, str]) -> None:
        self.log_path = work / f"agent-{label}.log"
        self.command = [
            str(TAGDNS), "serve", "--view", REGION, "--listen", "127.0.0.1:0",
            "--upstream", "none", "--cache", "none", *args,
        ]  # fmt: skip
        self.started = time.time()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.DEVNULL, stderr=log, env=env
            )
        self.port = 0

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.log)
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise SystemExit(f"bench reload: agent never logged {pattern.pattern!r}:\n{self.log}")

    def wait_ready(self, timeout: float = 900.0) -> None:
        self.port = int(self.wait_for(_READY, timeout).group(1))

    def ask(self, name: str) -> list[str]:
        query = DNSRecord.question(name, "A")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5.0)
            sock.sendto(query.pack(), ("127.0.0.1", self.port))
            reply = DNSRecord.parse(sock.recv(65535))
        return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)

    def memory_mb(self) -> tuple[float, float]:
        """``VmRSS`` now and ``VmHWM`` (the peak so far), in MB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running(agent: Agent) -> Iterator[Agent]:
    try:
        yield agent
    finally:
        agent.stop()


# -- 1. reload under load ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reload:
    serial: int
    full: bool
    """Every host entry changed (a full load), rather than 1 in ``changed_every``."""
    wall_s: float
    loaded_s: float
    sent: int
    lost: int
    max_latency_s: float
    within_run: bool
    """The reload finished while dnsperf was still sending."""


def dnsperf_figures(output: str) -> tuple[int, int, float]:
    def number(label: str) -> str:
        match = re.search(label, output)
        if match is None:
            raise SystemExit(f"bench reload: unexpected dnsperf output:\n{output}")
        return match.group(1)

    sent = int(number(r"Queries sent:\s+(\d+)"))
    lost = int(number(r"Queries lost:\s+(\d+)"))
    max_latency = float(number(r"Average Latency \(s\):\s+[0-9.]+ \(min [0-9.]+, max ([0-9.]+)\)"))
    return sent, lost, max_latency


@dataclass(frozen=True)
class Memory:
    after_first_mb: float
    after_reloads_mb: float
    peak_mb: float


def measure_reloads(args: argparse.Namespace, work: Path) -> tuple[float, list[Reload], Memory]:
    source = work / "mapping.json"
    source.write_bytes(fleet_document(args.names, 1, args.changed_every))
    queries = work / "queries.txt"
    write_queries(queries, args.names, 20_000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    agent = Agent(work, "file", ["--source", str(source), "--poll", "3600"], env)
    results: list[Reload] = []
    with running(agent):
        agent.wait_ready()
        start_load = float(agent.wait_for(serving_line(1), 1).group(2))
        print(f"bench reload: agent ready, first load {start_load:.2f} s", file=sys.stderr)
        time.sleep(1.0)  # the heap trim after a load runs just after the "serving" line
        after_first, _ = agent.memory_mb()
        estimate = start_load
        for serial in range(2, 2 + args.reloads + args.full_reloads):
            full = serial >= 2 + args.reloads
            data = fleet_document(args.names, serial, args.changed_every, redeployed=full)
            staged = source.with_name("mapping.json.new")
            staged.write_bytes(data)
            seconds = int(args.lead + 2 * estimate + args.tail) + 1
            perf = subprocess.Popen(
                [tool("dnsperf"), "-s", "127.0.0.1", "-p", str(agent.port), "-d", str(queries),
                 "-Q", str(args.rate), "-l", str(seconds)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            perf_started = time.time()
            time.sleep(args.lead)
            replaced = time.time()
            os.replace(staged, source)
            match = agent.wait_for(serving_line(serial), 900)
            served = log_time(match.group(1))
            output, _ = perf.communicate()
            if (match.group(3) == "full load") != full:
                raise SystemExit(f"bench reload: serial {serial} was a {match.group(3)}")
            sent, lost, max_latency = dnsperf_figures(output)
            moved = args.changed_every
            answer = agent.ask(host_name(moved))
            if answer != [changed_address(moved, serial)]:
                raise SystemExit(f"bench reload: {host_name(moved)} answers {answer} after reload")
            result = Reload(
                serial=serial,
                full=full,
                wall_s=served - replaced,
                loaded_s=float(match.group(2)),
                sent=sent,
                lost=lost,
                max_latency_s=max_latency,
                within_run=served < perf_started + seconds - 1,
            )
            print(f"bench reload: {result}", file=sys.stderr)
            results.append(result)
            estimate = max(estimate, result.wall_s)
        time.sleep(1.0)
        after_reloads, peak = agent.memory_mb()
    return start_load, results, Memory(after_first, after_reloads, peak)


@dataclass(frozen=True)
class Stages:
    """Where a reload's parse+compile goes, timed in this process (one run, no load)."""

    read_s: float
    """``read_canonical``: the entries found and validated, the header decoded."""
    general_s: float
    """The general parse of the same bytes (JSON decode, then validation), for comparison."""
    view_s: float
    compile_s: float
    rebuild_s: float
    """``load_in_worker`` given the previous generation, which rebuilds the moved names."""


def time_stages(args: argparse.Namespace) -> Stages:
    data = fleet_document(args.names, 2, args.changed_every)
    with collector_paused():  # as the agent's load does
        stages = _timed_stages(data)
    settings = ZoneSettings(view=REGION, zone=ZONE)
    previous = load_in_worker(fleet_document(args.names, 1, args.changed_every), settings, None)
    started = time.perf_counter()
    load_in_worker(data, settings, previous, keep_entries_later=True)  # kept once it serves
    return dataclasses.replace(stages, rebuild_s=time.perf_counter() - started)


def _timed_stages(data: bytes) -> Stages:
    started = time.perf_counter()
    read = read_canonical(data)
    if read is None:
        raise SystemExit("bench reload: the canonical reader declined the fleet's document")
    validated = time.perf_counter()
    view = build_view(read.document, REGION, ZONE)
    viewed = time.perf_counter()
    compile_zone(view, ttl=30, negative_ttl=30, authoritative=False, recursion_available=False)
    compiled = time.perf_counter()
    document_from_json(decode_document(data).raw)
    general_s = time.perf_counter() - compiled
    return Stages(validated - started, general_s, viewed - validated, compiled - viewed, 0.0)


# -- 2. bytes per unchanged S3 poll ----------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    status: int
    header_bytes: int
    body_bytes: int
    if_none_match: bool


class CountingProxy:
    """Relays HTTP to moto_server and records, per GET of the key, what went back."""

    _SKIP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.gets: list[Exchange] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.relay(self)

            do_PUT = do_HEAD = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def relay(self, request: http.server.BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        connection = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in self._SKIP}
            connection.request(request.command, request.path, body=body, headers=headers)
            reply = connection.getresponse()
            payload = reply.read()
            kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in self._SKIP]
        finally:
            connection.close()
        has_body = reply.status not in (204, 304)
        if has_body:
            kept.append(("Content-Length", str(len(payload))))
        head = f"HTTP/1.1 {reply.status} {reply.reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in kept
        )
        if request.command == "GET" and urllib.parse.urlsplit(request.path).path.endswith(KEY):
            with self.lock:
                self.gets.append(
                    Exchange(
                        reply.status,
                        len(head) + 2,
                        len(payload) if has_body else 0,
                        "If-None-Match" in request.headers,
                    )
                )
        request.send_response(reply.status)
        for name, value in kept:
            request.send_header(name, value)
        request.end_headers()
        if has_body and request.command != "HEAD":
            request.wfile.write(payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class PollResult:
    document_bytes: int
    first: Exchange
    unchanged: list[Exchange]


def start_moto(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as reply:  # noqa: S310
                reply.read()
            return process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    process.kill()
    raise SystemExit("bench reload: moto_server did not start")


def measure_polls(args: argparse.Namespace, work: Path) -> PollResult:
    import boto3  # noqa: PLC0415 - only this part talks to S3

    data = fleet_document(args.names, 1, args.changed_every)
    moto, url = start_moto(work)
    proxy = CountingProxy(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=proxy.url,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - moto's fake account
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106
        )
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=data)
        agent = Agent(work, "s3", ["--source", f"s3://{BUCKET}/{KEY}", "--poll", "1"], env)
        with running(agent):
            agent.wait_ready()
            deadline = time.monotonic() + 120
            while len(proxy.gets) < 1 + args.polls and time.monotonic() < deadline:
                time.sleep(0.2)
        gets = list(proxy.gets)
        if len(gets) < 1 + args.polls:
            raise SystemExit(f"bench reload: only {len(gets)} GETs seen:\n{agent.log}")
        return PollResult(len(data), gets[0], gets[1 : 1 + args.polls])
    finally:
        proxy.close()
        moto.terminate()
        moto.wait(30)


# -- report -----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def report(
    args: argparse.Namespace,
    start_load: float,
    reloads: list[Reload],
    memory: Memory,
    polls: PollResult | None,
    stages: Stages,
    load_before: str,
) -> str:
    command = "scripts/bench reload" + ("" if not args.argv else " " + " ".join(args.argv))
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rebuilds = [r for r in reloads if not r.full]
    fulls = [r for r in reloads if r.full]
    lost = sum(r.lost for r in reloads)
    sent = sum(r.sent for r in reloads)
    moved = args.names // args.changed_every
    lines = [
        f"## Reload: {args.names:,} names replaced under load",
        "",
        f"Command: `{command}`. Run {date} on {revision()}; load average before the run "
        f"{load_before}. Shared 2-core VM: dnsperf, the agent and other tenants share it.",
        "",
        f"Setup: a real agent (`tagdns serve --source FILE --upstream none --cache none`, "
        f"uvloop) serves {args.names:,} names in one region from a file source (the document "
        f"is {len(fleet_document(args.names, 1, args.changed_every)) / 1e6:.1f} MB; the first "
        f"load took {start_load:.2f} s). For each reload, dnsperf sends owned names "
        f"(`dnsperf -Q {args.rate} -l L`, L covering the reload plus {args.tail:.0f} s) and, "
        f"{args.lead:.0f} s in, the file is replaced by rename with the next serial. A "
        f"*moved* reload moves {moved:,} names to new addresses (what a publish usually "
        "brings): the agent rebuilds only those names (`resolver.core.delta`). A "
        "*redeployed* reload puts every name on a new instance, so every host entry "
        "differs and the agent loads the document in full. *Wall* runs from the rename "
        "to the agent's `serving serial N` log line (watch debounce, read, parse and "
        "validate, view, compile, swap); *parse+compile* is the agent's own `loaded in` "
        "figure for the part done off the serving path. A moved name is checked with a "
        "query after each reload. *Lost* is dnsperf's `Queries lost` (no answer within its "
        "5 s timeout) over the whole run.",
        "",
        "| reload | kind | wall (s) | parse+compile (s) | queries sent | lost | max latency (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in reloads:
        note = "" if r.within_run else " (finished after dnsperf stopped)"
        kind = "redeployed: full load" if r.full else f"{moved:,} moved: rebuild"
        lines.append(
            f"| serial {r.serial}{note} | {kind} | {r.wall_s:.2f} | {r.loaded_s:.2f} | "
            f"{r.sent:,} | {r.lost:,} | {r.max_latency_s:.3f} |"
        )
    total = stages.read_s + stages.view_s + stages.compile_s
    lines += [
        "",
        f"Where parse+compile goes (`resolver.core`, timed once in the benchmark process with "
        f"no query load, the cyclic collector paused as in the agent). A full load: reading "
        f"and validating the document (`read_canonical`, whose regular expression over the "
        f"entries is a single C call that holds the GIL throughout, so no query is answered "
        f"meanwhile) {stages.read_s:.2f} s (the general parse of the same bytes, a JSON decode "
        f"and then validation, took {stages.general_s:.2f} s), view {stages.view_s:.2f} s, "
        f"zone compile "
        f"{stages.compile_s:.2f} s; {total:.2f} s in all. The rebuild of the {moved:,} moved "
        f"names (`load_in_worker` given the previous generation): {stages.rebuild_s:.2f} s. "
        "In the agent the same work runs in a thread that shares the GIL with the thread "
        "answering queries.",
        "",
        f"The agent's memory (`VmRSS`, `VmHWM` from `/proc`): {memory.after_first_mb:.1f} MB "
        f"after the first load, {memory.after_reloads_mb:.1f} MB after the last reload, "
        f"{memory.peak_mb:.1f} MB at the peak of the run (during a reload the old zone serves "
        "while the new one is built).",
        "",
    ]
    if polls is not None:
        unchanged = polls.unchanged
        statuses = sorted({e.status for e in unchanged})
        body = statistics.mean(e.body_bytes for e in unchanged)
        head = statistics.mean(e.header_bytes for e in unchanged)
        conditional = all(e.if_none_match for e in unchanged)
        lines += [
            f"S3 polls: the same document as an object in moto_server, polled with "
            f"`--poll 1` through a recording HTTP proxy. First GET: HTTP {polls.first.status}, "
            f"{polls.first.body_bytes:,} bytes of body. The next {len(unchanged)} polls: HTTP "
            f"{', '.join(map(str, statuses))}, {'all' if conditional else '**not all**'} with "
            f"If-None-Match; **{body:.0f} bytes of body** per unchanged poll ({head:.0f} bytes "
            "of status line and headers).",
            "",
        ]
    lines += ["| target | goal | measured | |", "|---|---|---|---|"]
    for kind, measured in ((f"{moved:,} moved", rebuilds), ("all redeployed", fulls)):
        if not measured:
            continue
        wall = statistics.median(r.wall_s for r in measured)
        loaded = statistics.median(r.loaded_s for r in measured)
        lines.append(
            f"| reload wall time, {args.names:,} names, {kind} | < {TARGET_RELOAD_S} s | "
            f"{wall:.2f} s (median; parse+compile {loaded:.2f} s) | "
            f"{verdict(wall < TARGET_RELOAD_S)} |"
        )
    lines.append(
        f"| queries lost during reloads | 0 | {lost:,} of {sent:,} | {verdict(lost == 0)} |"
    )
    if polls is not None:
        body_total = sum(e.body_bytes for e in polls.unchanged)
        lines.append(
            f"| bytes downloaded per unchanged poll | 0 | "
            f"{body_total / len(polls.unchanged):.0f} | {verdict(body_total == 0)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench reload", description=__doc__)
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--reloads", type=int, default=3, help="reloads moving some names")
    parser.add_argument(
        "--full-reloads", type=int, default=5, help="reloads after them redeploying every name"
    )
    parser.add_argument("--rate", type=int, default=5000, help="dnsperf -Q")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds of load before a reload")
    parser.add_argument("--tail", type=float, default=5.0, help="seconds of load after it")
    parser.add_argument("--changed-every", type=int, default=100, help="move every n-th name")
    parser.add_argument("--polls", type=int, default=5, help="unchanged S3 polls observed")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 poll measurement")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    load_before = load_average()
    with work_directory(args.work, "tagdns-reload-") as work:
        start_load, reloads, memory = measure_reloads(args, work)
        polls = None if args.no_s3 else measure_polls(args, work)
    stages = time_stages(args)
    text = report(args, start_load, reloads, memory, polls, stages, load_before)
    publish(text, PERFORMANCE_DOC, BEGIN_MARKER, END_MARKER, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
