"""Forwarding questions the view does not own to upstream resolvers.

Each upstream query gets an ID from ``secrets`` and a fresh connected UDP socket,
so a random source port, and the kernel drops datagrams from any other address;
a reply must also carry our ID and our question or it is ignored (and counted).
TC=1 means asking the same upstream over TCP; a timeout or an upstream error
means the next upstream; after a round with a timeout the upstreams are asked
again (a lost datagram is not a failure) until ``total_timeout``, and then the
client gets SERVFAIL, never NXDOMAIN. Identical questions in flight share one upstream
query, and a semaphore bounds how many are in flight at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from resolver.core import wire
from resolver.core.cache import AnswerCache, render_answer
from resolver.core.endpoints import Endpoint
from resolver.core.responder import Question, error_reply
from resolver.core.upstream_reply import UpstreamAnswer, parse_reply, query_message

log = logging.getLogger("tagdns.forwarder")


@dataclass(frozen=True)
class ForwarderLimits:
    attempt_timeout: float = 1.5
    """Seconds to wait for one upstream before trying the next."""
    total_timeout: float = 4.5
    """Seconds after which the client gets SERVFAIL whatever is left to try."""
    max_in_flight: int = 512


@dataclass
class ForwarderCounters:
    forwarded: int = 0
    cache_hits: int = 0
    coalesced: int = 0
    timeouts: int = 0
    ignored_replies: int = 0
    tcp_retries: int = 0
    upstream_errors: int = 0
    servfail: int = 0
    by_upstream_error: dict[str, int] = field(default_factory=dict)


class _ReplyCatcher(asyncio.DatagramProtocol):
    """Waits for the one datagram that answers our query on a connected socket."""

    def __init__(
        self, upstream: Endpoint, qid: bytes, key: bytes, counters: ForwarderCounters
    ) -> None:
        self.upstream = upstream
        self.qid = qid
        self.key = key
        self.counters = counters
        self.result: asyncio.Future[UpstreamAnswer | None] = (
            asyncio.get_running_loop().create_future()
        )

    def datagram_received(self, data: bytes, addr: tuple[str, int] | None) -> None:
        # The socket is connected, so the kernel already drops other sources; this
        # check is a second line (a link-local address's zone index may be spelt
        # differently by the kernel, so it is left out of the comparison).
        if addr is not None and (
            addr[1] != self.upstream.port
            or addr[0].split("%", 1)[0] != self.upstream.host.split("%", 1)[0]
        ):
            self.counters.ignored_replies += 1
            return
        answer = parse_reply(data, self.qid, self.key)
        if answer is None:
            self.counters.ignored_replies += 1
            return
        if not self.result.done():
            self.result.set_result(answer)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: this upstream will not answer.
        if not self.result.done():
            self.result.set_result(None)


class Forwarder:
    """Answers questions not owned, from the cache or from the upstreams in order."""

    def __init__(
        self,
        upstreams: Sequence[Endpoint],
        cache: AnswerCache,
        limits: ForwarderLimits | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError("a Forwarder needs at least one upstream")
        self.upstreams = tuple(upstreams)
        self.cache = cache
        self.limits = limits or ForwarderLimits()
        self.counters = ForwarderCounters()
        self._in_flight: dict[bytes, asyncio.Task[UpstreamAnswer | None]] = {}
        self._slots = asyncio.Semaphore(self.limits.max_in_flight)

    async def forward(self, question: Question, udp: bool) -> bytes:
        """Our reply to the client for a question not owned; SERVFAIL when all fail."""
        key = AnswerCache.key(question.key, question.do, bool(question.flags & wire.FLAG_CD))
        cached = self.cache.get(key)
        if cached is not None:
            self.counters.cache_hits += 1
            return self._render(question, *cached, udp=udp)
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._resolve(question, key))
            self._in_flight[key] = task
            task.add_done_callback(lambda _done: self._in_flight.pop(key, None))
        else:
            self.counters.coalesced += 1
        answer = await asyncio.shield(task)
        if answer is None:
            self.counters.servfail += 1
            return error_reply(question, wire.SERVFAIL, ra=True)
        return self._render(question, answer, answer.sections, udp=udp)

    @staticmethod
    def _render(q: Question, answer: UpstreamAnswer, sections: bytes, *, udp: bool) -> bytes:
        variant = (2 if q.do else 1) if q.edns else 0
        return render_answer(
            answer,
            sections,
            qid=q.qid,
            client_flags=q.flags,
            question=q.question,
            variant=variant,
            limit=q.udp_limit() if udp else None,
        )

    async def _resolve(self, question: Question, key: bytes) -> UpstreamAnswer | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.total_timeout
        async with self._slots:
            self.counters.forwarded += 1
            # Rounds over the upstreams until the deadline, so one lost datagram to a
            # single upstream is retried rather than answered with SERVFAIL; a new
            # round starts only if some upstream timed out (errors are not retried).
            retry = True
            while retry:
                retry = False
                for upstream in self.upstreams:
                    if deadline - loop.time() <= 0:
                        return None
                    answer, timed_out = await self._ask(upstream, question, deadline)
                    retry = retry or timed_out
                    if answer is None:
                        continue
                    if answer.rcode in (wire.SERVFAIL, wire.REFUSED, wire.NOTIMP, wire.FORMERR):
                        self._upstream_error(upstream, f"rcode {answer.rcode}")
                        continue
                    self.cache.put(key, answer)
                    return answer
        return None

    def _upstream_error(self, upstream: Endpoint, what: str) -> None:
        self.counters.upstream_errors += 1
        label = str(upstream)
        self.counters.by_upstream_error[label] = self.counters.by_upstream_error.get(label, 0) + 1
        log.debug("upstream %s: %s", upstream, what)

    async def _ask(
        self, upstream: Endpoint, question: Question, deadline: float
    ) -> tuple[UpstreamAnswer | None, bool]:
        """One attempt at one upstream: (answer or None, whether it timed out)."""
        loop = asyncio.get_running_loop()
        qid = secrets.token_bytes(2)
        cd = bool(question.flags & wire.FLAG_CD)
        message = query_message(qid, question.question, do=question.do, cd=cd)
        started = loop.time()
        timeout = min(self.limits.attempt_timeout, deadline - started)
        answer, timed_out = await self._ask_udp(upstream, qid, question.key, message, timeout)
        if answer is not None and answer.truncated:
            self.counters.tcp_retries += 1
            now = loop.time()
            # What is left of this attempt, but at least half an attempt for the
            # connection, and never past the client's deadline.
            tcp_timeout = min(max(timeout - (now - started), timeout / 2), deadline - now)
            if tcp_timeout <= 0:
                return None, True
            answer, timed_out = await self._ask_tcp(
                upstream, qid, question.key, message, tcp_timeout
            )
            if answer is not None and answer.truncated:  # TC over TCP: nothing whole to pass on
                self._upstream_error(upstream, "truncated reply over TCP")
                return None, False
        return answer, timed_out

    async def _ask_udp(
        self, upstream: Endpoint, qid: bytes, key: bytes, message: bytes, timeout: float
    ) -> tuple[UpstreamAnswer | None, bool]:
        loop = asyncio.get_running_loop()
        try:
            transport, catcher = await loop.create_datagram_endpoint(
                lambda: _ReplyCatcher(upstream, qid, key, self.counters),
                remote_addr=(upstream.host, upstream.port),
            )
        except OSError as exc:
            self._upstream_error(upstream, f"cannot send: {exc}")
            return None, False
        try:
            transport.sendto(message)
            return await asyncio.wait_for(catcher.result, timeout), False
        except TimeoutError:
            self.counters.timeouts += 1
            self._upstream_error(upstream, "timeout")
            return None, True
        finally:
            transport.close()

    async def _ask_tcp(
        self, upstream: Endpoint, qid: bytes, key: bytes, message: bytes, timeout: float
    ) -> tuple[UpstreamAnswer | None, bool]:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
                writer.write(struct.pack("!H", len(message)) + message)
                while True:
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    answer = parse_reply(await reader.readexactly(length), qid, key)
                    if answer is not None:
                        return answer, False
                    self.counters.ignored_replies += 1
        except TimeoutError:
            self.counters.timeouts += 1
            self._upstream_error(upstream, "TCP timeout")
            return None, True
        except (OSError, asyncio.IncompleteReadError) as exc:
            self._upstream_error(upstream, f"TCP: {exc}")
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        return None, False
