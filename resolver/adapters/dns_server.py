"""asyncio DNS server: UDP and TCP listeners around a Responder.

This is the thin shell of hypercorn's split: bytes in, ``Responder.respond``,
bytes out. It owns only transport concerns: the client allow-list, RFC 7766 TCP
framing with several queries per connection, an idle timeout, and a connection
cap that evicts the least recently active connection (one waiting on a forward
last) so idle or slow clients cannot lock new ones out. UDP is read in batches
where the platform allows (``udp_batch``), through asyncio's datagram transport
elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import sys
import termios
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, cast

from resolver.adapters.listen_sockets import Network, client_allowed, listening_socket
from resolver.adapters.query_log import Address, log_reply
from resolver.adapters.udp_batch import BatchUdpListener, batch_calls
from resolver.core import wire
from resolver.core.endpoints import Endpoint
from resolver.core.responder import MAX_QUERY_BYTES, Question, Responder, error_reply, servfail

log = logging.getLogger("tagdns.server")

Forward = Callable[[Question, bool], Awaitable[bytes | None]]
"""Ask upstream for a question not owned; (question, udp) -> reply bytes or None."""
SendTo = Callable[[bytes, Address], None]
"""How a UDP listener sends one reply outside its own per-packet path."""


class UdpListener(Protocol):
    """One bound UDP socket, whichever way it is read."""

    @property
    def port(self) -> int: ...

    def set_logging(self, enabled: bool) -> None: ...

    def close(self) -> None: ...


class CallbackForwarder(Protocol):
    """A forwarder that can also hand replies to a callback (``Forwarder`` is one).

    UDP queries use ``start`` instead of a task per query (the task, its coroutine
    chain and the loop passes they take were most of the cost of a cache miss);
    TCP queries await ``forward``.
    """

    def start(self, question: Question, udp: bool, deliver: Callable[[bytes], None]) -> bool:
        """False, and ``deliver`` never called, when the question has clients enough waiting."""
        ...

    async def forward(self, question: Question, udp: bool) -> bytes: ...

    def close(self) -> None: ...


_ALLOW_CACHE_MAX = 4096
_MIN_BACKLOG = 1024


@dataclass(frozen=True)
class ServerLimits:
    """Transport limits; defaults suit a node-local resolver."""

    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 256
    tcp_max_pending_per_connection: int = 64
    """Forwards one TCP connection may have pending; more of its queries wait unread."""
    udp_max_pending_forwards: int = 1024


@dataclass
class ServerCounters:
    """Plain counters the metrics adapter reads; increments are cheap on the hot path."""

    udp_queries: int = 0
    udp_batches: int = 0
    """Wake-ups that read at least one datagram (batched UDP only)."""
    tcp_queries: int = 0
    refused_clients: int = 0
    dropped: int = 0
    internal_errors: int = 0
    tcp_evictions: int = 0
    tcp_idle_closes: int = 0
    forward_overflow: int = 0


class DnsServer:
    """Serves whatever Responder is in ``self.responder``; assign a new one to swap zones."""

    def __init__(
        self,
        responder: Responder,
        *,
        allow: Iterable[Network],
        forward: Forward | None = None,
        forwarder: CallbackForwarder | None = None,
        limits: ServerLimits | None = None,
        udp_batching: bool = True,
    ) -> None:
        """``forwarder`` asks upstream for names not owned; ``forward``, a plain
        coroutine, is the alternative for callers without one (a task per query).
        ``udp_batching`` False keeps UDP on asyncio's transport even where
        recvmmsg is available."""
        self.respond = responder.respond
        """The current responder's ``respond``, kept beside it for the per-packet path."""
        self._responder = responder
        self.forwarder = forwarder
        self.forward = forwarder.forward if forwarder is not None else forward
        self.limits = limits or ServerLimits()
        self.counters = ServerCounters()
        self._allow = tuple(allow)
        self._allow_cache: dict[str, bool] = {}
        self._tcp: OrderedDict[_TcpProtocol, None] = OrderedDict()
        self._udp: list[UdpListener] = []
        self._tcp_servers: list[asyncio.Server] = []
        self.udp_pending = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._batch_calls = batch_calls() if udp_batching else None
        self.log_queries = False
        """Log every reply sent (client, name, type, rcode); see ``set_query_logging``."""

    @property
    def responder(self) -> Responder:
        return self._responder

    @responder.setter
    def responder(self, responder: Responder) -> None:
        """Swap zones: every query from now on is answered by ``responder``."""
        self._responder = responder
        self.respond = responder.respond

    # -- lifecycle -------------------------------------------------------------------------

    async def listen(self, endpoint: Endpoint) -> Endpoint:
        """Bind UDP and TCP on ``endpoint``; port 0 picks one free port for both."""
        loop = asyncio.get_running_loop()
        attempts = 20 if endpoint.port == 0 else 1
        for attempt in range(attempts):
            udp = await self._bind_udp(loop, endpoint)
            try:
                tcp = listening_socket(Endpoint(endpoint.host, udp.port), socket.SOCK_STREAM)
                server = await loop.create_server(
                    lambda: _TcpProtocol(self), sock=tcp, backlog=self._tcp_backlog()
                )
            except OSError:
                udp.close()
                if attempt + 1 == attempts:
                    raise
                continue
            self._udp.append(udp)
            udp.set_logging(self.log_queries)
            self._tcp_servers.append(server)
            return Endpoint(endpoint.host, udp.port)
        raise OSError(f"could not bind {endpoint}")  # pragma: no cover

    async def _bind_udp(self, loop: asyncio.AbstractEventLoop, endpoint: Endpoint) -> UdpListener:
        sock = listening_socket(endpoint, socket.SOCK_DGRAM)
        calls = self._batch_calls
        if calls is None:
            _transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=sock
            )
            return protocol
        try:
            listener = BatchUdpListener(self, sock, calls)
        except BaseException:
            sock.close()
            raise
        listener.start(loop)
        return listener

    async def close(self) -> None:
        """Stop accepting, close every connection and wait for forwards in flight."""
        for udp in self._udp:
            udp.close()
        for server in self._tcp_servers:
            server.close()
        for protocol in list(self._tcp):
            protocol.close()
        for task in list(self._tasks):
            task.cancel()
        if self.forwarder is not None:
            self.forwarder.close()
        for server in self._tcp_servers:
            await server.wait_closed()
        self._udp.clear()
        self._tcp_servers.clear()

    def set_query_logging(self, enabled: bool) -> None:
        """Turn query logging on or off, at no cost per query while it is off.

        UDP listeners check it once per batch, or swap in a logging wrapper of their
        transport; TCP replies check this flag (TCP is not the path that needs every
        cycle).
        """
        self.log_queries = enabled
        for udp in self._udp:
            udp.set_logging(enabled)

    # -- shared helpers --------------------------------------------------------------------

    def allowed(self, host: str) -> bool:
        """Whether a client address may use this server (cached per address)."""
        verdict = self._allow_cache.get(host)
        if verdict is None:
            verdict = client_allowed(host, self._allow)
            if len(self._allow_cache) >= _ALLOW_CACHE_MAX:
                self._allow_cache.clear()
            self._allow_cache[host] = verdict
        return verdict

    def answer(self, data: bytes, *, udp: bool) -> bytes | Question | None:
        try:
            return self._responder.respond(data, udp=udp)
        except Exception:  # Responder.respond already contains errors; belt and braces
            return self.failed(data)

    def failed(self, data: bytes) -> bytes | None:
        """The reply when answering raised (Responder.respond contains its own errors)."""
        self.counters.internal_errors += 1
        log.exception("internal error answering a query")
        return servfail(data)

    def spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forward_udp(self, question: Question, addr: Address, send: SendTo) -> None:
        """Ask upstream for a UDP client; ``send`` delivers the reply to ``addr``.

        Both UDP paths come here: a ``CallbackForwarder`` is given a callback, a
        plain ``forward`` coroutine a task.
        """
        if self.udp_pending >= self.limits.udp_max_pending_forwards:
            self.counters.forward_overflow += 1
            return
        self.udp_pending += 1
        forwarder = self.forwarder
        if forwarder is None:
            self.spawn(self._forward_udp_task(question, addr, send))
            return
        try:
            if not forwarder.start(question, True, partial(self._udp_forwarded, addr, send)):
                self.udp_pending -= 1  # the same question has clients enough waiting
                self.counters.forward_overflow += 1
        except Exception:
            self.counters.internal_errors += 1
            log.exception("internal error forwarding a query")
            self._udp_forwarded(addr, send, error_reply(question, wire.SERVFAIL, ra=True))

    def _udp_forwarded(self, addr: Address, send: SendTo, reply: bytes) -> None:
        self.udp_pending -= 1
        self._responder.stats.count_reply(reply)
        send(reply, addr)

    async def _forward_udp_task(self, question: Question, addr: Address, send: SendTo) -> None:
        try:
            reply = await self.forward_reply(question, udp=True)
            if reply is not None:
                send(reply, addr)
        finally:
            self.udp_pending -= 1

    async def forward_reply(self, question: Question, *, udp: bool) -> bytes | None:
        """Forwarded answer, or SERVFAIL when the forwarder fails in any way."""
        if self.forward is None:  # pragma: no cover - Responder only forwards when we can
            return None
        try:
            reply = await self.forward(question, udp)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.counters.internal_errors += 1
            log.exception("internal error forwarding a query")
            reply = error_reply(question, wire.SERVFAIL, ra=True)
        if reply is not None:
            self._responder.stats.count_reply(reply)
        return reply

    # -- TCP connection bookkeeping --------------------------------------------------------

    def tcp_opened(self, protocol: _TcpProtocol) -> None:
        while len(self._tcp) >= self.limits.tcp_max_connections:
            # The least recently active connection that waits on nothing of ours: one
            # whose question is being forwarded is not idle, and its client would get
            # nothing for a question already asked. All waiting: the oldest goes.
            connections = self._tcp
            victim = next((c for c in connections if not c.pending), None)
            if victim is None:
                victim = next(iter(connections))
            self.counters.tcp_evictions += 1
            victim.close()
            connections.pop(victim, None)
        self._tcp[protocol] = None

    def _tcp_backlog(self) -> int:
        """Connections the kernel queues before we accept them: asyncio's default of
        100 lost SYNs to a burst of glibc's TCP retries (TC answers), which then
        waited out a retransmit (1 s and more) though the cap had room."""
        return max(self.limits.tcp_max_connections, _MIN_BACKLOG)

    def tcp_active(self, protocol: _TcpProtocol) -> None:
        if protocol in self._tcp:
            self._tcp.move_to_end(protocol)

    def tcp_closed(self, protocol: _TcpProtocol) -> None:
        self._tcp.pop(protocol, None)

    @property
    def tcp_connections(self) -> int:
        return len(self._tcp)


class _LoggingUdpTransport:
    """Stands in for a UDP transport while query logging is on: logs, then sends."""

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport

    def sendto(self, data: bytes, addr: Address) -> None:
        log_reply(addr, "udp", data)
        self._transport.sendto(data, addr)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._transport.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.counters = server.counters
        self._allow_get = server._allow_cache.get
        self.transport: asyncio.DatagramTransport | None = None
        self._raw_transport: asyncio.DatagramTransport | None = None
        self._sendto: Callable[[bytes, tuple[str, int]], None] = _not_connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here.
        self.transport = self._raw_transport = cast(asyncio.DatagramTransport, transport)
        self._sendto = self.transport.sendto

    def set_logging(self, enabled: bool) -> None:
        """Swap the logging wrapper in or out: the hot path itself never tests a flag."""
        raw = self._raw_transport
        if raw is None:
            return
        self.transport = (
            cast(asyncio.DatagramTransport, _LoggingUdpTransport(raw)) if enabled else raw
        )
        self._sendto = self.transport.sendto

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # The per-packet path: every lookup it can skip is skipped. The allow-list
        # verdict comes from the server's per-address cache (filled by ``allowed``).
        server = self.server
        verdict = self._allow_get(addr[0])
        if not verdict and (verdict is False or not server.allowed(addr[0])):
            self.counters.refused_clients += 1
            return
        self.counters.udp_queries += 1
        try:
            reply: bytes | Question | None
            if len(data) > MAX_QUERY_BYTES:
                reply = server.responder.cut(data)
            else:
                reply = server.respond(data)
        except Exception:  # Responder.respond already contains errors; belt and braces
            reply = server.failed(data)
        if reply.__class__ is bytes:
            self._sendto(reply, addr)
        elif reply is None:
            self.counters.dropped += 1
        else:
            assert isinstance(reply, Question)
            server.forward_udp(reply, addr, self.send_one)

    def send_one(self, reply: bytes, addr: Address) -> None:
        """Send a reply from outside ``datagram_received`` (a forwarded answer)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(reply, addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def close(self) -> None:
        if self._raw_transport is not None:
            self._raw_transport.close()

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


def _not_connected(data: bytes, addr: tuple[str, int]) -> None:
    raise RuntimeError("a UDP reply before the transport was made")


class _TcpProtocol(asyncio.Protocol):
    """RFC 7766: length-prefixed messages, several per connection, replies in any order.

    Every pipelined query gets its answer (RFC 7766 6.2.1.1). A client with as many
    forwards pending as ``tcp_max_pending_per_connection`` is not read from until
    one is done; its messages already received wait in the buffer. A client that
    does not read its answers is not read from either (``pause_writing``), and its
    queries already received wait too, so its unsent replies stay within the
    transport's high-water mark plus one reply.
    """

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending = 0
        self.idle_timer: asyncio.TimerHandle | None = None
        self._paused: set[str] = set()
        """Why this connection is not read from: ``_FORWARDS``, ``_WRITES`` or both."""
        self._reading_paused = False
        self._unsent = 0
        """Reply bytes queued when the idle timer was armed: fewer later is progress."""
        self._eof = False
        """The client half-closed: it is answered what it asked, then the connection ends."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)
        peer = tcp.get_extra_info("peername")
        if not peer or not self.server.allowed(peer[0]):
            self.server.counters.refused_clients += 1
            tcp.abort()
            return
        self.server.tcp_opened(self)
        self._arm_idle_timer()

    def _arm_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(self.server.limits.tcp_idle_timeout, self._idle)
        self._unsent = _unsent_bytes(self.transport)

    def _idle(self) -> None:
        reading_answers = _unsent_bytes(self.transport) < self._unsent
        if self.pending or reading_answers:
            # Not idle while a query waits for its answer (RFC 7766 6.2.3; forwards
            # end within the forwarder's bounded time), nor while the client is
            # still taking the answers already queued for it, however slowly.
            self._arm_idle_timer()
            return
        self.server.counters.tcp_idle_closes += 1
        self.close()

    def close(self) -> None:
        """Close the connection; reset it when replies are still unsent.

        A graceful close waits for the client to read what is queued; one that never
        reads would keep its socket, and its replies in memory, for as long as it
        likes, outside the connection cap that just let it go.
        """
        transport = self.transport
        if transport is None:
            return
        if _unsent_bytes(transport):
            # Reset, not closed: a closed socket would keep sending what the kernel
            # holds (up to megabytes) to a client that reads slowly or not at all,
            # outside the cap, long after the agent let the connection go.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            transport.abort()
        elif not transport.is_closing():
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.server.tcp_closed(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._handle_buffered()

    def eof_received(self) -> bool:
        """A client may shut its side once its queries are sent: the answers still
        pending (forwards) are owed. True keeps the connection open to send them."""
        self._eof = True
        return not self._done_after_eof()

    def _done_after_eof(self) -> bool:
        """Whether a half-closed connection has nothing left to answer (a message cut
        short by the half-close never completes)."""
        buffer = self.buffer
        complete = len(buffer) >= 2 and len(buffer) >= 2 + (buffer[0] << 8 | buffer[1])
        return self._eof and not self.pending and not complete

    def _handle_buffered(self) -> None:
        """Handle each complete message buffered, while forwards may still be started."""
        buffer = self.buffer
        limit = self.server.limits.tcp_max_pending_per_connection
        queried = False
        while len(buffer) >= 2 and self.transport is not None:
            if _WRITES in self._paused:
                break  # the client is not reading: its queries wait until it does
            if self.pending >= limit:
                self._pause(_FORWARDS)
                break
            length = buffer[0] << 8 | buffer[1]
            if len(buffer) < 2 + length:
                break
            message = bytes(buffer[2 : 2 + length])
            del buffer[: 2 + length]
            queried = self._handle(message) or queried
        if queried:
            # Only queries count as activity: a client dribbling bytes of a message
            # that never completes, or sending frames that are dropped unanswered,
            # still meets the idle timeout.
            self._arm_idle_timer()
            self.server.tcp_active(self)

    def _handle(self, message: bytes) -> bool:
        """Answer or forward one message; False when it is dropped unanswered."""
        server = self.server
        server.counters.tcp_queries += 1
        if len(message) > MAX_QUERY_BYTES:
            reply: bytes | Question | None = server.responder.cut(message)
        else:
            reply = server.answer(message, udp=False)
        if reply.__class__ is bytes:
            self._send(reply)
        elif reply is None:
            server.counters.dropped += 1
            return False
        else:
            assert isinstance(reply, Question)
            self.pending += 1
            server.spawn(self._forward(reply))
        return True

    async def _forward(self, question: Question) -> None:
        try:
            reply = await self.server.forward_reply(question, udp=False)
            if reply is not None:
                self._send(reply)
        finally:
            self.pending -= 1
            if _FORWARDS in self._paused:
                self._paused.discard(_FORWARDS)
                self._handle_buffered()  # may pause again
                self._apply_pause()
            if self._done_after_eof() and self.transport is not None:
                self.transport.close()  # after the replies queued, which it flushes

    def _send(self, reply: bytes) -> None:
        if len(reply) > wire.MAX_MESSAGE:  # replies are bounded before: a bug, not the client
            log.error("internal error: a %d-byte reply cannot be framed over TCP", len(reply))
            return
        if self.transport is not None and not self.transport.is_closing():
            if self.server.log_queries:
                log_reply(self.transport.get_extra_info("peername"), "tcp", reply)
            self.transport.write(struct.pack("!H", len(reply)) + reply)

    def _pause(self, reason: str) -> None:
        self._paused.add(reason)
        self._apply_pause()

    def _apply_pause(self) -> None:
        """Read from the client exactly when nothing holds it back."""
        transport = self.transport
        paused = bool(self._paused)
        if transport is None or transport.is_closing() or paused == self._reading_paused:
            return
        self._reading_paused = paused
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def pause_writing(self) -> None:
        # A client that does not read its answers stops being read from.
        self._pause(_WRITES)

    def resume_writing(self) -> None:
        self._paused.discard(_WRITES)
        self._arm_idle_timer()  # the client read its answers: activity
        self._handle_buffered()  # may pause again
        self._apply_pause()


_FORWARDS = "forwards"
_WRITES = "writes"


def _unsent_bytes(transport: asyncio.Transport | None) -> int:
    """Reply bytes not yet taken by the client: queued in the transport, and in the
    kernel's send queue (Linux's SIOCOUTQ), which is where a slow reader's wait."""
    if transport is None:
        return 0
    unsent = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and _SIOCOUTQ is not None:
        with contextlib.suppress(OSError, ValueError):
            unsent += struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0" * 4))[0]
    return unsent


_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
"""SO_LINGER on, zero seconds: close() discards what is unsent and resets."""
_SIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if sys.platform == "linux" else None
"""The ioctl for a TCP socket's unsent bytes (SIOCOUTQ is TIOCOUTQ on Linux)."""
