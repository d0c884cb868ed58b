"""The forwarder's socket watcher: one epoll of its own, fds that come and go and are reused."""

from __future__ import annotations

import asyncio
import socket

import pytest

from resolver.adapters.forwarder import _Watcher

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
