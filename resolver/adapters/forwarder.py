"""Forwarding questions the view does not own to upstream resolvers.

Each upstream query gets an ID from ``secrets`` (drawn 256 at a time: one
getrandom() call per 256 queries) and a fresh connected UDP socket, so a random
source port, and the kernel drops datagrams from any other address;
a reply must also carry our ID and our question or it is ignored (and counted).
TC=1 means asking the same upstream over TCP; a timeout or an upstream error
means the next upstream (an attempt that timed out still listens until the
question ends: a slow upstream's late answer is taken); after a round with a
timeout the upstreams are asked
again (a lost datagram is not a failure) until ``total_timeout``, and then the
client gets SERVFAIL, never NXDOMAIN (with an Extended DNS Error saying why:
``resolver.core.servfail_reason``). An upstream that timed out is asked after
the others for a while (``resolver.core.upstream_ranking``), and one that answers
FORMERR without an OPT is asked again without EDNS (RFC 6891 section 7).
While every upstream is down (each timed out twice in a row, none heard for a
deadline), clients are not kept waiting: a new question is still asked, but its
clients get SERVFAIL after ``down_wait``. Identical questions in flight share one upstream
query, and at most
``max_in_flight`` upstream queries are outstanding at once (the rest wait their
turn, their deadline running).

A cache miss is driven by callbacks on the event loop (a socket watched for
readability, a timer), not by a task per query: the coroutine machinery, a
datagram transport per query and the loop iterations they take cost more than
the rest of a miss together. Only the rare retry over TCP runs as a task.
Where the platform has epoll, the upstream sockets are watched by one epoll of
our own that the loop watches in turn: registering a socket there is one system
call, where the loop's ``add_reader``/``remove_reader`` build and tear down a poll
handle per socket, the largest single cost of a miss after the system calls that
send and receive. A reply goes to the client before the socket is closed and the
answer is cached, and the socket for a later query is made and added to the epoll
set then too (a small stock per address family, each socket used for one query
only), so none of that work is on the path the client waits on. Attempt
timeouts are not a loop timer each: the same watcher keeps them in a heap, under one
loop timer set for the earliest, and an answered attempt's entry is only marked dead.
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import math
import secrets
import select
import socket
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from resolver.core import wire
from resolver.core.cache import AnswerCache, render_answer
from resolver.core.endpoints import Endpoint
from resolver.core.owned_target import complete_with_owned
from resolver.core.query_stats import rcode_name
from resolver.core.responder import Question, error_reply
from resolver.core.servfail_reason import UpstreamFailure, servfail_option
from resolver.core.upstream_ranking import UpstreamRanking
from resolver.core.upstream_reply import UpstreamAnswer, failed, parse_reply, query_message
from resolver.core.zone import CompiledZone

log = logging.getLogger("tagdns.forwarder")

_MAX_DATAGRAM = 65535
_NONBLOCKING_DGRAM = socket.SOCK_DGRAM | getattr(socket, "SOCK_NONBLOCK", 0)
"""A datagram socket born non-blocking where the platform can (one system call fewer)."""
_BORN_NONBLOCKING = _NONBLOCKING_DGRAM != socket.SOCK_DGRAM

_DO_CD = tuple(AnswerCache.key(b"", do=bool(bits & 1), cd=bool(bits & 2)) for bits in range(4))

_WARN_EVERY = 60.0
"""Seconds between two warnings that one upstream did not answer in time."""

_TIMER_SLACK = 0.001
"""An attempt whose timeout is this close when the timer fires has timed out (loop
timers are kept in milliseconds and may fire a little early)."""

_IDS_PER_DRAW = 256

_DOWN_OPTION = wire.ede_option(
    wire.EDE_NO_REACHABLE_AUTHORITY,
    "every upstream timed out lately: not waited for, still asked in the background",
)
"""The Extended DNS Error of a SERVFAIL given at once while every upstream is down."""


def draw_query_ids() -> list[bytes]:
    """Two-byte transaction IDs from ``secrets``, a batch of them.

    Each ID is still two bytes of the system's CSPRNG, used once; drawn in batches,
    a miss no longer waits for a getrandom() call and the Python calls around it.
    """
    pool = secrets.token_bytes(2 * _IDS_PER_DRAW)
    return [pool[start : start + 2] for start in range(0, 2 * _IDS_PER_DRAW, 2)]


Deliver = Callable[[bytes], None]
"""Receives our reply to one client: called exactly once per ``start`` (unless closed)."""


@dataclass(frozen=True)
class ForwarderLimits:
    attempt_timeout: float = 1.5
    """Seconds to wait for one upstream before trying the next."""
    total_timeout: float = 4.5
    """Seconds after which the client gets SERVFAIL whatever is left to try."""
    max_in_flight: int = 512
    down_wait: float = 0.25
    """Seconds a client waits while every upstream is down (``UpstreamRanking.all_down``).
    The question is still asked, to its usual deadline, and an answer is cached (and
    ends the outage), but the client gets SERVFAIL then, not after ``total_timeout``:
    glibc tries each search domain in turn (``web1.ec2.internal`` before ``web1``)
    and keeps going after SERVFAIL, so with a dead upstream a fleet's own bare name
    took 9 to 34 s to resolve."""
    max_waiters: int = 256
    """Clients one question in flight answers at most. Identical questions cost no
    upstream work, but each waiting client holds a place among the server's pending
    UDP forwards: one name asked in a tight loop must not take them all."""


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
    answered: int = 0
    """Askers given an upstream's answer (a SERVFAIL of the agent's own is not one);
    counted when delivered, so the count never goes back."""
    completed: int = 0
    """Answers whose CNAME chain ended at an owned name, completed from the view."""
    internal_errors: int = 0
    """Questions a bug on the forwarding path ended in SERVFAIL."""
    by_upstream_error: dict[str, int] = field(default_factory=dict)


class Forwarder:
    """Answers questions not owned, from the cache or from the upstreams in order."""

    def __init__(
        self,
        upstreams: Sequence[Endpoint],
        cache: AnswerCache,
        limits: ForwarderLimits | None = None,
        zone: Callable[[], CompiledZone] | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError("a Forwarder needs at least one upstream")
        self.ranking = UpstreamRanking(upstreams)
        self._warned: dict[Endpoint, float] = {}
        """When each upstream's last "did not answer in time" was logged."""
        self._warning_open: set[Endpoint] = set()
        """Upstreams warned about and not heard from since."""
        self._last_answer = -math.inf
        """Loop time of the last answer from any upstream, late ones included (of the
        first question until one comes): down means quiet for a whole deadline."""
        self.cache = cache
        self.zone = zone
        """The zone being served, to complete a CNAME chain that ends at an owned
        name (``owned_target``); None: answers are passed on as they come."""
        self.limits = limits or ForwarderLimits()
        self.counters = ForwarderCounters()
        self._in_flight: dict[bytes, _Resolution] = {}
        self._running = 0
        self._waiting: deque[_Resolution] = deque()
        self._addresses: dict[Endpoint, tuple[socket.AddressFamily, tuple[Any, ...]]] = {}
        self._watcher: _Watcher | None = None
        self._ids: list[bytes] = []
        """Transaction IDs drawn and not used yet (``draw_query_ids``)."""

    @property
    def upstreams(self) -> tuple[Endpoint, ...]:
        return self.ranking.upstreams

    def use_upstreams(self, upstreams: Sequence[Endpoint]) -> None:
        """Forward to ``upstreams`` from now on (questions under way keep theirs); one
        still listed keeps its record of timeouts."""
        if not upstreams:
            raise ValueError("a Forwarder needs at least one upstream")
        kept = self.ranking.standings
        self.ranking = UpstreamRanking(upstreams)
        self.ranking.standings.update((u, s) for u, s in kept.items() if u in upstreams)
        # A question still under way with a dropped upstream resolves its address
        # again; without this, every upstream ever listed would be held for good.
        self._addresses = {u: a for u, a in self._addresses.items() if u in upstreams}

    def watcher(self, loop: asyncio.AbstractEventLoop) -> _Watcher:
        """What watches this forwarder's upstream sockets on ``loop`` (made on first use)."""
        watcher = self._watcher
        if watcher is None or watcher.loop is not loop:
            if watcher is not None:
                watcher.close()
            watcher = self._watcher = _Watcher(loop)
        return watcher

    def start(self, question: Question, udp: bool, deliver: Deliver) -> bool:
        """Answer a question not owned through ``deliver``, later or at once; False
        (and ``deliver`` never called) when the same question already has
        ``max_waiters`` clients waiting.

        The callback form of ``forward``, for the UDP server: no task per query.
        """
        # AnswerCache.key, from a table: the last byte is DO | CD << 1 (CD is 0x0010).
        key = question.key + _DO_CD[question.do | (question.flags & wire.FLAG_CD) >> 3]
        cached = self.cache.get(key)
        if cached is not None:
            self.counters.cache_hits += 1
            deliver(self._render(question, *cached, udp=udp))
            return True
        resolution = self._in_flight.get(key)
        if resolution is not None:
            if resolution.released:  # asked while every upstream is down: no wait
                self.counters.servfail += 1
                deliver(error_reply(question, wire.SERVFAIL, ra=True, options=_DOWN_OPTION))
                return True
            if len(resolution.waiters) >= self.limits.max_waiters:
                return False
            self.counters.coalesced += 1
            resolution.waiters.append((question, udp, deliver))
            return True
        loop = asyncio.get_running_loop()
        resolution = _Resolution(self, loop, question, key, loop.time() + self.limits.total_timeout)
        resolution.waiters.append((question, udp, deliver))
        self._in_flight[key] = resolution
        now = loop.time()
        if self._last_answer == -math.inf:  # the first question: count quiet time from it
            self._last_answer = now
        if self.ranking.all_down() and now - self._last_answer > self.limits.total_timeout:
            resolution.release_after(self.limits.down_wait)
        if self._running < self.limits.max_in_flight:
            self._running += 1
            self.counters.forwarded += 1
            resolution.next_attempt()
        else:
            self._waiting.append(resolution)
        return True

    async def forward(self, question: Question, udp: bool) -> bytes:
        """Our reply to the client for a question not owned; SERVFAIL when all fail."""
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def deliver(data: bytes) -> None:
            if not reply.done():  # done: the asker was cancelled meanwhile
                reply.set_result(data)

        if not self.start(question, udp, deliver):
            return error_reply(question, wire.SERVFAIL, ra=True)
        return await reply

    @property
    def in_flight(self) -> int:
        """Questions being resolved or waiting for a slot."""
        return len(self._in_flight)

    def close(self) -> None:
        """Abandon every upstream query in flight; their clients get no reply."""
        for resolution in list(self._in_flight.values()):
            resolution.abandon()
        self._in_flight.clear()
        self._waiting.clear()
        self._running = 0
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    def completed(self, answer: UpstreamAnswer, key: bytes) -> UpstreamAnswer:
        """``answer``, its CNAME chain completed if it ends at an owned name (counted)."""
        if self.zone is None:
            return answer
        completed = complete_with_owned(answer, key, self.zone())
        if completed is not answer:
            self.counters.completed += 1
        return completed

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

    def _finished(self, resolution: _Resolution, answer: UpstreamAnswer | None) -> None:
        """Free the slot, start a waiting resolution, and reply to every asker."""
        if self._in_flight.get(resolution.key) is resolution:
            del self._in_flight[resolution.key]
        self._running -= 1
        if self._waiting and self._running < self.limits.max_in_flight:
            waiting = self._waiting.popleft()
            self._running += 1
            self.counters.forwarded += 1
            # On the next loop pass: a chain of upstreams failing at once must not recurse.
            resolution.loop.call_soon(waiting.next_attempt)
        options = b"" if answer is not None else resolution.servfail_option()
        for question, udp, deliver in resolution.waiters:
            if answer is None:
                self.counters.servfail += 1
                reply = error_reply(question, wire.SERVFAIL, ra=True, options=options)
            else:
                self.counters.answered += 1
                reply = self._render(question, answer, answer.sections, udp=udp)
            try:
                deliver(reply)
            except Exception:
                log.exception("internal error delivering a forwarded reply")

    def _address(self, upstream: Endpoint) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
        """The upstream's socket address, resolved once (numeric only: no lookup, no I/O)."""
        found = self._addresses.get(upstream)
        if found is None:
            family, _type, _proto, _name, address = socket.getaddrinfo(
                upstream.host,
                upstream.port,
                type=socket.SOCK_DGRAM,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )[0]
            found = self._addresses[upstream] = (family, address)
        return found

    def _timed_out(self, upstream: Endpoint, now: float, what: str, *, waited: float) -> None:
        """An attempt given ``waited`` seconds went unanswered.

        Only an attempt given its full time counts against the upstream's place: one
        cut short by the question's deadline (after a wait for a slot, say) proves
        nothing about a resolver that answers in more than what was left.
        """
        self.counters.timeouts += 1
        self._upstream_error(upstream, what)
        if waited < self.limits.attempt_timeout - _TIMER_SLACK:
            return
        standing = self.ranking.timed_out(upstream, now)
        if standing is None or upstream in self._warning_open:
            return
        # Once a minute at most: an upstream that always answers a little late (taken,
        # see _linger) would otherwise log this and "answers again" every question. A
        # timeout in that minute leaves the warning to a later one in the same run.
        if now - self._warned.get(upstream, -math.inf) < _WARN_EVERY:
            return
        self._warned[upstream] = now
        self._warning_open.add(upstream)
        others = len(self.ranking.upstreams) > 1
        log.warning(
            "upstream %s did not answer in time%s",
            upstream,
            ": asked after the others for now" if others else "",
        )

    def _answered(self, upstream: Endpoint) -> None:
        """``upstream`` answered: it takes its place again if it had been timing out.

        Also the time of the last answer: an upstream that answers every question
        late (after an attempt timed out, before the next) times out in a row while
        answering, and is not down (``down_wait``) while answers keep coming."""
        self._last_answer = asyncio.get_running_loop().time()
        # Said once after each warning.
        if (
            self.ranking.standings
            and self.ranking.answered(upstream)
            and upstream in self._warning_open
        ):
            self._warning_open.discard(upstream)
            log.info("upstream %s answers again", upstream)

    def _upstream_error(self, upstream: Endpoint, what: str) -> None:
        self.counters.upstream_errors += 1
        label = str(upstream)
        self.counters.by_upstream_error[label] = self.counters.by_upstream_error.get(label, 0) + 1
        log.debug("upstream %s: %s", upstream, what)

    async def _ask_tcp(
        self, upstream: Endpoint, qid: bytes, key: bytes, message: bytes, timeout: float
    ) -> tuple[UpstreamAnswer | None, bool]:
        """One attempt over TCP: (answer or None, whether it timed out)."""
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
            loop = asyncio.get_running_loop()
            self._timed_out(upstream, loop.time(), "TCP timeout", waited=timeout)
            return None, True
        except (OSError, asyncio.IncompleteReadError) as exc:
            self._upstream_error(upstream, f"TCP: {exc}")
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        return None, False


class _Late(NamedTuple):
    """An attempt that timed out, kept listening (``_Resolution._linger``)."""

    sock: _socket.socket
    fd: int
    qid: bytes
    upstream: Endpoint


class _Resolution:
    """One question on its way through the upstreams, shared by every client asking it.

    Rounds over the upstreams until the deadline, so one lost datagram to a single
    upstream is retried rather than answered with SERVFAIL; a new round starts only
    if some upstream timed out (errors are not retried).
    """

    __slots__ = (
        "attempt_started",
        "attempt_timeout",
        "deadline",
        "done",
        "failures",
        "fd",
        "forwarder",
        "index",
        "internal_error",
        "key",
        "lingering",
        "loop",
        "message",
        "order",
        "plain",
        "qid",
        "question",
        "release_handle",
        "released",
        "retry",
        "sock",
        "tcp_task",
        "timer",
        "waiters",
        "watcher",
    )

    def __init__(
        self,
        forwarder: Forwarder,
        loop: asyncio.AbstractEventLoop,
        question: Question,
        key: bytes,
        deadline: float,
    ) -> None:
        self.forwarder = forwarder
        self.loop = loop
        self.question = question
        self.key = key
        """The cache key (question plus DO and CD), which also keys ``_in_flight``."""
        self.deadline = deadline
        self.waiters: list[tuple[Question, bool, Deliver]] = []
        self.order = forwarder.ranking.order(loop.time())
        """The upstreams in the order this question asks them."""
        self.index = 0
        self.retry = False
        self.done = False
        self.plain: Endpoint | None = None
        """The upstream that answered FORMERR without an OPT: only it is asked plainly."""
        self.qid = b""
        self.message = b""
        self.sock: _socket.socket | None = None
        self.fd = -1
        self.timer: list[Any] | None = None
        """This attempt's entry in the watcher's timeout heap, while the attempt runs."""
        self.watcher: _Watcher
        self.tcp_task: asyncio.Task[tuple[UpstreamAnswer | None, bool]] | None = None
        self.failures: dict[Endpoint, UpstreamFailure] = {}
        """What each upstream asked last did, for the SERVFAIL's Extended DNS Error."""
        self.internal_error = False
        self.attempt_started = 0.0
        self.attempt_timeout = 0.0
        self.lingering: list[_Late] = []
        """Earlier attempts that timed out, still heard until the question ends."""
        self.released = False
        """Its clients were given SERVFAIL while every upstream was down; it goes on."""
        self.release_handle: asyncio.TimerHandle | None = None

    @property
    def upstream(self) -> Endpoint:
        return self.order[self.index]

    def next_attempt(self) -> None:
        """Ask the upstream at ``index`` (or the next that can be asked), or give up."""
        if self.done:
            return
        upstreams = self.order
        while True:
            if self.index >= len(upstreams):
                if not self.retry:
                    self._finish(None)
                    return
                self.retry = False
                self.index = 0
            now = self.loop.time()
            if self.deadline - now <= 0:
                self._finish(None)
                return
            if self._send_udp(upstreams[self.index], now):
                return
            self.index += 1

    def _send_udp(self, upstream: Endpoint, now: float) -> bool:
        """Send the query from a fresh socket and watch it; False if it could not be sent."""
        forwarder = self.forwarder
        question = self.question
        ids = forwarder._ids
        if not ids:
            ids.extend(draw_query_ids())
        self.qid = qid = ids.pop()
        self.message = query_message(
            qid,
            question.question,
            do=question.do,
            cd=bool(question.flags & wire.FLAG_CD),
            edns=upstream != self.plain,
        )
        try:
            watcher = forwarder.watcher(self.loop)
            family, address = forwarder._address(upstream)
            sock = watcher.open_socket(family, self._readable)
        except OSError as exc:  # socket.gaierror included
            forwarder._upstream_error(upstream, f"cannot send: {exc}")
            self._note(f"could not be asked ({_reason(exc)})")
            return False
        fd = sock.fileno()
        try:
            # A fresh socket per query: connect() has the kernel pick a random source
            # port, and makes it drop datagrams from anyone but the upstream.
            sock.connect(address)
            sock.send(self.message)
        except OSError as exc:
            watcher.unwatch(fd)
            sock.close()
            forwarder._upstream_error(upstream, f"cannot send: {exc}")
            self._note(f"could not be asked ({_reason(exc)})")
            return False
        self.sock = sock
        self.fd = fd
        self.watcher = watcher
        self.attempt_started = now
        self.attempt_timeout = timeout = min(forwarder.limits.attempt_timeout, self.deadline - now)
        self.timer = watcher.expire_at(now + timeout, self)
        return True

    def _stop_udp(self) -> None:
        if self.timer is not None:
            self.watcher.cancel(self.timer)
            self.timer = None
        sock = self.sock
        if sock is not None:
            watcher = self.watcher
            watcher.unwatch(self.fd)
            sock.close()
            self.sock = None
            watcher.restock(sock.family)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            while True:
                try:
                    data = sock.recv(_MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    # ICMP port unreachable and the like: this upstream will not answer.
                    self._stop_udp()
                    self.forwarder._upstream_error(self.upstream, f"unreachable: {exc}")
                    self._note(f"unreachable ({_reason(exc)})")
                    self._next_upstream()
                    return
                answer = parse_reply(data, self.qid, self.question.key)
                if answer is None:  # not ours: another ID or another question
                    self.forwarder.counters.ignored_replies += 1
                    continue
                if answer.truncated or failed(answer):
                    self._stop_udp()
                    self._answered_over_udp(answer)
                    return
                self._take(answer, self.upstream)  # the common case
                return
        except Exception:
            self._failed()

    def _take(self, answer: UpstreamAnswer, upstream: Endpoint) -> None:
        """A good answer over UDP, on time or late, in the order the client waits
        for: reply first, then close the sockets and cache it (as of its arrival)."""
        forwarder = self.forwarder
        cache = forwarder.cache
        arrived = cache.clock()
        answer = cache.admit(forwarder.completed(answer, self.question.key))
        self._finish(answer)
        self._stop_udp()
        if self.tcp_task is not None:
            self.tcp_task.cancel()
        cache.put(self.key, answer, arrived)
        forwarder._answered(upstream)  # a late one too: slow, not gone, so not down

    def _linger(self) -> None:
        """Keep the attempt that timed out listening until the question ends.

        An upstream slower than an attempt (1.5 s) would otherwise never be heard:
        each of its answers would reach a socket closed for the next attempt, and the
        question end in SERVFAIL at its deadline (dnsmasq and unbound take a late
        answer). The next attempt still goes out; the first good answer wins.
        """
        sock = self.sock
        if sock is None:
            return
        late = _Late(sock, self.fd, self.qid, self.upstream)
        self.watcher.rewatch(self.fd, functools.partial(self._late_readable, late))
        self.lingering.append(late)
        self.sock = None

    def _late_readable(self, late: _Late) -> None:
        """A reply to an attempt that timed out: a good answer ends the question."""
        try:
            while True:
                try:
                    data = late.sock.recv(_MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:  # ICMP and the like: that attempt is over for good
                    self._close_late(late)
                    return
                answer = parse_reply(data, late.qid, self.question.key)
                if answer is None:
                    self.forwarder.counters.ignored_replies += 1
                    continue
                if answer.truncated or failed(answer):
                    if failed(answer):  # what it said, not "timed out", goes in our SERVFAIL
                        self._note(
                            _failure_phrase(answer),
                            answered=True,
                            extended_error=answer.extended_error,
                            upstream=late.upstream,
                        )
                    self._close_late(late)  # the attempt under way decides
                    return
                log.debug("upstream %s answered after its attempt timed out", late.upstream)
                self._take(answer, late.upstream)
                return
        except Exception:
            self._failed()

    def _close_late(self, late: _Late) -> None:
        if late in self.lingering:
            self.lingering.remove(late)
            self.watcher.unwatch(late.fd)
            late.sock.close()
            self.watcher.restock(late.sock.family)

    def _stop_lingering(self) -> None:
        lingering, self.lingering = self.lingering, []
        for late in lingering:
            self.watcher.unwatch(late.fd)
            late.sock.close()
        for family in {late.sock.family for late in lingering}:
            self.watcher.restock(family)

    def _expired(self) -> None:
        self.timer = None
        try:
            self._linger()
            self.forwarder._timed_out(
                self.upstream, self.loop.time(), "timeout", waited=self.attempt_timeout
            )
            self._note("timed out")
            self.retry = True
            self._next_upstream()
        except Exception:
            self._failed()

    def _answered_over_udp(self, answer: UpstreamAnswer) -> None:
        if not answer.truncated:
            self._judge(answer)
            return
        forwarder = self.forwarder
        forwarder.counters.tcp_retries += 1
        now = self.loop.time()
        timeout = self.attempt_timeout
        # What is left of this attempt, but at least half an attempt for the
        # connection, and never past the client's deadline.
        tcp_timeout = min(
            max(timeout - (now - self.attempt_started), timeout / 2), self.deadline - now
        )
        if tcp_timeout <= 0:
            self._note("answered with TC, and no time was left to ask over TCP", answered=True)
            self.retry = True
            self._next_upstream()
            return
        task = self.loop.create_task(
            forwarder._ask_tcp(
                self.upstream, self.qid, self.question.key, self.message, tcp_timeout
            )
        )
        self.tcp_task = task
        task.add_done_callback(self._answered_over_tcp)

    def _answered_over_tcp(self, task: asyncio.Task[tuple[UpstreamAnswer | None, bool]]) -> None:
        self.tcp_task = None
        if task.cancelled() or self.done:
            return
        try:
            answer, timed_out = task.result()
            self.retry = self.retry or timed_out
            if answer is not None and answer.truncated:  # TC over TCP: nothing whole to pass on
                self.forwarder._upstream_error(self.upstream, "truncated reply over TCP")
                self._note("sent a truncated reply over TCP", answered=True)
                answer = None
            elif answer is None:
                self._note("timed out over TCP" if timed_out else "failed over TCP")
            if answer is None:
                self._next_upstream()
            else:
                self._judge(answer)
        except Exception:
            self._failed()

    def _judge(self, answer: UpstreamAnswer) -> None:
        forwarder = self.forwarder
        if answer.malformed:  # not passed on nor cached: the next upstream, at once
            forwarder._upstream_error(self.upstream, "malformed reply")
            self._note(_failure_phrase(answer), answered=True)
            self._next_upstream()
            return
        if failed(answer):
            if answer.rcode == wire.FORMERR and not answer.edns and self.plain != self.upstream:
                # RFC 6891 section 7: a server without EDNS answers FORMERR without an
                # OPT; ask it again plainly (DO cannot travel without EDNS). The other
                # upstreams keep EDNS, and with it DO and the larger payload.
                log.debug("upstream %s: FORMERR without EDNS: asking plainly", self.upstream)
                self.plain = self.upstream
                self.next_attempt()
                return
            forwarder._upstream_error(self.upstream, f"rcode {answer.rcode}")
            self._note(_failure_phrase(answer), answered=True, extended_error=answer.extended_error)
            self._next_upstream()
            return
        answer = forwarder.cache.admit(forwarder.completed(answer, self.question.key))
        forwarder.cache.put(self.key, answer)
        self._finish(answer)
        forwarder._answered(self.upstream)

    def _next_upstream(self) -> None:
        self.index += 1
        self.next_attempt()

    def _failed(self) -> None:
        """A bug on this path must not leave the question hanging: SERVFAIL, logged."""
        log.exception("internal error forwarding a query")
        self.forwarder.counters.internal_errors += 1
        self.internal_error = True
        self._stop_udp()
        if not self.done:
            self._finish(None)

    def _note(
        self,
        what: str,
        *,
        answered: bool = False,
        extended_error: tuple[int, str] | None = None,
        upstream: Endpoint | None = None,
    ) -> None:
        """Remember what an upstream (default: the one being asked) did when it failed
        (``what``, a phrase); ``answered``: it replied, with an error (and
        ``extended_error``)."""
        if upstream is None:
            upstream = self.upstream
        earlier = self.failures.get(upstream)
        if not answered and earlier is not None and earlier.answered:
            return  # what it answered, even late, says more than a later timeout
        self.failures[upstream] = UpstreamFailure(str(upstream), what, answered, extended_error)

    def servfail_option(self) -> bytes:
        """The Extended DNS Error for this question's SERVFAIL."""
        return servfail_option(self.failures.values(), internal_error=self.internal_error)

    def release_after(self, delay: float) -> None:
        """Give the clients SERVFAIL after ``delay`` unless answered by then (every
        upstream is down); the question is still asked, to its deadline."""
        self.release_handle = self.loop.call_later(delay, self._release)

    def _release(self) -> None:
        self.release_handle = None
        if self.done:
            return
        self.released = True
        waiters, self.waiters = self.waiters, []
        forwarder = self.forwarder
        for question, _udp, deliver in waiters:
            forwarder.counters.servfail += 1
            try:
                deliver(error_reply(question, wire.SERVFAIL, ra=True, options=_DOWN_OPTION))
            except Exception:
                log.exception("internal error delivering a forwarded reply")

    def _finish(self, answer: UpstreamAnswer | None) -> None:
        if self.done:
            return
        self.done = True
        if self.release_handle is not None:
            self.release_handle.cancel()
            self.release_handle = None
        self.forwarder._finished(self, answer)
        self._stop_lingering()  # after the replies went out

    def abandon(self) -> None:
        self.done = True
        if self.release_handle is not None:
            self.release_handle.cancel()
            self.release_handle = None
        self._stop_udp()
        self._stop_lingering()
        if self.tcp_task is not None:
            self.tcp_task.cancel()


def _failure_phrase(answer: UpstreamAnswer) -> str:
    """What an upstream's failed reply did, as our SERVFAIL's Extended DNS Error says."""
    if answer.malformed:
        return "sent a malformed reply"
    return f"answered {rcode_name(answer.rcode)}"


def _reason(exc: OSError) -> str:
    """An OS error as a client may read it: ``Connection refused``, not ``[Errno 111] ...``."""
    return exc.strerror or str(exc) or type(exc).__name__


_STOCK = 4
"""Unused upstream sockets kept ready per address family (each serves one query)."""


def _new_socket(family: int) -> _socket.socket:
    """An unconnected non-blocking datagram socket.

    The C socket type itself: the Python wrapper's constructor and close() are
    frames of their own, and nothing here needs what they add.
    """
    sock = _socket.socket(family, _NONBLOCKING_DGRAM)
    if not _BORN_NONBLOCKING:
        sock.setblocking(False)
    return sock


class _Watcher:
    """Calls a callback when an upstream socket is readable, and expires attempts.

    With epoll: one epoll set of our own, watched by the loop; a socket joins it with
    one ``epoll_ctl`` and leaves it by being closed (or by ``unwatch``). Elsewhere the
    loop's ``add_reader``/``remove_reader``.

    Attempt timeouts: a heap of ``[when, order, resolution]`` entries and one loop
    timer for the earliest, moved only when an earlier one arrives. Cancelling marks
    the entry dead (``resolution`` None); dead entries are dropped when they reach the
    top, or all at once when they are most of the heap.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._deadlines: list[list[Any]] = []
        self._dead = 0
        self._order = itertools.count()
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        self._stock: dict[int, list[_socket.socket]] = {}
        """Unused sockets by family, made ahead of need and already in the epoll set."""
        self._stocked: set[int] = set()
        """Their descriptors."""
        self._closed = False
        self._epoll: select.epoll | None = None
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            loop.add_reader(self._epoll.fileno(), self._ready)

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        if self._epoll is None:
            self.loop.add_reader(fd, callback)
            return
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def open_socket(self, family: int, callback: Callable[[], None]) -> _socket.socket:
        """A new datagram socket, never used before, watched with ``callback``.

        Taken from the stock when there is one: making a socket and adding it to the
        epoll set are two system calls that then happen after an earlier reply went
        out (``restock``), not between a client's query and ours.
        """
        stock = self._stock.get(family)
        if stock:
            sock = stock.pop()
            self._stocked.discard(sock.fileno())
            if self._epoll is None:
                self.loop.add_reader(sock.fileno(), callback)
            else:
                self._callbacks[sock.fileno()] = callback
            return sock
        sock = _new_socket(family)
        try:
            self.watch(sock.fileno(), callback)
        except BaseException:
            sock.close()
            raise
        return sock

    def rewatch(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` instead when ``fd``, already watched, is readable."""
        if self._epoll is None:
            self.loop.add_reader(fd, callback)
        else:
            self._callbacks[fd] = callback

    def restock(self, family: int) -> None:
        """Fill the stock for later ``open_socket`` calls.

        Filled whole, not one socket per call: after the first question forwarded
        the agent holds a fixed set of descriptors (this epoll set and the stock), so
        a count of open descriptors that keeps rising is a leak, not the stock.
        """
        if self._closed:  # an attempt ending after close(): nothing left to stock for
            return
        stock = self._stock.get(family)
        if stock is None:
            stock = self._stock[family] = []
        while len(stock) < _STOCK:
            try:
                sock = _new_socket(family)
            except OSError:  # out of descriptors, say: open_socket will say so when asked
                return
            if self._epoll is not None:
                try:
                    self._epoll.register(sock.fileno(), select.EPOLLIN)
                except OSError:
                    sock.close()
                    return
            stock.append(sock)
            self._stocked.add(sock.fileno())

    def unwatch(self, fd: int) -> None:
        """Stop watching ``fd``; the caller closes it next, which also leaves the epoll set."""
        if self._epoll is None:
            self.loop.remove_reader(fd)
            return
        self._callbacks.pop(fd, None)

    def _ready(self) -> None:
        assert self._epoll is not None
        epoll = self._epoll
        callbacks = self._callbacks
        for fd, _events in epoll.poll(0):
            callback = callbacks.get(fd)
            if callback is not None:
                callback()
            elif fd not in self._stocked:  # unwatched but not closed (yet): it must not
                # keep the loop spinning. A stale event of this batch may name the number
                # of a socket just closed and reused by the stock, which must stay in.
                with contextlib.suppress(OSError):
                    epoll.unregister(fd)

    def expire_at(self, when: float, resolution: _Resolution) -> list[Any]:
        """Call ``resolution._expired()`` at ``when`` unless the entry returned is cancelled."""
        entry = [when, next(self._order), resolution]
        heapq.heappush(self._deadlines, entry)
        if when < self._sweep_at:
            self._arm(when)
        return entry

    def cancel(self, entry: list[Any]) -> None:
        """Mark a pending entry from ``expire_at`` dead."""
        entry[2] = None
        self._dead = dead = self._dead + 1
        deadlines = self._deadlines
        if dead > 64 and dead * 2 > len(deadlines):
            deadlines[:] = [live for live in deadlines if live[2] is not None]
            heapq.heapify(deadlines)
            self._dead = 0

    def _arm(self, when: float) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        self._sweep_handle = self.loop.call_at(when, self._sweep)
        self._sweep_at = when

    def _sweep(self) -> None:
        self._sweep_handle = None
        self._sweep_at = math.inf
        deadlines = self._deadlines
        due_by = self.loop.time() + _TIMER_SLACK
        due: list[_Resolution] = []
        # Collect first, then expire: an expiry starts the next attempt, whose
        # entry must wait for a later sweep even if it is due already.
        while deadlines and deadlines[0][0] <= due_by:
            resolution = heapq.heappop(deadlines)[2]
            if resolution is None:
                self._dead -= 1
            else:
                resolution.timer = None
                due.append(resolution)
        while deadlines and deadlines[0][2] is None:
            heapq.heappop(deadlines)
            self._dead -= 1
        if deadlines:
            self._arm(deadlines[0][0])
        for resolution in due:
            if not resolution.done:
                resolution._expired()

    def close(self) -> None:
        self._closed = True
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        self._sweep_at = math.inf
        self._deadlines.clear()
        self._dead = 0
        if self._epoll is not None and not self._epoll.closed:
            with contextlib.suppress(Exception):  # the loop may already be closed
                self.loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
        self._callbacks.clear()
        for stock in self._stock.values():
            for sock in stock:
                sock.close()
        self._stock.clear()
        self._stocked.clear()
