"""Batched UDP (recvmmsg/sendmmsg): every reply reaches its own client, whatever the batch holds.

The server's loop is held busy while a burst is sent, so the datagrams wait in the
socket and one recvmmsg reads many of them: the tests then see real batches, with
drops and refusals between the answers, not one datagram per wake-up.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from dnslib import DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.adapters.dns_server import DnsServer
from resolver.adapters.logging_setup import set_query_logging, setup_logging
from resolver.adapters.udp_batch import CAPACITY, IOV_LEN_WORD, SLOT, MessageRing, batch_calls
from resolver.core import wire
from tests.core.dns_helpers import header, query, question
from tests.integration.dns_helpers import (
    LOOPBACK,
    ThreadedServer,
    example_responder,
    udp_exchange,
)
from tests.log_streams import CountingStream

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(batch_calls() is None, reason="no recvmmsg on this platform"),
]

WEB1 = "10.0.1.10"


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    with ThreadedServer(example_responder(), allow=LOOPBACK) as threaded:
        yield threaded


def dns(threaded: ThreadedServer) -> DnsServer:
    assert threaded.server is not None
    return threaded.server


def hold_loop(threaded: ThreadedServer, seconds: float) -> None:
    """Keep the server's loop busy so that what is sent next waits in its socket."""
    threaded.loop.call_soon_threadsafe(time.sleep, seconds)
    time.sleep(0.05)


def client(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(3.0)
    return sock


def collect(sock: socket.socket, quiet: float = 0.3) -> list[bytes]:
    """Every datagram that arrives until none has for ``quiet`` seconds."""
    replies = []
    sock.settimeout(3.0)
    try:
        while True:
            replies.append(sock.recv(65535))
            sock.settimeout(quiet)
    except TimeoutError:
        return replies


def answer_of(reply: bytes) -> list[str]:
    return [str(rr.rdata) for rr in DNSRecord.parse(reply).rr]


def test_a_burst_with_drops_between_answers_reaches_each_client(
    server: ThreadedServer,
) -> None:
    """Two clients interleaved with junk: the replies are moved down past every drop."""
    first, second = client(), client()
    junk = [header(flags=0x8000) + question("web1"), b"\x00" * 5, b""]
    with first, second:
        hold_loop(server, 0.3)
        for n in range(60):
            first.sendto(query("web1", qid=0x1000 + n), ("127.0.0.1", server.port))
            second.sendto(junk[n % 3], ("127.0.0.1", server.port))
            second.sendto(query("WEB2", qid=0x2000 + n), ("127.0.0.1", server.port))
        got_first, got_second = collect(first), collect(second)
    assert sorted(r[:2] for r in got_first) == [struct.pack("!H", 0x1000 + n) for n in range(60)]
    assert sorted(r[:2] for r in got_second) == [struct.pack("!H", 0x2000 + n) for n in range(60)]
    assert {tuple(answer_of(r)) for r in got_first} == {(WEB1,)}
    assert {tuple(answer_of(r)) for r in got_second} == {("10.0.2.20",)}
    assert all(b"\x04WEB2" in r for r in got_second), "the question is echoed in its case"
    counters = dns(server).counters
    assert counters.udp_queries == 180
    assert counters.dropped == 60
    assert counters.udp_batches <= 180 / 8, "datagrams were read many per system call"


def test_refused_clients_in_a_batch_get_nothing_and_the_others_their_answers() -> None:
    allow = [ipaddress.ip_network("127.0.0.1/32")]
    with ThreadedServer(example_responder(), allow=allow) as threaded:
        allowed, refused = client("127.0.0.1"), client("127.0.0.2")
        with allowed, refused:
            hold_loop(threaded, 0.3)
            for n in range(40):
                refused.sendto(query("web1", qid=n), ("127.0.0.1", threaded.port))
                allowed.sendto(query("web1", qid=0x100 + n), ("127.0.0.1", threaded.port))
            assert collect(refused, quiet=0.5) == []
            got = collect(allowed)
        assert sorted(r[:2] for r in got) == [struct.pack("!H", 0x100 + n) for n in range(40)]
        counters = dns(threaded).counters
        assert counters.refused_clients == 40
        assert counters.udp_queries == 40


def test_a_datagram_longer_than_a_slot_is_formerr_and_the_next_is_answered(
    server: ThreadedServer,
) -> None:
    oversize = query("web1", qid=0x7A7A) + b"\x00" * SLOT
    reply = udp_exchange("127.0.0.1", server.port, oversize)
    assert reply is not None and reply[:2] == b"\x7a\x7a"
    assert reply[3] & 0x0F == wire.FORMERR and reply[2] & 0x80
    assert reply[4:12] == b"\x00" * 8, "header only: nothing of a cut message is echoed"
    follow = udp_exchange("127.0.0.1", server.port, query("web1", qid=0x7B7B))
    assert follow is not None and answer_of(follow) == [WEB1]


def test_a_full_batch_then_more_is_answered_in_order_of_arrival(server: ThreadedServer) -> None:
    """More datagrams than one batch holds: the loop comes back for the rest."""
    total = CAPACITY * 3 + 5
    with client() as sock:
        hold_loop(server, 0.3)
        for n in range(total):
            sock.sendto(query("web1", qid=n), ("127.0.0.1", server.port))
        got = collect(sock)
    assert [r[:2] for r in got] == [struct.pack("!H", n) for n in range(total)]


def test_ipv6_clients_are_answered_in_batches() -> None:
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    allow = [ipaddress.ip_network("::1/128")]
    with (
        ThreadedServer(example_responder(), allow=allow, host="::1") as threaded,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock,
    ):
        hold_loop(threaded, 0.2)
        for n in range(20):
            sock.sendto(query("web1", qid=n), ("::1", threaded.port))
        got = collect(sock)
    assert sorted(r[:2] for r in got) == [struct.pack("!H", n) for n in range(20)]


def test_a_reply_the_kernel_refuses_is_skipped_and_the_rest_are_sent() -> None:
    """sendmmsg stops at a failing message; the ring skips it and sends the others."""
    calls = batch_calls()
    assert calls is not None
    ring = MessageRing(calls, socket.AF_INET, capacity=4)
    with client() as receiver, client() as sender:
        target = socket.inet_aton("127.0.0.1")
        ports = [receiver.getsockname()[1], 0, receiver.getsockname()[1]]  # port 0: EINVAL
        for j, port in enumerate(ports):
            name = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + target
            ring.names[j * 16 : j * 16 + 8] = name
            ring.outgoing[j * SLOT : j * SLOT + 5] = f"msg{j}\n".encode()[:5]
            ring.reply_lengths[j * ring.iov_stride + IOV_LEN_WORD] = 5
        assert ring.send(sender.fileno(), 3) == 1
        assert sorted(collect(receiver)) == [b"msg0\n", b"msg2\n"]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ThreadedServer]:
    with ThreadedServer(example_responder(), allow=LOOPBACK) as threaded:
        yield threaded


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    packets=st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.builds(
                lambda seed, cut: bytes(random.Random(seed).randbytes(4)) + query("web1")[4:cut],
                st.integers(0, 2**32),
                st.integers(4, 40),
            ),
        ),
        min_size=1,
        max_size=CAPACITY * 2,
    )
)
def test_any_burst_of_junk_leaves_the_server_answering(
    shared_server: ThreadedServer, packets: list[bytes]
) -> None:
    """Random and cut packets in one burst: nothing breaks, and the next query is answered."""
    with client() as sock:
        hold_loop(shared_server, 0.05)
        for packet in packets:
            sock.sendto(packet, ("127.0.0.1", shared_server.port))
        sock.sendto(query("web1", qid=0xFEED), ("127.0.0.1", shared_server.port))
        replies = collect(sock, quiet=0.2)
    assert any(r[:2] == b"\xfe\xed" and answer_of(r) == [WEB1] for r in replies)
    sent_ids = {p[:2] for p in packets} | {b"\xfe\xed"}
    assert all(r[:2] in sent_ids for r in replies), "every reply answers something sent"


@pytest.mark.usefixtures("restore_root_logging")
def test_query_log_lines_of_a_batch_are_written_together(server: ThreadedServer) -> None:
    """One write per batch, not one per line: each would be a write(2) on stderr."""
    stream = CountingStream()
    setup_logging("warning", "text", stream=stream, environ={})
    set_query_logging(True)
    dns(server).set_query_logging(True)
    try:
        with client() as sock:
            hold_loop(server, 0.3)
            for n in range(120):
                sock.sendto(query(f"web{1 + n % 2}", qid=n), ("127.0.0.1", server.port))
            assert len(collect(sock)) == 120
    finally:
        dns(server).set_query_logging(False)
        set_query_logging(False)
    described = Counter(tuple(line.split()[6:]) for line in stream.getvalue().splitlines())
    assert described == {
        ("udp", "web1.", "A", "NOERROR"): 60,
        ("udp", "web2.", "A", "NOERROR"): 60,
    }
    assert stream.writes <= dns(server).counters.udp_batches < 120 / 8
