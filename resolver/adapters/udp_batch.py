"""UDP in batches: one recvmmsg(2) and one sendmmsg(2) per wake-up of the loop (Linux).

Under load, a Python server pays per datagram for things that are not DNS work:
a callback per datagram, a ``(host, port)`` tuple built for every query and parsed
again for every reply, and two system calls. ``BatchUdpListener`` reads up to
``capacity`` datagrams with one recvmmsg and writes their replies with one
sendmmsg, so those costs are paid once per batch. The kernel's own work per
datagram is unchanged. At low rates, where each wake-up finds one datagram, this
path costs a little more than the portable one (about 2 µs of CPU per query at
10,000 queries/s: two ctypes calls where uvloop makes its own from C), which is
the price of 1.3x the throughput under load (docs/performance.md).

The standard library has no recvmmsg, so ctypes calls it. The structures are laid
out by ctypes from their C declarations, the buffers are allocated once per socket
and reused, and the calls never block (MSG_DONTWAIT) nor release the GIL: the loop
thread keeps the GIL as it does around uvloop's own calls, so a load running in a
worker thread cannot take it for a whole switch interval after every batch.

Elsewhere (macOS, 32-bit, no recvmmsg in libc) ``batch_calls`` is None and the
server uses asyncio's datagram transport instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from resolver.adapters.logging_setup import held_lines
from resolver.adapters.query_log import Address, log_reply
from resolver.core.responder import MAX_QUERY_BYTES, Question

if TYPE_CHECKING:
    from resolver.adapters.dns_server import DnsServer

log = logging.getLogger("tagdns.server")

CAPACITY = 64
"""Datagrams per system call: enough to amortise the call, small enough to stay fair to TCP."""
SLOT = MAX_QUERY_BYTES
"""Bytes per datagram buffer: a larger datagram arrives cut and is answered FORMERR
from its header, as a longer TCP message is."""

_ALLOW_CACHE_MAX = 4096
_SEND_GAVE_UP = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR})


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_HEADER_SIZE = ctypes.sizeof(_MMsgHdr)
_IOVEC_SIZE = ctypes.sizeof(_IoVec)
LEN_WORD = _MMsgHdr.msg_len.offset // 4
FLAGS_WORD = (_MMsgHdr.msg_hdr.offset + _MsgHdr.msg_flags.offset) // 4
IOV_LEN_WORD = _IoVec.iov_len.offset // 8


@dataclass(frozen=True)
class BatchCalls:
    """recvmmsg and sendmmsg from libc.

    They are called without ``argtypes``, which would convert every argument on
    every call (half a microsecond of a call's 1.4): the integers passed are C ints
    (descriptor, count, flags) and the pointers are ``c_void_p`` objects built once.
    """

    recvmmsg: Callable[[int, ctypes.c_void_p, int, int, None], int]
    sendmmsg: Callable[[int, ctypes.c_void_p, int, int], int]


@cache
def batch_calls() -> BatchCalls | None:
    """The batch system calls, or None where this module's layout does not hold."""
    if not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
        return None
    if _HEADER_SIZE % 4 or _IOVEC_SIZE % 8:  # pragma: no cover - every 64-bit Linux ABI
        return None
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):  # pragma: no cover - a libc without them
        return None
    recvmmsg.restype = sendmmsg.restype = ctypes.c_int
    return BatchCalls(recvmmsg, sendmmsg)


class MessageRing:
    """Buffers for one socket: ``capacity`` datagrams in, their replies out.

    Slot ``i`` of ``names`` holds the address of received datagram ``i``; reply ``j``
    goes to the address in slot ``j`` (the listener moves an address down when an
    earlier datagram got no reply), so the send headers never change but for the
    length of each reply.
    """

    def __init__(self, calls: BatchCalls, family: int, capacity: int = CAPACITY) -> None:
        self.calls = calls
        self.capacity = capacity
        self.name_size = 16 if family == socket.AF_INET else 28
        self._incoming = ctypes.create_string_buffer(capacity * SLOT)
        self._outgoing = ctypes.create_string_buffer(capacity * SLOT)
        self._names = ctypes.create_string_buffer(capacity * self.name_size)
        self._receive_iov = (_IoVec * capacity)()
        self._send_iov = (_IoVec * capacity)()
        self._receive_headers = (_MMsgHdr * capacity)()
        self._send_headers = (_MMsgHdr * capacity)()
        incoming, outgoing = ctypes.addressof(self._incoming), ctypes.addressof(self._outgoing)
        names = ctypes.addressof(self._names)
        for i in range(capacity):
            self._receive_iov[i].iov_base = incoming + i * SLOT
            self._receive_iov[i].iov_len = SLOT
            self._send_iov[i].iov_base = outgoing + i * SLOT
            for headers, iov in (
                (self._receive_headers, self._receive_iov),
                (self._send_headers, self._send_iov),
            ):
                header = headers[i].msg_hdr
                header.msg_name = names + i * self.name_size
                header.msg_namelen = self.name_size
                header.msg_iov = ctypes.addressof(iov) + i * _IOVEC_SIZE
                header.msg_iovlen = 1
        self.incoming = memoryview(self._incoming).cast("B")
        """Datagram ``i`` starts at ``i * SLOT``."""
        self.outgoing = memoryview(self._outgoing).cast("B")
        """Reply ``j`` starts at ``j * SLOT``."""
        self.names = memoryview(self._names).cast("B")
        self.header_words = memoryview(self._receive_headers).cast("B").cast("I")
        """Received length of datagram ``i``: word ``i * header_stride + LEN_WORD``."""
        self.reply_lengths = memoryview(self._send_iov).cast("B").cast("Q")
        """Length of reply ``j``: word ``j * iov_stride + IOV_LEN_WORD``."""
        self.header_stride = _HEADER_SIZE // 4
        self.iov_stride = _IOVEC_SIZE // 8
        self._receive_at = ctypes.c_void_p(ctypes.addressof(self._receive_headers))
        send_at = ctypes.addressof(self._send_headers)
        self._send_from = [ctypes.c_void_p(send_at + j * _HEADER_SIZE) for j in range(capacity)]
        """Where a sendmmsg starting at reply ``j`` begins."""

    def receive(self, fd: int) -> int:
        """Read up to ``capacity`` waiting datagrams; how many (0 when none or on error)."""
        count = self.calls.recvmmsg(fd, self._receive_at, self.capacity, socket.MSG_DONTWAIT, None)
        if count < 0:
            code = ctypes.get_errno()
            if code not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                log.debug("UDP receive error: %s", errno.errorcode.get(code, code))
            return 0
        return count

    def cut(self, i: int) -> bool:
        """Whether datagram ``i`` was longer than its slot (and so arrived cut)."""
        return bool(self.header_words[i * self.header_stride + FLAGS_WORD] & socket.MSG_TRUNC)

    def send(self, fd: int, count: int) -> int:
        """Send replies ``0 .. count-1``; how many could not be sent.

        A reply the kernel refuses (an address it will not send to) is skipped and
        the rest still go; a full socket buffer drops the rest, as UDP may.
        """
        sendmmsg = self.calls.sendmmsg
        done = failed = 0
        while done < count:
            sent = sendmmsg(fd, self._send_from[done], count - done, 0)
            if sent > 0:
                done += sent
                continue
            code = ctypes.get_errno()
            if code in _SEND_GAVE_UP:
                return failed + count - done
            log.debug("UDP send error: %s", errno.errorcode.get(code, code))
            done += 1
            failed += 1
        return failed

    def address(self, i: int) -> Address:
        """The sender of datagram ``i`` as the socket module writes addresses."""
        name = bytes(self.names[i * self.name_size : (i + 1) * self.name_size])
        port = name[2] << 8 | name[3]
        if self.name_size == 16:
            return socket.inet_ntop(socket.AF_INET, name[4:8]), port
        (scope,) = struct.unpack_from("=I", name, 24)  # host order; the port is network order
        return socket.inet_ntop(socket.AF_INET6, name[8:24]), port, 0, scope


def address_span(family: int) -> tuple[int, int]:
    """Where the address itself lies in a sockaddr: the allow-list's cache key."""
    return (4, 8) if family == socket.AF_INET else (8, 24)


class BatchUdpListener:
    """One UDP socket of a ``DnsServer``, read and answered in batches."""

    def __init__(self, server: DnsServer, sock: socket.socket, calls: BatchCalls) -> None:
        self.server = server
        self.sock = sock
        self.family = sock.family
        self.port: int = sock.getsockname()[1]
        self.ring = MessageRing(calls, sock.family)
        self.log_queries = False
        self._fd = sock.fileno()
        self._allow_cache: dict[bytes, bool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        ring = self.ring
        self._layout = (
            ring.incoming,
            ring.outgoing,
            ring.names,
            ring.header_words,
            ring.header_stride,
            ring.reply_lengths,
            ring.iov_stride,
            ring.name_size,
            *address_span(self.family),
        )
        """What ``drain`` reads once per batch, unpacked in one step."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self._fd, self.drain)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None
        self.sock.close()

    def set_logging(self, enabled: bool) -> None:
        self.log_queries = enabled

    def drain(self) -> None:
        """Answer every datagram waiting, up to one batch; the loop calls again for more.

        The per-packet path: what it can read once per batch, it reads once. The
        responder is read once too, so a zone swap takes effect at the next batch.
        """
        ring = self.ring
        count = ring.receive(self._fd)
        if not count:
            return
        server = self.server
        respond = server.respond
        allow_get = self._allow_cache.get
        (
            incoming,
            outgoing,
            names,
            header_words,
            header_stride,
            reply_lengths,
            iov_stride,
            name_size,
            address_start,
            address_end,
        ) = self._layout
        replies = refused = dropped = 0
        try:
            for i in range(count):
                name = i * name_size
                key = bytes(names[name + address_start : name + address_end])
                verdict = allow_get(key)
                if not verdict and (verdict is False or not self._admit(key)):
                    refused += 1
                    continue
                size = header_words[i * header_stride + LEN_WORD]
                offset = i * SLOT
                data = bytes(incoming[offset : offset + size])
                if size == SLOT and ring.cut(i):
                    reply: bytes | Question | None = server.responder.cut(data)
                else:
                    try:
                        reply = respond(data)
                    except Exception:  # respond contains its own errors; belt and braces
                        reply = server.failed(data)
                if isinstance(reply, bytes):
                    length = len(reply)
                    if length > SLOT:  # pragma: no cover - UDP replies are cut to 1232 bytes
                        self.send_one(reply, ring.address(i))
                        continue
                    out = replies * SLOT
                    outgoing[out : out + length] = reply
                    reply_lengths[replies * iov_stride + IOV_LEN_WORD] = length
                    if replies != i:
                        names[replies * name_size : (replies + 1) * name_size] = names[
                            name : name + name_size
                        ]
                    replies += 1
                elif reply is None:
                    dropped += 1
                else:
                    assert isinstance(reply, Question)
                    server.forward_udp(reply, ring.address(i), self.send_one)
        finally:  # what was answered before an unexpected error is still sent
            self._finish(count, refused, replies, dropped)

    def _finish(self, count: int, refused: int, replies: int, dropped: int) -> None:
        """Send the batch's replies and count it."""
        counters = self.server.counters
        counters.udp_queries += count - refused
        counters.udp_batches += 1
        if refused:
            counters.refused_clients += refused
        if replies:
            if self.log_queries:
                self._log_replies(replies)
            dropped += self.ring.send(self._fd, replies)
        if dropped:
            counters.dropped += dropped

    def _admit(self, key: bytes) -> bool:
        """The allow-list's verdict for an address not seen yet (cached by its bytes)."""
        verdict = self.server.allowed(socket.inet_ntop(self.family, key))
        if len(self._allow_cache) >= _ALLOW_CACHE_MAX:
            self._allow_cache.clear()
        self._allow_cache[key] = verdict
        return verdict

    def _log_replies(self, count: int) -> None:
        """The batch's query-log lines, written together."""
        ring = self.ring
        lengths, stride = ring.reply_lengths, ring.iov_stride
        with held_lines():
            for j in range(count):
                length = lengths[j * stride + IOV_LEN_WORD]
                reply = bytes(ring.outgoing[j * SLOT : j * SLOT + length])
                log_reply(ring.address(j), "udp", reply)

    def send_one(self, reply: bytes, addr: Address) -> None:
        """Send one reply outside a batch (a forwarded answer); dropped if it cannot go."""
        if self._loop is None:
            return
        if self.log_queries:
            log_reply(addr, "udp", reply)
        try:
            self.sock.sendto(reply, addr)
        except OSError as exc:
            self.server.counters.dropped += 1
            log.debug("UDP send error: %s", exc)
