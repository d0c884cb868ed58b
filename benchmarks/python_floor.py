"""The Python floor rows of benchmarks/dns.py: UDP echoes that do no DNS work.

Each sets QR and sends every query back, packet by packet: the least a Python
server spends per query before any DNS work. Their CPU per query at a fixed rate,
against dnsmasq's, says whether a Python server can meet a CPU target at that
rate at all, and which structure comes closest.

- ``loop`` (the default): from a uvloop ``datagram_received``, the least any
  server on Python's event loop spends per query.
- ``thread``: a thread blocked in ``recvfrom`` (the GIL released while it waits)
  answering with ``sendto``, while the main thread runs an idle uvloop loop as a
  server's TCP and timers would. No epoll and no loop pass per datagram: the
  least a Python server spends per query off the event loop.

Usage: python -m benchmarks.python_floor PORT [loop|thread]
(listens on 127.0.0.1:PORT until killed)
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from typing import cast

import uvloop

MODES = ("loop", "thread")


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sendto = cast(asyncio.DatagramTransport, transport).sendto

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 12:
            self.sendto(data[:2] + bytes((data[2] | 0x80,)) + data[3:], addr)


def echo_blocking(sock: socket.socket) -> None:
    """The thread's loop: one blocking recvfrom and one sendto per datagram."""
    recvfrom, sendto = sock.recvfrom, sock.sendto
    while True:
        data, addr = recvfrom(4096)
        if len(data) >= 12:
            sendto(data[:2] + bytes((data[2] | 0x80,)) + data[3:], addr)


async def serve(port: int, mode: str) -> None:
    loop = asyncio.get_running_loop()
    if mode == "loop":
        await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        threading.Thread(target=echo_blocking, args=(sock,), daemon=True).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    chosen = sys.argv[2] if len(sys.argv) > 2 else "loop"
    if len(sys.argv) < 2 or chosen not in MODES:
        raise SystemExit(f"usage: python_floor.py PORT [{'|'.join(MODES)}]")
    uvloop.run(serve(int(sys.argv[1]), chosen))
