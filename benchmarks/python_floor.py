"""The Python floor row of benchmarks/dns.py: a uvloop UDP echo that does no DNS work.

It sets QR and sends each query back from ``datagram_received``, packet by
packet: the least any server on Python's event loop spends per query. Its CPU
per query at a fixed rate, against dnsmasq's, says whether a Python server can
meet a CPU target at that rate at all.

Usage: python -m benchmarks.python_floor PORT   (listens on 127.0.0.1:PORT until killed)
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sendto = cast(asyncio.DatagramTransport, transport).sendto

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 12:
            self.sendto(data[:2] + bytes((data[2] | 0x80,)) + data[3:], addr)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
