"""The DNS agent on real sockets: ``tagdns serve`` checked with dig, kdig and raw sockets.

Limits the command line does not expose (idle timeout, connection cap, allow-list)
are checked on a ``DnsServer`` in this process, on its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dnslib import DNSRecord

from resolver.adapters.dns_server import DnsServer, ServerLimits
from resolver.adapters.last_known_good import LastKnownGood
from resolver.core import wire
from resolver.core.endpoints import Endpoint
from resolver.core.responder import MAX_QUERY_BYTES, Question, Responder, error_reply
from tests.core.dns_helpers import header, opt, query, question, question_of, reply_question
from tests.integration.dns_helpers import (
    EXAMPLE_MAPPING,
    EXAMPLE_SERVE_ARGS,
    LOOPBACK,
    TAGDNS,
    AgentProcess,
    ThreadedServer,
    example_responder,
    frame,
    many_connections,
    recv_frame,
    run_tool,
    tcp_connect,
    tcp_exchange,
    udp_exchange,
    wait_closed,
)

pytestmark = pytest.mark.integration

A, SOA, PTR, MX, AAAA = 1, 6, 12, 15, 28
CACHE_A = [f"10.0.3.{i}" for i in range(1, 41)]
TOOLS = [
    pytest.param(
        tool, marks=pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} not installed")
    )
    for tool in ("dig", "kdig")
]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path_factory.mktemp("agent"))
    yield process
    code = process.terminate()
    assert code == 0, process.stderr


def parse(reply: bytes | None) -> DNSRecord:
    assert reply is not None, "no reply"
    return DNSRecord.parse(reply)


def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Wait for a condition the server reaches asynchronously (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- dig and kdig ----------------------------------------------------------------------------

TOOL_CASES = [
    ("A-bare", ["web1", "A"], "NOERROR", ["10.0.1.10"], None),
    ("A-qualified", ["web1.internal", "A"], "NOERROR", ["10.0.1.10"], None),
    ("AAAA", ["web1.internal", "AAAA"], "NOERROR", ["2600:1f18:1::10"], None),
    ("two-instances", ["api", "A"], "NOERROR", ["10.0.1.10", "10.0.2.21"], None),
    ("remote-public", ["db", "A"], "NOERROR", ["34.240.0.5"], None),
    ("nodata-AAAA", ["web2.internal", "AAAA"], "NOERROR", [], "internal."),
    ("nodata-MX", ["web1", "MX"], "NOERROR", [], "web1."),
    ("ptr-v4", ["-x", "10.0.1.10"], "NOERROR", ["api.internal."], None),
    ("ptr-v6", ["-x", "2600:1f18:1::10"], "NOERROR", ["api.internal."], None),
    ("ptr-single", ["-x", "10.0.2.20"], "NOERROR", ["web2.internal."], None),
    ("not-owned", ["example.com", "A"], "REFUSED", [], None),
    ("aws-name", ["ip-10-0-0-1.ec2.internal", "A"], "REFUSED", [], None),
    ("remote-qualified", ["db.internal", "A"], "REFUSED", [], None),
    ("remote-public-ptr", ["-x", "34.240.0.5"], "REFUSED", [], None),
    ("tcp-40-addresses", ["+tcp", "cache", "A"], "NOERROR", CACHE_A, None),
    ("qtype-ANY", ["web1", "ANY"], "NOERROR", ["10.0.1.10", "2600:1f18:1::10"], None),
    ("qtype-ANY-reverse", ["20.2.0.10.in-addr.arpa", "ANY"], "NOERROR", ["web2.internal."], None),
    ("class-ANY", ["-c", "ANY", "-t", "A", "web1"], "NOERROR", ["10.0.1.10"], None),
    ("class-CH", ["-c", "CH", "-t", "TXT", "version.bind"], "REFUSED", [], None),
]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    ("args", "status", "rdatas", "soa_owner"),
    [case[1:] for case in TOOL_CASES],
    ids=[case[0] for case in TOOL_CASES],
)
def test_tools(
    agent: AgentProcess,
    tool: str,
    args: list[str],
    status: str,
    rdatas: list[str],
    soa_owner: str | None,
) -> None:
    answer = run_tool(tool, agent.host, agent.port, *args)
    assert answer.status == status, answer.text
    assert "qr" in answer.flags
    assert "ra" not in answer.flags, "no recursion with --upstream none"
    assert ("aa" in answer.flags) == (status == "NOERROR"), answer.text
    assert "tc" not in answer.flags
    assert answer.rdatas == rdatas, answer.text
    assert all(record.ttl == 30 for record in answer.answer)
    if soa_owner is None:
        assert answer.authority == []
    else:
        (soa,) = answer.authority
        assert (soa.owner, soa.ttl, soa.rtype) == (soa_owner, 30, "SOA")
        assert soa.rdata.split()[0] == "tagdns.internal."


@pytest.mark.parametrize(
    ("tool", "args", "line"),
    [
        pytest.param(
            "dig",
            ["example.com"],
            "; EDE: 20 (Not Authoritative): (nothing is forwarded: upstream none)",
            marks=TOOLS[0].marks,
        ),
        pytest.param(
            "kdig",
            ["+edns", "-c", "ANY", "-t", "A", "example.com"],  # the slow path
            ";; EDE: 20 (Not Authoritative): 'nothing is forwarded: upstream none'",
            marks=TOOLS[1].marks,
        ),
    ],
    ids=["dig", "kdig-class-any"],
)
def test_a_refused_name_says_why(
    agent: AgentProcess, tool: str, args: list[str], line: str
) -> None:
    answer = run_tool(tool, agent.host, agent.port, *args)
    assert answer.status == "REFUSED", answer.text
    assert line in answer.text.splitlines(), answer.text


def test_dig_echoes_the_question_case(agent: AgentProcess) -> None:
    answer = run_tool("dig", agent.host, agent.port, "WeB1.InTeRnAl", "A")
    assert answer.question == "WeB1.InTeRnAl."
    assert [(r.owner, r.rdata) for r in answer.answer] == [("WeB1.InTeRnAl.", "10.0.1.10")]
    assert "aa" in answer.flags


def test_dig_without_edns_gets_tc_then_retries_over_tcp(agent: AgentProcess) -> None:
    truncated = run_tool("dig", agent.host, agent.port, "+noedns", "+ignore", "cache")
    assert "tc" in truncated.flags and truncated.answer == []
    retried = run_tool("dig", agent.host, agent.port, "+noedns", "cache")
    assert "Truncated, retrying in TCP mode" in retried.text
    assert "tc" not in retried.flags and retried.rdatas == CACHE_A


def test_kdig_without_edns_gets_tc(agent: AgentProcess) -> None:
    truncated = run_tool("kdig", agent.host, agent.port, "+ignore", "cache")
    assert "tc" in truncated.flags and truncated.answer == []
    retried = run_tool("kdig", agent.host, agent.port, "cache")
    assert retried.rdatas == CACHE_A


def test_dig_edns_answer_fits_in_1232(agent: AgentProcess) -> None:
    answer = run_tool("dig", agent.host, agent.port, "+bufsize=4096", "+dnssec", "cache")
    assert "tc" not in answer.flags and answer.rdatas == CACHE_A
    assert "udp: 1232" in answer.edns and "flags: do" in answer.edns
    assert "(UDP)" in answer.text


def test_kdig_edns_version_1_is_badvers(agent: AgentProcess) -> None:
    answer = run_tool("kdig", agent.host, agent.port, "+edns=1", "web1")
    assert answer.status == "BADVERS" and answer.answer == []


def test_dig_without_rd(agent: AgentProcess) -> None:
    answer = run_tool("dig", agent.host, agent.port, "+norecurse", "web1")
    assert answer.flags == {"qr", "aa"}


# -- raw sockets against the agent -----------------------------------------------------------


def test_udp_answer_echoes_id_and_case(agent: AgentProcess) -> None:
    data = query("WeB1.InTeRnAl", A, qid=0xA1B2)
    raw = udp_exchange(agent.host, agent.port, data)
    reply = parse(raw)
    assert raw is not None and raw[:2] == b"\xa1\xb2"
    assert reply_question(raw) == question_of(data)
    assert reply.header.aa == 1 and [str(rr.rdata) for rr in reply.rr] == ["10.0.1.10"]


@pytest.mark.parametrize(
    ("data", "rcode", "answers", "authority"),
    [
        (query("web2", AAAA), 0, 0, 1),
        (query("web1", MX, edns=opt()), 0, 0, 1),
        (query(ipaddress.ip_address("2600:1f18:1::10").reverse_pointer, PTR), 0, 1, 0),
        (query("unknown.internal"), 5, 0, 0),
    ],
    ids=["nodata-AAAA", "nodata-MX-edns", "ptr-v6", "refused"],
)
def test_udp_and_tcp_agree(
    agent: AgentProcess, data: bytes, rcode: int, answers: int, authority: int
) -> None:
    over_udp = udp_exchange(agent.host, agent.port, data)
    over_tcp = tcp_exchange(agent.host, agent.port, data)
    assert over_udp == over_tcp
    reply = parse(over_udp)
    assert (reply.header.rcode, len(reply.rr), len(reply.auth)) == (rcode, answers, authority)
    if authority:
        assert reply.auth[0].rtype == SOA


def test_truncated_over_udp_then_full_over_tcp(agent: AgentProcess) -> None:
    data = query("cache", qid=0x0C0C)
    raw = udp_exchange(agent.host, agent.port, data)
    truncated = parse(raw)
    assert raw is not None and len(raw) <= 512
    assert truncated.header.tc == 1 and truncated.rr == []
    full = parse(tcp_exchange(agent.host, agent.port, data))
    assert full.header.tc == 0 and full.header.id == 0x0C0C
    assert [str(rr.rdata) for rr in full.rr] == CACHE_A


def test_twenty_pipelined_tcp_queries_in_one_send(agent: AgentProcess) -> None:
    names = ["web1", "api.internal", "cache", "example.com", "db", "web2"] * 4
    queries = {1000 + i: query(name, A, qid=1000 + i) for i, name in enumerate(names[:20])}
    with tcp_connect(agent.host, agent.port) as sock:
        sock.sendall(b"".join(frame(data) for data in queries.values()))
        replies = [recv_frame(sock) for _ in queries]
    by_id = {struct.unpack("!H", reply[:2])[0]: reply for reply in replies}
    assert set(by_id) == set(queries)
    for qid, reply in by_id.items():
        assert reply_question(reply) == question_of(queries[qid])
        record = DNSRecord.parse(reply)
        expected_rcode = 5 if str(record.q.qname) == "example.com." else 0
        assert record.header.rcode == expected_rcode
        assert record.header.tc == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("data", "rcode"),
    [
        (header(qd=2) + question("web1") + question("web2"), 1),
        (header(qd=0), 1),
        (header() + b"\xc0\x0c\x00\x01\x00\x01", 1),
        (header(ar=2) + question("web1") + opt() + opt(), 1),
        (header(flags=0x1000) + question("web1"), 4),
        (header(flags=0x2000) + question("web1"), 4),
        (header(flags=0x2800) + question("web1"), 4),
    ],
    ids=["qdcount-2", "qdcount-0", "pointer", "two-opt", "opcode-2", "opcode-4", "opcode-5"],
)
def test_formerr_and_notimp(agent: AgentProcess, transport: str, data: bytes, rcode: int) -> None:
    if transport == "udp":
        raw = udp_exchange(agent.host, agent.port, data)
    else:
        raw = tcp_exchange(agent.host, agent.port, data)
    assert raw is not None
    assert raw[:2] == data[:2] and raw[2] & 0x80
    assert raw[3] & 0x0F == rcode
    assert (raw[2] & 0x78) == (data[2] & 0x78), "opcode echoed"


def test_huge_query_of_pointer_chains_is_cheap(agent: AgentProcess) -> None:
    """64 KB of additional records pointing into a pointer chain: once 30 s of CPU per query."""
    base = 12 + len(question("web1"))
    chain = bytearray(b"\x01x\x00")
    previous = start = base + 11
    for _ in range(400):
        offset = start + len(chain)
        chain += struct.pack("!H", 0xC000 | previous)
        previous = offset
    first = b"\x00" + struct.pack("!HHIH", 65280, 1, 0, len(chain)) + bytes(chain)
    record = struct.pack("!H", 0xC000 | previous) + struct.pack("!HHIH", 65280, 1, 0, 1) + b"z"
    count = (65535 - base - len(first) - 12) // len(record)
    data = header(qid=0x6464, ar=1 + count) + question("web1") + first + record * count
    with tcp_connect(agent.host, agent.port, timeout=10.0) as sock:
        sock.sendall(frame(data))
        # Meanwhile another client is served: the loop was not blocked for long.
        assert parse(udp_exchange(agent.host, agent.port, query("web2"), timeout=10.0)).rr
        reply = DNSRecord.parse(recv_frame(sock))
    # Now FORMERR from the header alone: longer than any query may be (4 KB).
    assert reply.header.id == 0x6464 and reply.header.rcode == wire.FORMERR


def test_responses_and_runts_are_dropped_silently(agent: AgentProcess) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for junk in (header(flags=0x8000) + question("web1"), b"\x00" * 11, b""):
            sock.sendto(junk, (agent.host, agent.port))
            with pytest.raises(TimeoutError):
                sock.recv(65535)
        # The same socket still gets answers: silence was a choice, not a dead server.
        sock.settimeout(3.0)
        sock.sendto(query("web1", qid=0x5151), (agent.host, agent.port))
        assert sock.recv(65535)[:2] == b"\x51\x51"


def test_garbage_tcp_frames_keep_the_connection(agent: AgentProcess) -> None:
    noise = random.Random(7).randbytes(50)
    with tcp_connect(agent.host, agent.port) as sock:
        sock.sendall(frame(b""))  # zero-length frame
        sock.sendall(frame(noise))  # random bytes
        sock.sendall(frame(header(flags=0x8000) + question("web1")))  # a response: dropped
        sock.sendall(frame(b"\x01\x02\x03"))  # a runt
        sock.sendall(frame(query("web2", qid=0x7777)))
        for _ in range(3):  # the noise may earn a FORMERR first; nothing else answers
            reply = recv_frame(sock)
            if reply[:2] == b"\x77\x77":
                break
        else:
            pytest.fail("the query after the garbage was not answered")
        assert [str(rr.rdata) for rr in DNSRecord.parse(reply).rr] == ["10.0.2.20"]
    # And the server is still there for everyone else.
    assert parse(udp_exchange(agent.host, agent.port, query("web1"))).rr


def test_a_tcp_message_longer_than_a_udp_one_may_be_is_formerr_from_its_header(
    agent: AgentProcess,
) -> None:
    """The same bound as a datagram's: no message costs more to answer than 4 KB does."""
    oversize = query("web1", qid=0x7A7A) + b"\x00" * MAX_QUERY_BYTES
    largest = query("web1", qid=0x7B7B) + b"\x00" * (MAX_QUERY_BYTES - len(query("web1")))
    with tcp_connect(agent.host, agent.port) as sock:
        sock.sendall(frame(oversize) + frame(largest))
        cut, whole = recv_frame(sock), recv_frame(sock)
    assert cut[:2] == b"\x7a\x7a" and cut[3] & 0x0F == wire.FORMERR
    assert cut[4:12] == b"\x00" * 8, "header only, as for a datagram that arrived cut"
    assert [str(rr.rdata) for rr in DNSRecord.parse(whole).rr] == ["10.0.1.10"]


def test_300_idle_connections_do_not_lock_out_new_clients(agent: AgentProcess) -> None:
    with many_connections(agent.host, agent.port, 300) as idle:
        assert len(idle) == 300
        tcp = parse(tcp_exchange(agent.host, agent.port, query("web1", qid=0x3000)))
        udp = parse(udp_exchange(agent.host, agent.port, query("web1", qid=0x3001)))
        assert tcp.header.id == 0x3000 and tcp.rr
        assert udp.header.id == 0x3001 and udp.rr
        assert wait_closed(idle[0], 5.0), "the oldest idle connection is evicted (cap 256)"


def test_sigterm_exits_zero(tmp_path: Path) -> None:
    process = AgentProcess(tmp_path)
    assert parse(udp_exchange(process.host, process.port, query("web1"))).rr
    code = process.terminate(timeout=5.0)
    assert code == 0, process.stderr
    assert "stopped" in process.stderr
    assert "Traceback" not in process.stderr


def test_a_taken_port_is_one_error_line_and_exit_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        listen = ("--listen", f"127.0.0.1:{port}", "--metrics", "none", "--log-level", "info")
        result = subprocess.run(
            [str(TAGDNS), "serve", *EXAMPLE_SERVE_ARGS, *listen],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"tagdns: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_a_taken_port_with_a_cached_copy_never_says_serving(tmp_path: Path) -> None:
    """The last-known-good copy is loaded before the listeners are bound: its log
    line must not claim a service that the taken port then ends."""
    cache = tmp_path / "mapping.json"
    LastKnownGood(cache, str(EXAMPLE_MAPPING)).save(EXAMPLE_MAPPING.read_bytes())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                str(TAGDNS),
                "serve",
                *("--source", str(EXAMPLE_MAPPING), "--view", "us-east-1"),
                *("--upstream", "none", "--cache", str(cache), "--metrics", "none"),
                *("--listen", f"127.0.0.1:{port}", "--log-level", "info"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "loaded serial 1764076800 (was none) from cache" in result.stderr
    assert "serving serial" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"tagdns: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback in this kernel/namespace")
def test_ipv6_listen(tmp_path: Path) -> None:
    process = AgentProcess(tmp_path, listen="[::1]:0")
    try:
        assert process.host == "::1"
        udp = parse(udp_exchange("::1", process.port, query("web1", AAAA)))
        tcp = parse(tcp_exchange("::1", process.port, query("cache")))
        assert [str(rr.rdata) for rr in udp.rr] == ["2600:1f18:1::10"]
        assert len(tcp.rr) == 40
        if shutil.which("dig"):
            answer = run_tool("dig", "::1", process.port, "web1.internal", "A")
            assert answer.rdatas == ["10.0.1.10"] and "aa" in answer.flags
    finally:
        assert process.terminate() == 0, process.stderr


# -- limits, on a server in this process -------------------------------------------------------


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _uvloop_factory() -> LoopFactory:
    uvloop = pytest.importorskip("uvloop")
    factory: LoopFactory = uvloop.new_event_loop
    return factory


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """Both event loops: asyncio's, and uvloop's, which ``tagdns serve`` runs on."""
    if request.param == "uvloop":
        return _uvloop_factory()
    return asyncio.new_event_loop


@pytest.fixture(params=[True, False], ids=["batched", "transport"])
def udp_batching(request: pytest.FixtureRequest) -> bool:
    """Both UDP paths: recvmmsg batches (Linux) and asyncio's datagram transport."""
    batching: bool = request.param
    return batching


def test_incomplete_tcp_message_is_closed_after_the_idle_timeout(
    loop_factory: LoopFactory,
) -> None:
    limits = ServerLimits(tcp_idle_timeout=0.5)
    with ThreadedServer(
        example_responder(), allow=LOOPBACK, limits=limits, loop_factory=loop_factory
    ) as server:
        with tcp_connect(server.host, server.port) as answered:
            # A complete query is answered, then the connection idles out too.
            answered.sendall(frame(query("web1")))
            assert recv_frame(answered)
            with tcp_connect(server.host, server.port) as stalled:
                stalled.sendall(b"\x00\x40" + query("web1")[:10])  # 64 announced, 10 sent
                assert wait_closed(stalled, 5.0), "a message that never completes is cut off"
            assert wait_closed(answered, 5.0)
        assert server.server is not None
        counters = server.server.counters
        assert until(lambda: counters.tcp_idle_closes >= 2)
        assert until(lambda: server.server is not None and server.server.tcp_connections == 0)


def test_connection_cap_evicts_the_oldest(loop_factory: LoopFactory, udp_batching: bool) -> None:
    limits = ServerLimits(tcp_max_connections=50)
    with ThreadedServer(
        example_responder(),
        allow=LOOPBACK,
        limits=limits,
        loop_factory=loop_factory,
        udp_batching=udp_batching,
    ) as server:
        assert server.server is not None
        dns = server.server
        with many_connections(server.host, server.port, 300) as idle:
            assert until(lambda: dns.tcp_connections + dns.counters.tcp_evictions >= 300)
            tcp = parse(tcp_exchange(server.host, server.port, query("api", qid=0x4000)))
            udp = parse(udp_exchange(server.host, server.port, query("api", qid=0x4001)))
            assert tcp.header.id == 0x4000 and len(tcp.rr) == 2
            assert udp.header.id == 0x4001 and len(udp.rr) == 2
            assert dns.tcp_connections <= 50
            assert dns.counters.tcp_evictions >= 250
            assert wait_closed(idle[0], 5.0), "the oldest connection was evicted"
            with tcp_connect(server.host, server.port) as newest:
                newest.sendall(frame(query("web1", qid=0x4002)))
                assert recv_frame(newest)[:2] == b"\x40\x02"


def test_the_tcp_listen_queue_holds_a_burst_the_cap_admits(
    loop_factory: LoopFactory, udp_batching: bool
) -> None:
    """asyncio's default backlog of 100 dropped SYNs of a burst of glibc's TCP retries,
    each then waiting out a retransmit (1 s and more) though the cap had room."""
    with ThreadedServer(
        example_responder(), allow=LOOPBACK, loop_factory=loop_factory, udp_batching=udp_batching
    ) as server:
        listing = subprocess.run(
            ["ss", "-ltnH", f"sport = :{server.port}"],
            capture_output=True, text=True, check=True, timeout=10,
        )  # fmt: skip
    (line,) = listing.stdout.splitlines()
    backlog = int(line.split()[2])  # Send-Q of a listening socket: its backlog
    assert backlog >= min(1024, int(Path("/proc/sys/net/core/somaxconn").read_text()))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _kernel_sockets(port: int) -> list[str]:
    """TCP sockets on the server's side of ``port`` other than its listener (ss)."""
    shown = subprocess.run(
        [shutil.which("ss") or "/usr/bin/ss", "-Htan", "sport", "=", f":{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in shown.splitlines() if not line.startswith("LISTEN")]


@contextlib.contextmanager
def _non_reader(host: str, port: int, queries: int = 20_000) -> Iterator[socket.socket]:
    """A client that pipelines queries with large answers (the 40-address ``cache``) and
    never reads one; its receive buffer kept small."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, port))
        sock.settimeout(1.0)
        payload = b"".join(frame(query("cache", qid=i & 0xFFFF)) for i in range(queries))
        with contextlib.suppress(TimeoutError):  # the server stops reading: so be it
            sock.sendall(payload)
        yield sock
    finally:
        sock.close()


@pytest.mark.parametrize("queries", [20_000, 1_000], ids=["past-the-kernel", "in-the-kernel"])
def test_a_client_that_never_reads_holds_little_and_is_let_go_whole(queries: int) -> None:
    """Its replies queued in the agent stay within one transport's high-water mark, and
    the idle timeout ends the connection at once rather than waiting for it to read,
    whether its unread replies wait in the agent or (fewer) in the kernel alone."""
    limits = ServerLimits(tcp_idle_timeout=1.0)
    with ThreadedServer(example_responder(), allow=LOOPBACK, limits=limits) as server:
        dns = server.server
        assert dns is not None

        async def unsent() -> list[int]:
            return [p.transport.get_write_buffer_size() for p in dns._tcp if p.transport]

        before = _open_fds()
        with _non_reader(server.host, server.port, queries=queries):
            assert until(lambda: dns.counters.tcp_queries > 0)
            time.sleep(0.3)
            (queued,) = server.call(unsent())
            assert queued <= 64 * 1024 + 1024, queued  # not megabytes of replies
            assert dns.counters.tcp_queries <= queries
            assert until(lambda: dns.counters.tcp_idle_closes == 1, timeout=5)
            # Closed for good: no server socket left behind holding unsent replies,
            # neither open in the agent nor orphaned in the kernel, still sending.
            assert until(lambda: _open_fds() == before + 1), _open_fds() - before
            assert until(lambda: not _kernel_sockets(server.port)), _kernel_sockets(server.port)
            assert dns.tcp_connections == 0


def test_a_client_reading_its_answers_slowly_is_not_idle() -> None:
    """It takes its answers for longer than the idle timeout, a little at a time: every
    pipelined query still gets its answer (RFC 7766 6.2.3)."""
    # The client takes some of its answers every 0.4 s at most: a timeout of 1 s leaves
    # a scheduling stall on a busy machine room (0.5 s reset it once in a loaded run).
    limits = ServerLimits(tcp_idle_timeout=1.0)
    count = 8_000  # about 5 MB of answers: more than the kernel's buffers hold
    payload = b"".join(frame(query("cache", qid=i & 0xFFFF)) for i in range(count))
    with (
        ThreadedServer(example_responder(), allow=LOOPBACK, limits=limits) as server,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((server.host, server.port))
        sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
        sender.start()
        # No socket timeout: it would make the sender's sendall fail. select() instead.
        data = bytearray()
        deadline = time.monotonic() + 4.0  # four idle timeouts of slow reading
        while time.monotonic() < deadline:
            if select.select([sock], [], [], 0.2)[0]:
                data += sock.recv(2048)
            time.sleep(0.2)
        # Then read at full speed, with a receive window that lets the 5 MB through fast
        # (a 4 KB one can leave the kernel probing a zero window for minutes).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        answers = 0
        while answers < count:
            assert select.select([sock], [], [], 10)[0], f"stalled after {answers} answers"
            chunk = sock.recv(65536)
            assert chunk, f"closed after {answers} of {count} answers"
            data += chunk
            while len(data) >= 2 and len(data) >= 2 + (data[0] << 8 | data[1]):
                del data[: 2 + (data[0] << 8 | data[1])]
                answers += 1
        sender.join(5)
        assert server.server is not None and server.server.counters.tcp_idle_closes == 0


def test_evicted_connections_that_never_read_are_closed_at_once() -> None:
    """The cap counts sockets really held: an evicted client with replies unsent must
    not keep its socket open outside the cap."""
    limits = ServerLimits(tcp_max_connections=4)
    with ThreadedServer(example_responder(), allow=LOOPBACK, limits=limits) as server:
        dns = server.server
        assert dns is not None
        before = _open_fds()
        with contextlib.ExitStack() as stack:
            for _ in range(10):
                stack.enter_context(_non_reader(server.host, server.port, queries=5_000))
            assert until(lambda: dns.counters.tcp_evictions >= 6)
            # 10 client sockets here, and at most 4 on the server's side.
            assert until(lambda: _open_fds() <= before + 10 + 4), _open_fds() - before
            assert dns.tcp_connections <= 4


def test_client_outside_the_allow_list_gets_nothing(
    loop_factory: LoopFactory, udp_batching: bool
) -> None:
    allow = [ipaddress.ip_network("10.0.0.0/8")]
    with ThreadedServer(
        example_responder(), allow=allow, loop_factory=loop_factory, udp_batching=udp_batching
    ) as server:
        assert server.server is not None
        counters = server.server.counters
        assert udp_exchange(server.host, server.port, query("web1"), timeout=0.5) is None
        with tcp_connect(server.host, server.port) as sock:
            with contextlib.suppress(OSError):  # already reset: also nothing
                sock.sendall(frame(query("web1")))
            assert wait_closed(sock, 5.0)
        assert until(lambda: counters.refused_clients >= 2)
        assert counters.udp_queries == 0 and counters.tcp_queries == 0


def test_a_datagram_longer_than_a_query_may_be_is_formerr_on_both_udp_paths(
    loop_factory: LoopFactory, udp_batching: bool
) -> None:
    """The transport path reads datagrams whole, the batched one cuts them at the same
    size: either way the reply is FORMERR from the header alone."""
    with ThreadedServer(
        example_responder(), allow=LOOPBACK, loop_factory=loop_factory, udp_batching=udp_batching
    ) as server:
        oversize = query("web1", qid=0x7A7A) + b"\x00" * MAX_QUERY_BYTES
        reply = udp_exchange(server.host, server.port, oversize)
        assert reply is not None and reply[:2] == b"\x7a\x7a"
        assert reply[3] & 0x0F == wire.FORMERR and reply[4:12] == b"\x00" * 8


class _ForwardingServer(ThreadedServer):
    """A ThreadedServer whose names not owned go to a plain ``forward`` coroutine,
    which answers NXDOMAIN after ``delay`` seconds."""

    forwarded: list[tuple[bytes, bool]]
    delay = 0.0
    most_at_once = 0

    async def _start(self) -> Endpoint:
        running = 0

        async def forward(question: Question, udp: bool) -> bytes:
            nonlocal running
            self.forwarded.append((question.qname_wire, udp))
            running += 1
            self.most_at_once = max(self.most_at_once, running)
            try:
                await asyncio.sleep(self.delay)
            finally:
                running -= 1
            return error_reply(question, wire.NXDOMAIN, ra=True)

        self.forwarded = []
        responder = Responder(self.responder.zone, forwarding=True)
        self.server = DnsServer(
            responder,
            allow=self.allow,
            forward=forward,
            limits=self.limits,
            udp_batching=self.udp_batching,
        )
        return await self.server.listen(Endpoint(self.host, 0))


def _slow_forwarding_server(loop_factory: LoopFactory) -> _ForwardingServer:
    """Forwards taking 50 ms each, at most 4 pending per TCP connection."""
    limits = ServerLimits(tcp_max_pending_per_connection=4)
    server = _ForwardingServer(
        example_responder(), allow=LOOPBACK, limits=limits, loop_factory=loop_factory
    )
    server.delay = 0.05
    return server


def test_pipelined_tcp_queries_beyond_the_pending_cap_all_get_answers(
    loop_factory: LoopFactory,
) -> None:
    """RFC 7766 6.2.1.1: past the cap of forwards pending, the rest wait unread, not dropped."""
    server = _slow_forwarding_server(loop_factory)
    with server, tcp_connect(server.host, server.port) as sock:
        queries = [query(f"n{i}.example", qid=0x6000 + i) for i in range(20)]
        queries.insert(10, query("web1", qid=0x6100))  # owned: answered in its turn
        sock.sendall(b"".join(frame(q) for q in queries))
        ids = {recv_frame(sock)[:2] for _ in queries}
        assert ids == {q[:2] for q in queries}
        assert server.most_at_once == 4
        assert server.server is not None and server.server.counters.forward_overflow == 0


def test_a_client_that_half_closes_still_gets_every_answer(loop_factory: LoopFactory) -> None:
    """Queries sent, then shutdown(SHUT_WR): the forwarded answers, still on their way
    when the client's EOF arrives, are owed all the same; then the connection ends."""
    server = _slow_forwarding_server(loop_factory)
    with server, tcp_connect(server.host, server.port) as sock:
        queries = [query(f"n{i}.example", qid=0x7000 + i) for i in range(10)]
        queries.append(query("web1", qid=0x7100))
        sock.sendall(b"".join(frame(q) for q in queries))
        sock.shutdown(socket.SHUT_WR)
        ids = {recv_frame(sock)[:2] for _ in queries}
        assert ids == {q[:2] for q in queries}
        assert wait_closed(sock, 5.0), "the connection ends once everything is answered"


def test_dropped_tcp_frames_do_not_keep_a_connection_open(loop_factory: LoopFactory) -> None:
    """Only queries count as activity: empty frames and responses are not."""
    limits = ServerLimits(tcp_idle_timeout=0.5)
    with (
        ThreadedServer(
            example_responder(), allow=LOOPBACK, limits=limits, loop_factory=loop_factory
        ) as server,
        tcp_connect(server.host, server.port) as sock,
    ):
        response = bytearray(query("web1"))
        response[2] |= 0x80  # QR=1: dropped
        started = time.monotonic()
        closed = False
        while not closed and time.monotonic() - started < 3.0:
            with contextlib.suppress(OSError):
                sock.sendall(frame(b"") + frame(bytes(response)))
            closed = wait_closed(sock, 0.2)
        assert closed, "junk frames every 0.2 s kept the connection past its 0.5 s idle timeout"


def test_a_plain_forward_coroutine_answers_udp_and_tcp(
    loop_factory: LoopFactory, udp_batching: bool
) -> None:
    """Any ``forward`` coroutine works; only a Forwarder's gets the callback path over UDP."""
    server = _ForwardingServer(
        example_responder(), allow=LOOPBACK, loop_factory=loop_factory, udp_batching=udp_batching
    )
    with server:
        assert server.server is not None and server.server.forwarder is None
        udp = udp_exchange(server.host, server.port, query("elsewhere.example", qid=0x5001))
        tcp = tcp_exchange(server.host, server.port, query("elsewhere.example", qid=0x5002))
        for reply, qid in ((udp, 0x5001), (tcp, 0x5002)):
            assert reply is not None and reply[:2] == struct.pack("!H", qid)
            assert parse(reply).header.rcode == 3  # the forward's NXDOMAIN, passed on
        assert [via_udp for _name, via_udp in server.forwarded] == [True, False]
        assert until(lambda: server.server is not None and server.server.udp_pending == 0)


def test_ipv6_clients_of_either_udp_path_are_answered_and_filtered(udp_batching: bool) -> None:
    """An IPv6 listener, with the allow-list read from a sockaddr_in6 on both UDP paths."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    for allow, answered in (([ipaddress.ip_network("::1/128")], True), (LOOPBACK, False)):
        with ThreadedServer(
            example_responder(), allow=allow, host="::1", udp_batching=udp_batching
        ) as server:
            reply = udp_exchange("::1", server.port, query("web1", AAAA), timeout=1.0)
            if answered:
                assert [str(rr.rdata) for rr in parse(reply).rr] == ["2600:1f18:1::10"]
            else:
                assert reply is None, "::1 is not in 127.0.0.0/8"
