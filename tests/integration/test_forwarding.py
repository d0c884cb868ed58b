"""Forwarding on real sockets: the agent against dnsmasq and against a hostile upstream.

The acceptance scenarios run the real ``tagdns serve`` console script and check it
with ``dig``, as a new user would; dnsmasq is Debian's. The logic tests run the
same Forwarder and DnsServer in this process with short timeouts (and, for the
cache, an injected clock), still on real UDP and TCP sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from devsupport.net import free_port
from resolver.adapters.dns_server import DnsServer, ServerLimits
from resolver.adapters.forwarder import Forwarder, ForwarderLimits
from resolver.agent import Agent, AgentPlan
from resolver.core.cache import AnswerCache, CacheLimits
from resolver.core.endpoints import Endpoint, parse_endpoint
from resolver.core.pipeline import ZoneSettings, load_document
from resolver.core.responder import Responder
from resolver.core.source_url import parse_source
from resolver.core.upstream_reply import UpstreamAnswer
from tests.integration.dns_helpers import DNSMASQ, dnsmasq
from tests.integration.hostile_upstream import (
    BLOCKED_TEXT,
    EDE_CODE,
    EDE_TEXT,
    POISON_V4,
    HostileUpstream,
    Mode,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "conf" / "example-mapping.json"
TAGDNS = Path(sys.executable).with_name("tagdns")
DIG = shutil.which("dig")
OWNED = {"api": {"10.0.1.10", "10.0.2.21"}, "web1.internal": None}
"""Names the us-east-1 view of the example mapping owns (api's addresses checked)."""
FAST = ForwarderLimits(attempt_timeout=0.3, total_timeout=0.9, max_in_flight=64)

T = TypeVar("T")

needs_tools = pytest.mark.skipif(
    DIG is None or not DNSMASQ.exists(), reason="needs dig and dnsmasq installed"
)


# --- talking DNS ---------------------------------------------------------------------------


def make_query(
    name: str,
    qtype: str = "A",
    *,
    qid: int | None = None,
    rd: bool = True,
    cd: bool = False,
    ad: bool = False,
    edns: int | None = None,
    do: bool = False,
) -> bytes:
    """A query as a stub would send it; ``edns`` is the advertised UDP payload (None: no OPT)."""
    record = DNSRecord.question(name, qtype)
    if qid is not None:
        record.header.id = qid
    record.header.rd = int(rd)
    record.header.cd = int(cd)
    record.header.ad = int(ad)
    if edns is not None:
        record.add_ar(EDNS0(udp_len=edns, flags="do" if do else ""))
    return bytes(record.pack())


def exchange(port: int, query: bytes, *, tcp: bool = False, timeout: float = 8.0) -> bytes:
    """Send one query to 127.0.0.1:port and return the matching reply's bytes."""
    if tcp:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(struct.pack("!H", len(query)) + query)
            length = struct.unpack("!H", _recv_exactly(conn, 2))[0]
            return _recv_exactly(conn, length)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, ("127.0.0.1", port))
        while True:
            reply = sock.recv(65535)
            if reply[:2] == query[:2]:
                return reply


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed early")
        data += chunk
    return data


def ask(port: int, name: str, qtype: str = "A", *, tcp: bool = False, **options: Any) -> DNSRecord:
    return DNSRecord.parse(exchange(port, make_query(name, qtype, **options), tcp=tcp))


def addresses(reply: DNSRecord) -> set[str]:
    return {str(rr.rdata) for rr in reply.rr if rr.rtype in (QTYPE.A, QTYPE.AAAA)}


def opt_of(reply: DNSRecord) -> Any:
    opts = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) <= 1
    return opts[0] if opts else None


def extended_error(reply: DNSRecord) -> tuple[int, str] | None:
    """The reply's Extended DNS Error (RFC 8914): INFO-CODE and EXTRA-TEXT."""
    opt = opt_of(reply)
    found = [o for o in (opt.rdata if opt is not None else []) if o.code == 15]
    assert len(found) <= 1
    if not found:
        return None
    data = bytes(found[0].data)
    return int.from_bytes(data[:2], "big"), data[2:].decode()


def exchange_many(port: int, queries: list[bytes], timeout: float = 8.0) -> list[bytes | None]:
    """Send every query at once, each from its own socket; replies in the same order."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in queries]
    try:
        for sock, query in zip(sockets, queries, strict=True):
            sock.sendto(query, ("127.0.0.1", port))
        replies: list[bytes | None] = []
        deadline = time.monotonic() + timeout
        for sock in sockets:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                replies.append(sock.recv(65535))
            except TimeoutError:
                replies.append(None)
        return replies
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Dig:
    """What ``dig`` printed, reduced to what the tests check."""

    status: str
    flags: set[str]
    edns_flags: set[str] | None
    answers: list[tuple[str, int, str, str]]
    seconds: float
    output: str


def dig(port: int, name: str, qtype: str = "A", *options: str) -> Dig:
    assert DIG is not None
    started = time.monotonic()
    done = subprocess.run(
        [DIG, "-p", str(port), "@127.0.0.1", name, qtype, "+time=10", "+tries=1", *options],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    seconds = time.monotonic() - started
    return parse_dig(done.stdout, seconds)


def parse_dig(output: str, seconds: float) -> Dig:
    status = re.search(r"status: (\w+)", output)
    flags = re.search(r";; flags: ([a-z ]*);", output)
    edns = re.search(r"; EDNS: version: \d+, flags: ?([a-z ]*);", output)
    answers = []
    section = output.split(";; ANSWER SECTION:\n", 1)
    if len(section) == 2:
        for line in section[1].split("\n\n", 1)[0].splitlines():
            owner, ttl, _class, rtype, data = line.split(None, 4)
            answers.append((owner, int(ttl), rtype, data))
    assert status is not None and flags is not None, output
    return Dig(
        status=status.group(1),
        flags=set(flags.group(1).split()),
        edns_flags=set(edns.group(1).split()) if edns else None,
        answers=answers,
        seconds=seconds,
        output=output,
    )


# --- real processes ------------------------------------------------------------------------


@dataclass
class CliAgent:
    """``tagdns serve`` as a subprocess, listening on a kernel-chosen port."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def cli_agent(tmp: Path, *upstreams: str, source: Path = MAPPING) -> Iterator[CliAgent]:
    log = tmp / f"agent-{time.monotonic_ns()}.log"
    command = [str(TAGDNS), "serve", "--source", str(source), "--view", "us-east-1"]
    command += ["--listen", "127.0.0.1:0", "--cache", "none"]
    for upstream in upstreams:
        command += ["--upstream", upstream]
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file)
    agent = CliAgent(process, log)
    try:
        deadline = time.monotonic() + 20
        while not agent.port:
            found = re.search(
                r"(?:ready|listening without data): 127\.0\.0\.1:(\d+)", agent.log_text()
            )
            if found:
                agent.port = int(found.group(1))
            elif process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tagdns serve did not start: {agent.log_text()}")
            else:
                time.sleep(0.05)
        yield agent
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        upstream.add("plain.example.test", "A", "192.0.2.1")
        for index, mode in enumerate(
            [Mode.SPOOF_OTHER_PORT, Mode.WRONG_ID_FIRST, Mode.WRONG_QUESTION_FIRST], start=10
        ):
            name = f"{mode.value}.example.test"
            upstream.add(name, "A", f"192.0.2.{index}")
            upstream.script(name, mode)
        upstream.add("tc.example.test", "A", "192.0.2.20")
        upstream.add("tc.example.test", "A", "192.0.2.21")
        upstream.script("tc.example.test", Mode.TRUNCATE)
        upstream.script("silent.example.test", Mode.SILENT)
        # Names held upstream that point at fleet names: the upstream follows the
        # CNAME, finds nothing, and answers NXDOMAIN with the chain.
        upstream.add("alias.example.test", "CNAME", "web1.internal")
        upstream.add("two.example.test", "CNAME", "alias2.example.test")
        upstream.add("alias2.example.test", "CNAME", "api")
        upstream.add("tc-alias.example.test", "CNAME", "web1.internal")
        upstream.script("tc-alias.example.test", Mode.TRUNCATE)
        upstream.add("outside.example.test", "CNAME", "plain.example.test")
        upstream.add("reload-alias.example.test", "CNAME", "web1.internal")
        yield upstream


@pytest.fixture(scope="module")
def hostile_cli(
    hostile: HostileUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """The real CLI agent forwarding to the hostile upstream: its port."""
    with cli_agent(tmp_path_factory.mktemp("hostile-cli"), hostile.address) as agent:
        yield agent.port


# --- acceptance: the real CLI, dig, dnsmasq --------------------------------------------------


@needs_tools
def test_cli_forwards_through_dnsmasq_and_answers_owned_names(tmp_path: Path) -> None:
    records = [
        "--address=/ip-10-0-0-99.ec2.internal/10.0.0.99",
        "--address=/www.example.org/192.0.2.80",
        "--local=/example.org/",  # other names there: NXDOMAIN
    ]
    with dnsmasq(*records) as upstream, cli_agent(tmp_path, f"127.0.0.1:{upstream.port}") as agent:
        forwarded = dig(agent.port, "www.example.org")
        assert forwarded.status == "NOERROR"
        assert [a[2:] for a in forwarded.answers] == [("A", "192.0.2.80")]
        assert {"qr", "rd", "ra"} <= forwarded.flags and "aa" not in forwarded.flags

        aws = dig(agent.port, "IP-10-0-0-99.EC2.Internal")  # AWS's own name, any case
        assert aws.status == "NOERROR" and "aa" not in aws.flags
        assert [a[2:] for a in aws.answers] == [("A", "10.0.0.99")]
        assert aws.answers[0][0] == "IP-10-0-0-99.EC2.Internal."  # the client's case
        assert "IP-10-0-0-99.EC2.Internal.\tIN\tA" in aws.output.replace("\t\t", "\t")

        over_tcp = dig(agent.port, "ip-10-0-0-99.ec2.internal", "A", "+tcp")
        assert [a[3] for a in over_tcp.answers] == ["10.0.0.99"]

        owned = dig(agent.port, "api")
        assert owned.status == "NOERROR" and "aa" in owned.flags
        assert {a[3] for a in owned.answers} == OWNED["api"]

        missing = dig(agent.port, "no-such-name.example.org")  # NXDOMAIN passed on as is
        assert missing.status == "NXDOMAIN" and "aa" not in missing.flags


@needs_tools
def test_cli_ignores_forged_replies_and_returns_the_true_answer(
    hostile: HostileUpstream, hostile_cli: int
) -> None:
    for index, mode in enumerate(
        [Mode.SPOOF_OTHER_PORT, Mode.WRONG_ID_FIRST, Mode.WRONG_QUESTION_FIRST], start=10
    ):
        result = dig(hostile_cli, f"{mode.value}.example.test")
        assert result.status == "NOERROR", (mode, result.output)
        assert [a[3] for a in result.answers] == [f"192.0.2.{index}"], (mode, result.output)
        assert POISON_V4 not in result.output
        assert len(hostile.queries(f"{mode.value}.example.test")) == 1  # no retry was needed


@needs_tools
def test_cli_retries_a_truncated_upstream_reply_over_tcp(
    hostile: HostileUpstream, hostile_cli: int
) -> None:
    result = dig(hostile_cli, "tc.example.test")
    assert result.status == "NOERROR" and "tc" not in result.flags
    assert sorted(a[3] for a in result.answers) == ["192.0.2.20", "192.0.2.21"]
    seen = hostile.queries("tc.example.test")
    assert [q.transport for q in seen] == ["udp", "tcp"]
    assert seen[0].qid == seen[1].qid  # the same query, asked again over TCP


@needs_tools
@pytest.mark.parametrize(
    ("name", "chain", "target", "addresses"),
    [
        ("alias.example.test", ["web1.internal."], "web1.internal.", ["10.0.1.10"]),
        (
            "two.example.test",
            ["alias2.example.test.", "api."],
            "api.",
            sorted(OWNED["api"]),  # type: ignore[arg-type]
        ),
        ("tc-alias.example.test", ["web1.internal."], "web1.internal.", ["10.0.1.10"]),
    ],
    ids=["one-link", "two-links-to-a-bare-name", "over-tcp-after-tc"],
)
def test_cli_completes_a_forwarded_cname_that_ends_at_an_owned_name(
    hostile: HostileUpstream,
    hostile_cli: int,
    name: str,
    chain: list[str],
    target: str,
    addresses: list[str],
) -> None:
    for attempt in ("fresh", "cached"):
        result = dig(hostile_cli, name, "A", "+dnssec")
        assert result.status == "NOERROR", (attempt, result.output)  # the upstream said NXDOMAIN
        assert [a[3] for a in result.answers if a[2] == "CNAME"] == chain, result.output
        assert sorted(a[3] for a in result.answers if a[2] == "A") == addresses, result.output
        assert {a[0] for a in result.answers if a[2] == "A"} == {target}, result.output
        assert all(a[1] <= 30 for a in result.answers if a[2] == "A")  # the view's TTL
        assert "aa" not in result.flags and "ad" not in result.flags, result.output
    assert len(hostile.queries(name, "udp")) == 1  # the second came from the cache
    assert hostile.queries(target.rstrip(".")) == []  # owned: never asked upstream


@needs_tools
def test_cli_a_forwarded_cname_to_an_owned_name_is_nodata_for_a_type_it_lacks(
    hostile: HostileUpstream, hostile_cli: int
) -> None:
    """A browser's HTTPS question for the alias: the upstream's NXDOMAIN is wrong
    once the chain ends at a name that exists."""
    result = dig(hostile_cli, "alias.example.test", "HTTPS")
    assert result.status == "NOERROR", result.output
    assert [(a[2], a[3]) for a in result.answers] == [("CNAME", "web1.internal.")]
    assert re.search(r"^internal\.\s+\d+\s+IN\s+SOA\s", result.output, re.MULTILINE)


@needs_tools
def test_cli_a_reload_that_moves_the_end_of_a_cname_is_seen_at_once(
    hostile: HostileUpstream, tmp_path: Path
) -> None:
    """The completed answer is cached for the view's TTL, but a reload drops it."""
    mapping = tmp_path / "mapping.json"
    document = json.loads(MAPPING.read_text())
    mapping.write_text(json.dumps(document))
    name = "reload-alias.example.test"
    with cli_agent(tmp_path, hostile.address, source=mapping) as agent:
        before = dig(agent.port, name)
        assert [a[3] for a in before.answers if a[2] == "A"] == ["10.0.1.10"], before.output
        for host in document["hosts"]:
            if host["private_ipv4"] == "10.0.1.10":
                host["private_ipv4"] = "10.0.1.99"
        document["serial"] += 1
        staged = tmp_path / "mapping.json.new"
        staged.write_text(json.dumps(document))
        staged.replace(mapping)
        serving = f"serving serial {document['serial']}"
        deadline = time.monotonic() + 10
        while serving not in agent.log_text():
            assert time.monotonic() < deadline, agent.log_text()
            time.sleep(0.05)
        after = dig(agent.port, name)
        assert [a[3] for a in after.answers if a[2] == "A"] == ["10.0.1.99"], after.output
    assert len(hostile.queries(name, "udp")) == 2  # asked again after the reload


@needs_tools
def test_cli_passes_a_cname_the_upstream_answered_in_full(
    hostile: HostileUpstream, hostile_cli: int
) -> None:
    result = dig(hostile_cli, "outside.example.test")
    assert result.status == "NOERROR", result.output
    assert [(a[2], a[3]) for a in result.answers] == [
        ("CNAME", "plain.example.test."),
        ("A", "192.0.2.1"),
    ]


@needs_tools
def test_cli_silent_upstream_gives_servfail_while_owned_names_answer_at_once(
    hostile: HostileUpstream, hostile_cli: int
) -> None:
    outcome: list[Dig] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(dig(hostile_cli, "silent.example.test"))
    )
    waiting.start()
    # Load the forwarder with more silent questions, then time owned names meanwhile.
    burst = [make_query(f"n{i}.silent.example.test") for i in range(50)]
    with contextlib.ExitStack() as stack:
        for query in burst:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.sendto(query, ("127.0.0.1", hostile_cli))
        time.sleep(0.3)
        assert waiting.is_alive()  # still waiting on the silent upstream
        owned = dig(hostile_cli, "api")
        assert owned.seconds < 1.0, owned.seconds
        assert {a[3] for a in owned.answers} == OWNED["api"]
        slowest = 0.0
        for _ in range(100):
            started = time.monotonic()
            reply = ask(hostile_cli, "web1.internal")
            slowest = max(slowest, time.monotonic() - started)
            assert reply.header.aa == 1 and reply.rr
        assert slowest < 1.0, slowest
    waiting.join(timeout=15)
    [silent] = outcome
    assert silent.status == "SERVFAIL", silent.output  # never NXDOMAIN
    assert silent.seconds < 6.0, silent.seconds
    assert "EDE: 22 (No Reachable Authority): (upstream 127.0.0.1:" in silent.output
    asked = hostile.queries("silent.example.test")
    assert len(asked) >= 2  # asked again after a timeout, not given up after one datagram
    assert len({q.port for q in asked}) == len(asked)


@needs_tools
def test_cli_serves_a_cached_answer_after_the_upstream_stops(tmp_path: Path) -> None:
    hosts = tmp_path / "upstream.hosts"
    hosts.write_text("192.0.2.60 cached.example.test\n")
    with (
        dnsmasq(f"--addn-hosts={hosts}", "--local-ttl=60") as upstream,
        cli_agent(tmp_path, f"127.0.0.1:{upstream.port}") as agent,
    ):
        first = dig(agent.port, "cached.example.test")
        assert first.status == "NOERROR", first.output
        assert [(a[1], a[3]) for a in first.answers] == [(60, "192.0.2.60")]

        upstream.stop()
        time.sleep(1.1)
        again = dig(agent.port, "CACHED.example.test")
        assert again.status == "NOERROR"
        assert [a[3] for a in again.answers] == ["192.0.2.60"]
        assert again.answers[0][0] == "CACHED.example.test."
        assert 55 <= again.answers[0][1] <= 59  # counted down, not reset
        assert "aa" not in again.flags

        # Not cached and the upstream is gone (ICMP port unreachable): SERVFAIL, quickly.
        gone = dig(agent.port, "never-asked.example.test")
        assert gone.status == "SERVFAIL" and gone.seconds < 6.0
        why = f"(upstream 127.0.0.1:{upstream.port} unreachable (Connection refused))"
        assert f"EDE: 22 (No Reachable Authority): {why}" in gone.output


@pytest.mark.parametrize(
    ("listen", "upstream"),
    [("127.0.0.1:{port}", "127.0.0.1:{port}"), ("127.0.0.53:53", "127.0.0.53")],
)
def test_cli_refuses_an_upstream_that_is_its_own_listen_address(listen: str, upstream: str) -> None:
    port = free_port()
    done = subprocess.run(
        [
            str(TAGDNS),
            "serve",
            "--source",
            str(MAPPING),
            "--view",
            "us-east-1",
            "--cache",
            "none",
            "--listen",
            listen.format(port=port),
            "--upstream",
            upstream.format(port=port),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "forwarding loop" in lines[0] and upstream.format(port=port).split(":")[0] in lines[0]
    assert "Traceback" not in done.stderr


# --- logic on real sockets, in process -------------------------------------------------------


class LoopThread:
    """An event loop in a thread: the agent's pieces run there, the test drives clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    runner.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    """A DnsServer with the example view and a Forwarder, on a kernel-chosen port."""

    port: int
    forwarder: Forwarder
    cache: AnswerCache
    clock: FakeClock = field(default_factory=FakeClock)


@contextlib.contextmanager
def serving(
    loop: LoopThread,
    *upstreams: HostileUpstream | str,
    limits: ForwarderLimits = FAST,
    cache_limits: CacheLimits | None = None,
    udp_batching: bool = True,
    server_limits: ServerLimits | None = None,
) -> Iterator[Served]:
    clock = FakeClock()
    cache = AnswerCache(cache_limits, clock=clock)
    settings = ZoneSettings(view="us-east-1", forwarding=True)
    zone = load_document(MAPPING.read_bytes(), settings).zone

    async def start() -> tuple[DnsServer, Forwarder, Endpoint]:
        endpoints = [parse_endpoint(u if isinstance(u, str) else u.address) for u in upstreams]
        forwarder = Forwarder(endpoints, cache, limits)
        server = DnsServer(
            Responder(zone, forwarding=True, cache=cache),  # as the agent wires it
            allow=[ipaddress.ip_network("127.0.0.0/8")],
            forwarder=forwarder,
            udp_batching=udp_batching,
            limits=server_limits,
        )
        return server, forwarder, await server.listen(Endpoint("127.0.0.1", 0))

    server, forwarder, bound = loop.run(start())
    try:
        yield Served(bound.port, forwarder, cache, clock)
    finally:
        loop.run(server.close())


@pytest.fixture
def upstream() -> Iterator[HostileUpstream]:
    with HostileUpstream() as hostile_upstream:
        yield hostile_upstream


def test_each_upstream_query_has_a_fresh_id_and_source_port(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    names = [f"host{i}.example.test" for i in range(24)]
    for index, name in enumerate(names):
        upstream.add(name, "A", f"192.0.2.{index + 1}")
    with serving(loop_thread, upstream) as served:
        for index, name in enumerate(names):
            assert addresses(ask(served.port, name, qid=4242)) == {f"192.0.2.{index + 1}"}
    seen = upstream.queries()
    assert len(seen) == len(names)
    # The client always used ID 4242: the upstream IDs are ours, random per query.
    assert len({q.qid for q in seen}) >= len(names) - 2
    assert len({q.port for q in seen}) >= len(names) - 2
    assert all(a.port != b.port for a, b in itertools.pairwise(seen))


@pytest.mark.parametrize(
    "mode", [Mode.SPOOF_OTHER_PORT, Mode.WRONG_ID_FIRST, Mode.WRONG_QUESTION_FIRST]
)
def test_forged_replies_are_ignored(
    loop_thread: LoopThread, upstream: HostileUpstream, mode: Mode
) -> None:
    upstream.add("target.example.test", "A", "192.0.2.33")
    upstream.script("target.example.test", mode)
    upstream.delay = 0.1
    with serving(loop_thread, upstream) as served:
        reply = ask(served.port, "target.example.test")
        assert RCODE.get(reply.header.rcode) == "NOERROR"
        assert addresses(reply) == {"192.0.2.33"}
        if mode is not Mode.SPOOF_OTHER_PORT:  # that one the kernel drops for us
            assert served.forwarder.counters.ignored_replies >= 1
        # Nothing forged was cached either.
        assert addresses(ask(served.port, "target.example.test")) == {"192.0.2.33"}
    assert len(upstream.queries("target.example.test")) == 1


def test_truncated_reply_is_asked_again_over_tcp_and_clients_can_use_tcp(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    upstream.add("tc.example.test", "TXT", "x" * 200)
    upstream.script("tc.example.test", Mode.TRUNCATE)
    with serving(loop_thread, upstream) as served:
        reply = ask(served.port, "tc.example.test", "TXT", tcp=True)
        assert reply.header.tc == 0 and len(reply.rr) == 1
        assert served.forwarder.counters.tcp_retries == 1
    assert [q.transport for q in upstream.queries("tc.example.test")] == ["udp", "tcp"]


def test_garbage_moves_on_to_the_next_upstream_and_alone_is_servfail(
    loop_thread: LoopThread,
) -> None:
    """Junk that is not a reply to our query is ignored. A reply with our ID and our
    question whose records do not hold together came from the upstream (our socket
    is connected to it): it failed, so the next upstream is asked at once, where the
    attempt used to be waited out, and the client never sees the broken records."""
    with HostileUpstream(mode=Mode.GARBAGE) as junk, HostileUpstream() as good:
        good.add("www.example.test", "A", "192.0.2.44")
        with serving(loop_thread, junk, good) as served:
            started = time.monotonic()
            reply = ask(served.port, "www.example.test")
            assert addresses(reply) == {"192.0.2.44"}
            assert time.monotonic() - started < FAST.attempt_timeout
            assert served.forwarder.counters.ignored_replies >= 2
            assert served.forwarder.counters.timeouts == 0
        with serving(loop_thread, junk) as served:
            started = time.monotonic()
            raw = exchange(served.port, make_query("www.example.test", edns=1232))
            assert time.monotonic() - started < FAST.attempt_timeout
    reply = DNSRecord.parse(raw)
    assert RCODE.get(reply.header.rcode) == "SERVFAIL" and not reply.rr
    assert b"sent a malformed reply" in raw


def test_an_unreachable_upstream_moves_on_at_once(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    """Nothing listens on the first upstream: the kernel's port-unreachable ends that attempt."""
    upstream.add("www.example.test", "A", "192.0.2.43")
    closed = f"127.0.0.1:{free_port()}"
    with serving(loop_thread, closed, upstream) as served:
        assert addresses(ask(served.port, "www.example.test")) == {"192.0.2.43"}
        counters = served.forwarder.counters  # no timeout was waited: none counted
        assert (counters.timeouts, counters.upstream_errors) == (0, 1)
        assert counters.by_upstream_error == {closed: 1}


@pytest.mark.parametrize("mode", [Mode.REFUSED, Mode.SERVFAIL])
def test_upstream_errors_move_on_at_once_and_end_in_servfail(
    loop_thread: LoopThread, mode: Mode
) -> None:
    with HostileUpstream(mode=mode) as bad, HostileUpstream() as good:
        good.add("www.example.test", "A", "192.0.2.45")
        with serving(loop_thread, bad, good) as served:
            assert addresses(ask(served.port, "www.example.test")) == {"192.0.2.45"}
            assert served.forwarder.counters.timeouts == 0  # moved on at once
        with serving(loop_thread, bad, bad) as served:
            reply = ask(served.port, "www.example.test", edns=1232)
            assert RCODE.get(reply.header.rcode) == "SERVFAIL"  # never NXDOMAIN, never REFUSED
            assert reply.header.ra == 1 and opt_of(reply) is not None
            assert served.forwarder.counters.servfail == 1
            # Reached, but it answered with an error: EDE 0 (Other), saying which.
            assert extended_error(reply) == (
                0,
                f"upstream {bad.address} answered {mode.value.upper()}",
            )
            plain = ask(served.port, "other.example.test")  # no EDNS: no OPT to carry it
            assert RCODE.get(plain.header.rcode) == "SERVFAIL" and opt_of(plain) is None
        # Definitive errors are not retried in a loop: each upstream entry asked once.
        assert len(bad.queries("www.example.test")) == 3


def test_an_upstreams_own_extended_error_is_passed_on_in_the_servfail(
    loop_thread: LoopThread,
) -> None:
    """A validating upstream says why it failed (EDE 6, DNSSEC Bogus): the client
    gets that INFO-CODE, and the upstream's words after its address."""
    with HostileUpstream(mode=Mode.SERVFAIL_EDE) as bad, serving(loop_thread, bad) as served:
        reply = ask(served.port, "bogus.example.test", edns=1232)
        assert RCODE.get(reply.header.rcode) == "SERVFAIL"
        assert extended_error(reply) == (
            EDE_CODE,
            f"upstream {bad.address} answered SERVFAIL (EDE {EDE_CODE}: {EDE_TEXT})",
        )


def test_an_upstreams_extended_error_travels_with_its_answer_fresh_and_cached(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    upstream.script("ads.example.test", Mode.BLOCKED)
    with serving(loop_thread, upstream) as served:
        for _ in range(2):  # from the upstream, then from the cache
            reply = ask(served.port, "ads.example.test", edns=1232)
            assert RCODE.get(reply.header.rcode) == "NXDOMAIN"
            assert extended_error(reply) == (15, BLOCKED_TEXT)
        assert served.forwarder.counters.cache_hits + served.cache.hits == 1
        plain = ask(served.port, "ads.example.test")  # no EDNS: nothing to carry it
        assert RCODE.get(plain.header.rcode) == "NXDOMAIN" and opt_of(plain) is None
    assert len(upstream.queries("ads.example.test")) == 1


def test_a_truncated_reply_cut_inside_a_record_is_asked_again_over_tcp(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    """RFC 1035 4.2.1: a reply with TC may end anywhere, even inside a record."""
    for i in range(1, 41):
        upstream.add("cut.example.test", "A", f"192.0.2.{i}")
    upstream.script("cut.example.test", Mode.CUT_TC)
    with serving(loop_thread, upstream) as served:
        started = time.monotonic()
        reply = ask(served.port, "cut.example.test", tcp=True)
        assert len(reply.rr) == 40 and time.monotonic() - started < FAST.attempt_timeout
        counters = served.forwarder.counters
        assert (counters.tcp_retries, counters.ignored_replies, counters.timeouts) == (1, 0, 0)
    assert [q.transport for q in upstream.queries("cut.example.test")] == ["udp", "tcp"]


@pytest.mark.parametrize("mode", [Mode.BARE_REFUSED, Mode.BADVERS])
def test_error_replies_a_question_or_rcode_cannot_show_move_on_at_once(
    loop_thread: LoopThread, mode: Mode
) -> None:
    """REFUSED without the question (some servers send no question with an error) and
    BADVERS in the OPT's upper RCODE bits (which read alone say NOERROR: a false NODATA)
    are the upstream failing: the next one is asked at once, and alone they are SERVFAIL."""
    with HostileUpstream(mode=mode) as bad, HostileUpstream() as good:
        good.add("www.example.test", "A", "192.0.2.51")
        with serving(loop_thread, bad, good) as served:
            started = time.monotonic()
            assert addresses(ask(served.port, "www.example.test")) == {"192.0.2.51"}
            assert time.monotonic() - started < FAST.attempt_timeout
            counters = served.forwarder.counters
            assert (counters.timeouts, counters.ignored_replies) == (0, 0)
            assert counters.by_upstream_error == {bad.address: 1}
        with serving(loop_thread, bad) as served:
            reply = ask(served.port, "other.example.test")
            assert RCODE.get(reply.header.rcode) == "SERVFAIL" and not reply.rr
            assert served.forwarder.counters.timeouts == 0


def test_an_upstream_without_edns_is_asked_again_plainly(
    loop_thread: LoopThread,
) -> None:
    """RFC 6891 section 7: FORMERR without an OPT to our EDNS query means no EDNS there."""
    with HostileUpstream(mode=Mode.NO_EDNS) as legacy:
        legacy.add("old.example.test", "A", "192.0.2.52")
        with serving(loop_thread, legacy) as served:
            reply = ask(served.port, "old.example.test", edns=1232)
            assert addresses(reply) == {"192.0.2.52"} and opt_of(reply) is not None
            assert served.forwarder.counters.upstream_errors == 0
            assert addresses(ask(served.port, "old.example.test")) == {"192.0.2.52"}  # cached
        assert [q.edns for q in legacy.queries("old.example.test")] == [True, False]


def test_only_the_upstream_without_edns_is_asked_plainly(loop_thread: LoopThread) -> None:
    """The next upstream still gets EDNS, and with it the client's DO bit."""
    with HostileUpstream(mode=Mode.FORMERR_NO_OPT) as legacy, HostileUpstream() as good:
        good.add("signed.example.test", "A", "192.0.2.54")
        with serving(loop_thread, legacy, good) as served:
            assert addresses(ask(served.port, "signed.example.test", edns=1232, do=True)) == {
                "192.0.2.54"
            }
        assert [q.edns for q in legacy.queries()] == [True, False]
        [asked] = good.queries()
        assert asked.edns and asked.do


def test_an_attempt_cut_short_by_the_deadline_does_not_demote_the_upstream(
    loop_thread: LoopThread,
) -> None:
    """A question that waited for a slot has less than an attempt's time left; its
    expiry says nothing about an upstream that answers in more than that."""
    # A full attempt has twice the upstream's delay (a busy machine must not make it
    # time out); the fourth question, after three answered in turn, has less than it.
    limits = ForwarderLimits(attempt_timeout=0.6, total_timeout=1.1, max_in_flight=1)
    with HostileUpstream(mode=Mode.SLOW, delay=0.3) as slow:
        names = [f"q{i}.example.test" for i in range(4)]
        for name in names:
            slow.add(name, "A", "192.0.2.55")
        with serving(loop_thread, slow, limits=limits) as served:
            replies = exchange_many(served.port, [make_query(name) for name in names])
            assert all(reply is not None for reply in replies)
            assert served.forwarder.counters.timeouts >= 1  # the last one was cut short
            assert not served.forwarder.ranking.standings


def test_an_answer_later_than_its_attempt_is_taken_within_the_deadline(
    loop_thread: LoopThread,
) -> None:
    """An upstream slower than an attempt (here 0.4 s against 0.3 s) answered each
    attempt only after its socket was closed for the next one: SERVFAIL at the
    deadline, every time. The attempt that timed out now keeps listening."""
    with HostileUpstream(mode=Mode.SLOW, delay=0.4) as slow:
        slow.add("slow.example.test", "A", "192.0.2.57")
        with serving(loop_thread, slow) as served:
            reply = ask(served.port, "slow.example.test")
            assert served.forwarder.counters.timeouts >= 1
            assert served.forwarder.in_flight == 0
    assert RCODE.get(reply.header.rcode) == "NOERROR"
    assert addresses(reply) == {"192.0.2.57"}


def test_an_upstream_answering_every_question_late_is_not_down(
    loop_thread: LoopThread,
) -> None:
    """Each question's first attempt times out before the late answer comes, so two
    questions under way made every upstream look down and new clients got SERVFAIL,
    for as long as the slow upstream kept answering. Answers heard keep it up."""
    limits = ForwarderLimits(attempt_timeout=0.3, total_timeout=0.9, down_wait=0.05)
    names = [f"s{index}.example.test" for index in range(24)]
    with HostileUpstream(mode=Mode.SLOW, delay=0.4) as slow:
        for name in names:
            slow.add(name, "A", "192.0.2.61")
        with serving(loop_thread, slow, limits=limits) as served:
            replies: list[DNSRecord] = []
            threads = []
            for name in names:
                thread = threading.Thread(target=lambda n=name: replies.append(ask(served.port, n)))
                thread.start()
                threads.append(thread)
                time.sleep(0.05)
            for thread in threads:
                thread.join(10)
    assert len(replies) == len(names)
    assert all(addresses(reply) == {"192.0.2.61"} for reply in replies)


def test_a_late_refusal_is_what_the_servfail_says_not_a_timeout(
    loop_thread: LoopThread,
) -> None:
    """An upstream slower than an attempt that answers REFUSED was reported as "timed
    out": an operator reading the SERVFAIL's reason would look for packet loss."""
    with (
        HostileUpstream(mode=Mode.SLOW_REFUSED, delay=0.4) as refusing,
        serving(loop_thread, refusing) as served,
    ):
        raw = exchange(served.port, make_query("late.example.test", edns=1232))
    assert RCODE.get(DNSRecord.parse(raw).header.rcode) == "SERVFAIL"
    assert b"answered REFUSED" in raw


def test_while_every_upstream_is_down_clients_are_not_kept_waiting(
    loop_thread: LoopThread,
) -> None:
    """glibc tries each search domain in turn and keeps going after SERVFAIL, so with
    the VPC resolver gone a fleet's own bare name waited out the full forwarding
    deadline for every expansion (web2.ec2.internal, ...): 9 to 34 s. Once every
    upstream has timed out twice in a row, a new question is still asked, but its
    client gets SERVFAIL after down_wait; the first answer ends the outage."""
    limits = ForwarderLimits(attempt_timeout=0.3, total_timeout=0.9, down_wait=0.05)
    with HostileUpstream(mode=Mode.SILENT) as upstream:
        for index in range(4):
            upstream.add(f"n{index}.example.test", "A", "192.0.2.59")
        with serving(loop_thread, upstream, limits=limits) as served:
            started = time.monotonic()
            first = ask(served.port, "n0.example.test")
            assert time.monotonic() - started >= 0.8  # the whole deadline: not known down yet
            assert served.forwarder.ranking.all_down()
            time.sleep(0.2)  # quiet for more than a whole deadline since the first question
            started = time.monotonic()
            raw = exchange(served.port, make_query("n1.example.test", edns=1232))
            assert time.monotonic() - started < 0.5
            assert b"every upstream timed out lately" in raw
            upstream.mode = Mode.ANSWER  # back
            # Asked in the background meanwhile: the answer is cached, and ends the outage.
            ask(served.port, "n2.example.test")
            time.sleep(0.2)
            assert not served.forwarder.ranking.all_down()
            assert addresses(ask(served.port, "n2.example.test")) == {"192.0.2.59"}
            assert addresses(ask(served.port, "n3.example.test")) == {"192.0.2.59"}
    assert RCODE.get(first.header.rcode) == "SERVFAIL"
    assert RCODE.get(DNSRecord.parse(raw).header.rcode) == "SERVFAIL"


def test_a_silent_first_upstream_is_asked_after_the_others_for_a_while(
    loop_thread: LoopThread,
) -> None:
    """A blackholed first upstream costs one attempt timeout, not one per cache miss."""
    with HostileUpstream(mode=Mode.SILENT) as silent, HostileUpstream() as good:
        names = [f"n{i}.example.test" for i in range(5)]
        for name in names:
            good.add(name, "A", "192.0.2.53")
        with serving(loop_thread, silent, good) as served:
            started = time.monotonic()
            assert addresses(ask(served.port, names[0])) == {"192.0.2.53"}
            assert time.monotonic() - started >= FAST.attempt_timeout * 0.9
            for name in names[1:]:
                started = time.monotonic()
                assert addresses(ask(served.port, name)) == {"192.0.2.53"}
                assert time.monotonic() - started < FAST.attempt_timeout, name
            assert served.forwarder.counters.timeouts == 1
            assert served.forwarder.ranking.standings[parse_endpoint(silent.address)].timeouts == 1
        assert len(silent.queries()) == 1


def test_silent_upstream_is_retried_until_the_deadline_then_servfail(
    loop_thread: LoopThread,
) -> None:
    with HostileUpstream(mode=Mode.SILENT) as silent:
        with serving(loop_thread, silent) as served:
            started = time.monotonic()
            reply = ask(served.port, "quiet.example.test", edns=1232)
            took = time.monotonic() - started
            assert RCODE.get(reply.header.rcode) == "SERVFAIL"
            assert FAST.total_timeout * 0.9 <= took < FAST.total_timeout + 1.0
            # Why, for whoever reads the reply: no upstream answered at all.
            assert extended_error(reply) == (22, f"upstream {silent.address} timed out")
        seen = silent.queries()
        assert len(seen) in (3, 4)  # total 0.9 s / attempt 0.3 s (timers may fire a hair early)
        assert len({q.port for q in seen}) == len(seen)


def test_an_internal_error_while_forwarding_is_servfail_saying_so_and_serving_goes_on(
    loop_thread: LoopThread, upstream: HostileUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.add("www.example.test", "A", "192.0.2.48")
    with serving(loop_thread, upstream) as served:

        def broken(answer: UpstreamAnswer) -> UpstreamAnswer:
            raise RuntimeError("a bug")

        served.cache.admit = broken  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="tagdns.forwarder"):
            reply = ask(served.port, "www.example.test", edns=1232)
        assert RCODE.get(reply.header.rcode) == "SERVFAIL"
        assert extended_error(reply) == (0, "internal error in the forwarder (logged)")
        assert "internal error forwarding a query" in caplog.text and "a bug" in caplog.text
        assert served.forwarder.counters.internal_errors == 1  # tagdns_internal_errors_total
        owned = ask(served.port, "web1.internal")
        assert owned.header.aa == 1 and owned.rr


def test_closing_the_server_abandons_upstream_queries_in_flight(
    loop_thread: LoopThread,
) -> None:
    with HostileUpstream(mode=Mode.SILENT) as silent:
        with (
            serving(loop_thread, silent) as served,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
        ):
            client.sendto(make_query("quiet.example.test"), ("127.0.0.1", served.port))
            deadline = time.monotonic() + 5
            while served.forwarder.in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert served.forwarder.in_flight == 1
        # Closed: no socket left watched, no timer left to fire a reply later.
        assert served.forwarder.in_flight == 0
        time.sleep(FAST.attempt_timeout + 0.1)
        assert len(silent.queries()) == 1 and served.forwarder.counters.timeouts == 0


def test_a_lost_datagram_is_retried_instead_of_servfail(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    upstream.add("lossy.example.test", "A", "192.0.2.46")
    upstream.script("lossy.example.test", Mode.DROP_FIRST)
    with serving(loop_thread, upstream) as served:
        assert addresses(ask(served.port, "lossy.example.test")) == {"192.0.2.46"}
    assert len(upstream.queries("lossy.example.test")) == 2


@pytest.mark.parametrize("udp_batching", [True, False], ids=["batched", "transport"])
def test_identical_concurrent_questions_share_one_upstream_query(
    loop_thread: LoopThread, upstream: HostileUpstream, udp_batching: bool
) -> None:
    upstream.add("popular.example.test", "A", "192.0.2.47")
    upstream.script("popular.example.test", Mode.SLOW)
    upstream.delay = 0.25
    spellings = ["popular.example.test", "POPULAR.example.test", "Popular.Example.Test"]
    queries = [make_query(spellings[i % 3], qid=1000 + i) for i in range(12)]
    limits = ForwarderLimits(1.0, 3.0)
    with serving(loop_thread, upstream, limits=limits, udp_batching=udp_batching) as served:
        replies = exchange_many(served.port, queries)
        assert served.forwarder.counters.coalesced == 11
    assert len(upstream.queries("popular.example.test")) == 1
    for index, raw in enumerate(replies):
        assert raw is not None
        assert raw[:2] == struct.pack("!H", 1000 + index)  # each client's own ID
        assert raw[12 : 12 + len(queries[index]) - 12] == queries[index][12:]  # its own case
        assert addresses(DNSRecord.parse(raw)) == {"192.0.2.47"}


def test_one_name_asked_in_a_loop_leaves_room_for_other_questions(
    loop_thread: LoopThread,
) -> None:
    """Identical questions share one upstream query, but each waiting client held a
    place among the server's pending UDP forwards: one silent name asked in a tight
    loop took them all, and every other name not owned went unanswered."""
    limits = ForwarderLimits(attempt_timeout=1.0, total_timeout=3.0, max_waiters=4)
    with HostileUpstream() as upstream:
        upstream.script("stuck.example.test", Mode.SILENT)
        upstream.add("other.example.test", "A", "192.0.2.58")
        with serving(
            loop_thread,
            upstream,
            limits=limits,
            server_limits=ServerLimits(udp_max_pending_forwards=8),
        ) as served:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
                for index in range(20):
                    flood.sendto(
                        make_query("stuck.example.test", qid=index), ("127.0.0.1", served.port)
                    )
                time.sleep(0.2)
            reply = ask(served.port, "other.example.test")
            assert len(upstream.queries("stuck.example.test")) == 1
    assert addresses(reply) == {"192.0.2.58"}


def test_the_tcp_cap_evicts_a_connection_waiting_on_a_forward_last(
    loop_thread: LoopThread,
) -> None:
    """A connection whose question is being forwarded is not idle: evicted first (as
    the oldest), its client got nothing for a question already asked (glibc: EAI_AGAIN
    under a burst of TCP lookups with a slow upstream). An idle one goes instead."""
    with HostileUpstream(mode=Mode.SLOW, delay=0.4) as slow:
        slow.add("slow.example.test", "A", "192.0.2.60")
        with serving(
            loop_thread, slow, server_limits=ServerLimits(tcp_max_connections=2)
        ) as served:
            waiting = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            query = make_query("slow.example.test", qid=0x5150)
            waiting.sendall(struct.pack("!H", len(query)) + query)
            time.sleep(0.1)  # asked upstream: the oldest connection, with a forward pending
            idle = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            time.sleep(0.1)
            newest = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            try:
                length = struct.unpack("!H", _recv_exactly(waiting, 2))[0]
                reply = DNSRecord.parse(_recv_exactly(waiting, length))
                assert idle.recv(1) == b""  # the idle one was let go
            finally:
                for sock in (waiting, idle, newest):
                    sock.close()
    assert reply.header.id == 0x5150
    assert addresses(reply) == {"192.0.2.60"}


def test_upstream_queries_in_flight_are_bounded(loop_thread: LoopThread) -> None:
    limits = ForwarderLimits(attempt_timeout=1.0, total_timeout=3.0, max_in_flight=2)
    names = [f"q{i}.example.test" for i in range(6)]
    with HostileUpstream(mode=Mode.SLOW, delay=0.15) as slow:
        for index, name in enumerate(names):
            slow.add(name, "A", f"192.0.2.{index + 100}")
        with serving(loop_thread, slow, limits=limits) as served:
            replies = exchange_many(served.port, [make_query(name) for name in names])
    for index, raw in enumerate(replies):
        assert raw is not None and addresses(DNSRecord.parse(raw)) == {f"192.0.2.{index + 100}"}
    # Each upstream query is outstanding from its arrival until its answer is sent
    # (``delay`` later); a slot frees only when an answer comes back, so never more
    # than two overlap, and the six questions take at least three rounds.
    arrivals = sorted(q.at for q in slow.queries())
    assert len(arrivals) == len(names)
    overlap = max(sum(1 for a in arrivals if a <= t < a + slow.delay) for t in arrivals)
    assert overlap == 2
    assert arrivals[-1] - arrivals[0] >= 2 * slow.delay


def test_cache_counts_ttls_down_and_replays_with_the_clients_id_and_case(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    upstream.add("ttl.example.test", "A", "192.0.2.48", ttl=300)
    with serving(loop_thread, upstream) as served:
        first = ask(served.port, "ttl.example.test", qid=1)
        assert [rr.ttl for rr in first.rr] == [300]
        served.clock.now += 100
        query = make_query("TTL.Example.TEST", qid=2)
        raw = exchange(served.port, query)
        assert raw[:2] == b"\x00\x02" and raw[12 : len(query)] == query[12:]
        again = DNSRecord.parse(raw)
        assert [rr.ttl for rr in again.rr] == [200] and addresses(again) == {"192.0.2.48"}
        assert again.header.aa == 0 and again.header.ra == 1
        assert served.cache.hits == 1  # on the responder's fast path or the forwarder's
        assert len(upstream.queries("ttl.example.test")) == 1
        served.clock.now += 201  # expired
        assert [rr.ttl for rr in ask(served.port, "ttl.example.test").rr] == [300]
        assert len(upstream.queries("ttl.example.test")) == 2


def test_negative_answers_are_cached_for_the_soa_minimum(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    upstream.soa_ttl, upstream.soa_minimum = 300, 60  # RFC 2308: min(SOA TTL, minimum)
    with serving(loop_thread, upstream) as served:
        first = ask(served.port, "absent.example.test")
        assert RCODE.get(first.header.rcode) == "NXDOMAIN"
        # The SOA tells the negative lifetime, not its own TTL (RFC 2308 section 5):
        # a downstream cache must not keep the NXDOMAIN for 300 s.
        assert [rr.ttl for rr in first.auth] == [60]
        served.clock.now += 59
        cached = ask(served.port, "absent.example.test")
        assert RCODE.get(cached.header.rcode) == "NXDOMAIN"
        assert [rr.ttl for rr in cached.auth] == [1]
        assert len(upstream.queries("absent.example.test")) == 1
        served.clock.now += 2
        ask(served.port, "absent.example.test")
        assert len(upstream.queries("absent.example.test")) == 2


def test_cache_ttl_cap_bounds_what_clients_are_told(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    upstream.add("long.example.test", "A", "192.0.2.49", ttl=86400)
    with serving(loop_thread, upstream, cache_limits=CacheLimits(max_ttl=50)) as served:
        # The first client too: not told it may keep what the cache drops in 50 s.
        assert [rr.ttl for rr in ask(served.port, "long.example.test").rr] == [50]
        served.clock.now += 10
        assert [rr.ttl for rr in ask(served.port, "long.example.test").rr] == [40]
        served.clock.now += 41
        ask(served.port, "long.example.test")
        assert len(upstream.queries("long.example.test")) == 2


def test_edns_and_header_flags_are_passed_on_sensibly(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    upstream.add("flags.example.test", "A", "192.0.2.50")
    with serving(loop_thread, upstream) as served:
        plain = ask(served.port, "flags.example.test", rd=False)
        assert opt_of(plain) is None  # no EDNS from the client, none back
        assert (plain.header.aa, plain.header.ra, plain.header.rd, plain.header.ad) == (0, 1, 0, 0)

        with_do = ask(served.port, "flags.example.test", edns=4096, do=True)
        opt = opt_of(with_do)
        assert opt is not None and opt.ttl & 0x8000 and opt.rclass == 1232
        assert with_do.header.ad == 1 and with_do.header.aa == 0  # AD: the client asked (DO)

        # AD without DO, as glibc asks with `options edns0 trust-ad`: the upstream
        # says AD only when asked, so our upstream query must ask (RFC 6840 5.7).
        ad_only = ask(served.port, "flags.example.test", edns=1232, ad=True)
        opt = opt_of(ad_only)
        assert opt is not None and not opt.ttl & 0x8000
        assert ad_only.header.ad == 1

        no_ad = ask(served.port, "flags.example.test", edns=1232)
        assert no_ad.header.ad == 0

        checking_disabled = ask(served.port, "flags.example.test", edns=1232, cd=True)
        assert checking_disabled.header.cd == 1
    seen = upstream.queries("flags.example.test")
    # DO and CD each make a separate cache entry: three upstream queries for five asks.
    assert [(q.do, q.cd) for q in seen] == [(False, False), (True, False), (False, True)]
    assert all(q.edns and q.payload == 1232 and q.rd and q.ad for q in seen)


def test_answers_larger_than_the_client_limit_are_truncated_over_udp_only(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    for index in range(60):
        upstream.add("big.example.test", "A", f"192.0.2.{index + 1}")
    with serving(loop_thread, upstream) as served:
        udp = ask(served.port, "big.example.test")  # no EDNS: 512 bytes
        assert udp.header.tc == 1 and not udp.rr and udp.header.aa == 0
        tcp = ask(served.port, "big.example.test", tcp=True)
        assert tcp.header.tc == 0 and len(tcp.rr) == 60
        edns = ask(served.port, "big.example.test", edns=1232)
        assert edns.header.tc == 0 and len(edns.rr) == 60


def test_cache_is_flushed_for_names_the_view_starts_owning(
    loop_thread: LoopThread, upstream: HostileUpstream, tmp_path: Path
) -> None:
    upstream.add("newbox.internal", "A", "192.0.2.51")
    document = json.loads(MAPPING.read_text())
    source = tmp_path / "mapping.json"
    source.write_text(json.dumps(document))
    plan = AgentPlan(
        source=parse_source(str(source)),
        settings=ZoneSettings(view="us-east-1", forwarding=True),
        listen=(Endpoint("127.0.0.1", 0),),
        allow=(ipaddress.ip_network("127.0.0.0/8"),),
        upstreams=(parse_endpoint(upstream.address),),
    )
    agent = Agent(plan)
    [bound] = loop_thread.run(agent.start())
    try:
        assert addresses(ask(bound.port, "newbox.internal")) == {"192.0.2.51"}
        # Stored just after the reply went out, on the loop's thread, not this one.
        deadline = time.monotonic() + 2.0
        while len(agent.cache) != 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(agent.cache) == 1

        newbox: dict[str, object] = {
            "az": "us-east-1a",
            "instance_id": "i-000000000000000ff",
            "ipv6": [],
            "name": "newbox",
            "private_ipv4": "10.0.9.9",
            "public_ipv4": None,
            "region": "us-east-1",
        }
        owning = dict(document, serial=document["serial"] + 1, hosts=[*document["hosts"], newbox])
        source.write_text(json.dumps(owning))
        loop_thread.run(agent.refresh(force=True))
        assert agent.loaded is not None and agent.loaded.facts.serial == owning["serial"]
        assert len(agent.cache) == 0
        owned = ask(bound.port, "newbox.internal")
        assert addresses(owned) == {"10.0.9.9"} and owned.header.aa == 1

        source.write_text(json.dumps(dict(document, serial=document["serial"] + 2)))
        loop_thread.run(agent.refresh(force=True))
        assert agent.loaded.facts.serial == document["serial"] + 2
        # No longer owned: asked upstream afresh, not answered from the old cache entry.
        assert addresses(ask(bound.port, "newbox.internal")) == {"192.0.2.51"}
        assert len(upstream.queries("newbox.internal")) == 2
    finally:
        assert agent.server is not None
        loop_thread.run(agent.server.close())


@pytest.mark.parametrize("qtype", ["HTTPS", "AAAA", "MX"])
def test_other_types_are_forwarded_including_https(
    loop_thread: LoopThread, upstream: HostileUpstream, qtype: str
) -> None:
    """HTTPS is type 65, the byte 'A': replies for it were once lowercased into 'not ours'."""
    upstream.add("svc.example.test", "A", "192.0.2.52")
    with serving(loop_thread, upstream) as served:
        reply = ask(served.port, "svc.example.test", qtype, edns=1232)
        assert served.forwarder.counters.timeouts == 0
        assert RCODE.get(reply.header.rcode) == "NOERROR" and not reply.rr  # NODATA
        assert [QTYPE.get(rr.rtype) for rr in reply.auth] == ["SOA"]
        assert served.forwarder.counters.ignored_replies == 0


def test_cached_answers_are_never_served_for_another_type(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    upstream.add("alias.example.test", "A", "192.0.2.53")
    with serving(loop_thread, upstream) as served:
        ask(served.port, "alias.example.test", "TYPE97")  # NODATA, cached for the SOA minimum
        reply = ask(served.port, "alias.example.test", "HTTPS")
        assert reply.q.qtype == QTYPE.HTTPS
    # The HTTPS question must reach the upstream, not be answered from type 97's entry.
    assert [q.qtype for q in upstream.queries("alias.example.test")] == [97, 65]


def test_attempt_timeouts_stay_exact_among_many_answered_and_staggered_queries(
    loop_thread: LoopThread, upstream: HostileUpstream
) -> None:
    # Many answered misses leave their timeouts cancelled (dropped in bulk); questions
    # to a silent upstream, started at different moments, each still time out on time.
    names = [f"a{i}.example.test" for i in range(150)]
    for index, name in enumerate(names):
        upstream.add(name, "A", f"192.0.2.{index % 250 + 1}")
    upstream.script("mute1.example.test", Mode.SILENT)
    upstream.script("mute2.example.test", Mode.SILENT)
    with serving(loop_thread, upstream) as served:
        replies = exchange_many(served.port, [make_query(name) for name in names])
        assert all(raw is not None for raw in replies)
        results: dict[str, tuple[str, float]] = {}

        def asker(name: str) -> None:
            started = time.monotonic()
            reply = ask(served.port, name)
            results[name] = (RCODE.get(reply.header.rcode), time.monotonic() - started)

        first = threading.Thread(target=asker, args=("mute1.example.test",))
        first.start()
        time.sleep(FAST.attempt_timeout / 2)  # the second's timeouts fall between the first's
        second = threading.Thread(target=asker, args=("mute2.example.test",))
        second.start()
        assert addresses(ask(served.port, "a0.example.test")) == {"192.0.2.1"}  # cached
        first.join(timeout=10)
        second.join(timeout=10)
        for rcode, took in results.values():
            assert rcode == "SERVFAIL"
            assert FAST.total_timeout * 0.9 <= took < FAST.total_timeout + 1.0
        assert served.forwarder.in_flight == 0
    for name in ("mute1.example.test", "mute2.example.test"):
        assert len(upstream.queries(name)) in (3, 4)  # asked again after each timeout


def test_new_upstreams_keep_the_record_of_those_still_listed() -> None:
    """A SIGHUP that re-reads resolv.conf must not send the next misses to a dead one."""
    a, b, c = (Endpoint(f"10.0.0.{i}", 53) for i in (1, 2, 3))
    forwarder = Forwarder([a, b], AnswerCache())
    forwarder.ranking.timed_out(a, 0.0)
    forwarder.use_upstreams([a, c])
    assert forwarder.upstreams == (a, c) and forwarder.ranking.order(1.0) == (c, a)
    forwarder.use_upstreams([c])
    assert not forwarder.ranking.standings


def test_new_upstreams_let_go_of_the_addresses_of_those_dropped() -> None:
    """Upstreams re-chosen on every SIGHUP must not pile up for the agent's life."""
    a, b, c = (Endpoint(f"10.0.0.{i}", 53) for i in (1, 2, 3))
    forwarder = Forwarder([a, b], AnswerCache())
    for upstream in (a, b):
        forwarder._address(upstream)
    forwarder.use_upstreams([b, c])
    assert set(forwarder._addresses) == {b}
    assert forwarder._address(a)[1] == ("10.0.0.1", 53)  # a question under way still gets one
