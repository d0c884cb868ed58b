"""The forwarder's socket watcher: one epoll of its own, fds that come and go and are reused."""

from __future__ import annotations

import _socket
import asyncio
import secrets
import socket
from collections.abc import Callable

import pytest

from resolver.adapters import forwarder as forwarder_module
from resolver.adapters.forwarder import _STOCK, Forwarder, _Watcher
from resolver.core.cache import AnswerCache
from resolver.core.endpoints import Endpoint
from resolver.core.responder import Question, parse_query
from tests.core.dns_helpers import query

pytestmark = pytest.mark.integration


def test_callbacks_follow_the_socket_now_behind_a_reused_fd() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        watcher = _Watcher(loop)
        heard: list[str] = []
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        first.bind(("127.0.0.1", 0))
        fd = first.fileno()
        watcher.watch(fd, lambda: heard.append("first"))
        watcher.unwatch(fd)
        first.close()  # leaves the epoll set with it
        second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        second.bind(("127.0.0.1", 0))
        second.setblocking(False)
        assert second.fileno() == fd  # the lowest free number: the one just closed

        def readable() -> None:
            heard.append(second.recv(100).decode())

        watcher.watch(fd, readable)
        sender.sendto(b"second", second.getsockname())
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.01)
        watcher.unwatch(fd)
        second.close()
        sender.close()
        watcher.close()
        watcher.close()  # twice is harmless
        return heard

    assert asyncio.run(scenario()) == ["second"]


def test_a_socket_unwatched_is_not_called_back_nor_polled_again() -> None:
    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        watcher = _Watcher(loop)
        heard: list[bytes] = []
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        watcher.watch(receiver.fileno(), lambda: heard.append(receiver.recv(100)))
        watcher.unwatch(receiver.fileno())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"late", receiver.getsockname())
        await asyncio.sleep(0.05)
        assert watcher._epoll is not None and watcher._epoll.poll(0) == []
        receiver.close()
        watcher.close()
        return heard

    assert asyncio.run(scenario()) == []


def test_a_socket_that_cannot_be_watched_is_closed_and_the_next_upstream_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused: list[int] = []
    watch = _Watcher.watch

    def watch_once_refused(self: _Watcher, fd: int, callback: Callable[[], None]) -> None:
        if not refused:
            refused.append(fd)
            raise OSError(24, "Too many open files")
        watch(self, fd, callback)

    monkeypatch.setattr(_Watcher, "watch", watch_once_refused)

    async def scenario() -> tuple[bytes, Forwarder]:
        loop = asyncio.get_running_loop()
        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        upstream.bind(("127.0.0.1", 0))
        upstream.setblocking(False)

        def answer() -> None:
            data, peer = upstream.recvfrom(512)
            qend = data.index(0, 12) + 5
            record = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x07"
            upstream.sendto(
                data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + data[12:qend] + record,
                peer,
            )

        loop.add_reader(upstream.fileno(), answer)
        port = upstream.getsockname()[1]
        forwarder = Forwarder(
            [Endpoint("127.0.0.1", port), Endpoint("127.0.0.1", port)], AnswerCache()
        )
        question = parse_query(query("www.example.test"))
        assert isinstance(question, Question)
        reply = await asyncio.wait_for(forwarder.forward(question, True), 5)
        loop.remove_reader(upstream.fileno())
        upstream.close()
        forwarder.close()
        return reply, forwarder

    reply, forwarder = asyncio.run(scenario())
    assert reply[3] & 0x0F == 0 and reply[6:8] == b"\x00\x01"
    assert forwarder.counters.upstream_errors == 1 and len(refused) == 1


def test_a_stocked_socket_serves_one_query_and_closes_with_the_watcher() -> None:
    """Sockets made ahead of need: quiet until used, each handed out once, never leaked."""

    async def scenario() -> tuple[list[bytes], list[_socket.socket], list[int]]:
        loop = asyncio.get_running_loop()
        watcher = _Watcher(loop)
        heard: list[bytes] = []
        watcher.restock(socket.AF_INET)
        stocked = list(watcher._stock[socket.AF_INET])
        assert len(stocked) == _STOCK  # filled whole
        # Unconnected and unbound, they can have nothing to read: the watcher's own
        # poll must not see them (it would drop an fd it has no callback for).
        assert watcher._epoll is not None and watcher._epoll.poll(0) == []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            used = watcher.open_socket(socket.AF_INET, lambda: heard.append(used.recv(100)))
            assert used in stocked and used not in watcher._stock[socket.AF_INET]
            used.connect(peer.getsockname())
            used.send(b"query")
            _, address = peer.recvfrom(100)
            peer.sendto(b"reply", address)
            for _ in range(100):
                if heard:
                    break
                await asyncio.sleep(0.01)
        watcher.unwatch(used.fileno())
        used.close()
        watcher.restock(socket.AF_INET)
        remaining = list(watcher._stock[socket.AF_INET])
        watcher.close()
        return heard, remaining, [sock.fileno() for sock in remaining]

    heard, remaining, fds_after_close = asyncio.run(scenario())
    assert heard == [b"reply"]
    assert len(remaining) == _STOCK  # the one used replaced after the query
    assert fds_after_close == [-1] * _STOCK  # closed with the watcher


def test_the_stock_stops_at_its_size_and_a_socket_that_cannot_be_made_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> tuple[int, int]:
        watcher = _Watcher(asyncio.get_running_loop())
        watcher.restock(socket.AF_INET)
        watcher.restock(socket.AF_INET)
        full = len(watcher._stock[socket.AF_INET])
        for _ in range(full):
            watcher.open_socket(socket.AF_INET, lambda: None).close()

        def out_of_descriptors(family: int) -> _socket.socket:
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(forwarder_module, "_new_socket", out_of_descriptors)
        watcher.restock(socket.AF_INET)  # no error: open_socket reports it when asked
        after = len(watcher._stock[socket.AF_INET])
        with pytest.raises(OSError, match="Too many open files"):
            watcher.open_socket(socket.AF_INET, lambda: None)
        watcher.close()
        return full, after

    assert asyncio.run(scenario()) == (_STOCK, 0)


def test_an_attempt_ending_after_the_watcher_closed_stocks_nothing() -> None:
    """A question still under way when its watcher is replaced ends later: the
    closed watcher must not make sockets nobody will close."""

    async def scenario() -> dict[int, list[_socket.socket]]:
        watcher = _Watcher(asyncio.get_running_loop())
        watcher.restock(socket.AF_INET)
        watcher.close()
        watcher.restock(socket.AF_INET)
        watcher.restock(socket.AF_INET6)
        return watcher._stock

    assert asyncio.run(scenario()) == {}


def test_query_ids_are_drawn_from_secrets_two_bytes_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of IDs is one draw from ``secrets``, cut in two-byte IDs, none twice."""
    draws: list[int] = []

    def token_bytes(count: int) -> bytes:
        draws.append(count)
        return bytes(i % 256 for i in range(count))

    monkeypatch.setattr(secrets, "token_bytes", token_bytes)
    ids = forwarder_module.draw_query_ids()
    assert draws == [2 * forwarder_module._IDS_PER_DRAW]
    assert all(len(qid) == 2 for qid in ids)
    assert b"".join(ids) == bytes(i % 256 for i in range(draws[0]))


def test_query_ids_are_not_a_fixed_sequence() -> None:
    assert forwarder_module.draw_query_ids() != forwarder_module.draw_query_ids()


def test_a_forwarder_draws_ids_again_when_its_batch_is_used_up() -> None:
    async def scenario() -> tuple[int, int]:
        upstream, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        port = upstream.get_extra_info("sockname")[1]
        forwarder = Forwarder([Endpoint("127.0.0.1", port)], AnswerCache())
        sent = forwarder_module._IDS_PER_DRAW + 1
        for index in range(sent):
            question = parse_query(query(f"n{index}.example.test", 1))
            assert isinstance(question, Question)
            forwarder.start(question, True, lambda reply: None)
        left = len(forwarder._ids)
        forwarder.close()
        upstream.close()
        return sent, left

    sent, left = asyncio.run(scenario())
    assert left == 2 * forwarder_module._IDS_PER_DRAW - sent
