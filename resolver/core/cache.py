"""A bounded cache of upstream answers that honours their TTLs.

Entries are keyed by the lowercased question plus the client's DO and CD bits
(DNSSEC answers differ, and an answer fetched with checking disabled must not
reach a client that wants it checked). Lifetimes come from the answer (RFC 2308
for negative ones), capped, and so are the TTLs replayed to clients. When the
cache is full, entries go oldest first, except that one used since it was last
looked at gets a second chance (moved to the back, its mark cleared): close to
least recently used, without reordering the cache on every hit. The clock is
injected so tests control time.

A hit on the responder's fast path (``replay``) is one dictionary lookup, a
header from the entry's small table of headers (one per client flag and EDNS
combination seen), and the sections with their TTLs counted down, which are
rebuilt at most once a second per entry. The OPT that ends the reply is the
entry's too: ours, carrying the upstream's Extended DNS Error when it gave one.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Container
from dataclasses import dataclass

from resolver.core import wire
from resolver.core.owned_target import starts_a_chain
from resolver.core.upstream_reply import UpstreamAnswer, aged_sections, capped

_FLAG_AD = wire.FLAG_AD
_CLIENT_FLAGS = wire.FLAG_RD | wire.FLAG_CD
_HEAD_FLAGS = _CLIENT_FLAGS | _FLAG_AD
"""The client's header bits our reply's header depends on (with the EDNS variant)."""
_OPT_BY_VARIANT = wire.OPT_BY_VARIANT
_COUNTS = struct.Struct("!HHHHH")


@dataclass(frozen=True)
class CacheLimits:
    max_entries: int = 10_000
    max_bytes: int = 16 * 1024 * 1024
    """Bound on the stored record bytes: a few large (TCP-sized) answers cannot crowd memory."""
    max_ttl: int = 3600
    max_negative_ttl: int = 900


class _Entry:
    __slots__ = ("answer", "expires", "heads", "opts", "second", "sections", "stored", "used")

    def __init__(self, answer: UpstreamAnswer, stored: float, expires: float) -> None:
        self.answer = answer
        self.stored = stored
        self.expires = expires
        self.second = 0
        self.sections = answer.sections
        self.heads: dict[int, bytes] = {}
        """Header after the ID (flags and counts) by client flags and EDNS variant."""
        self.opts = _opts(answer)
        """What follows the sections, by EDNS variant (``wire.OPT_BY_VARIANT`` but for
        an upstream's Extended DNS Error)."""
        self.used = False


class AnswerCache:
    """Upstream answers by question; ``lookup`` replays one as a reply for a client."""

    def __init__(
        self, limits: CacheLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or CacheLimits()
        self.clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(question_key: bytes, do: bool, cd: bool = False) -> bytes:
        """The question key plus one byte for the DO and CD bits."""
        return question_key + bytes((do | cd << 1,))

    def put(self, key: bytes, answer: UpstreamAnswer, now: float | None = None) -> None:
        """Store a cacheable answer; others (no lifetime, truncated) are ignored.

        ``now`` is when the answer arrived, if the caller read the clock then (the
        forwarder replies to its client first and stores the answer after).
        """
        lifetime = answer.lifetime
        if lifetime is None or lifetime <= 0 or answer.truncated:
            return
        answer = self.admit(answer)
        lifetime = answer.lifetime
        assert lifetime is not None
        if now is None:
            now = self.clock()
        self._drop(key)
        entries = self._entries
        entries[key] = _Entry(answer, now, now + lifetime)
        self._bytes += len(answer.sections)
        while len(entries) > self.limits.max_entries or self._bytes > self.limits.max_bytes:
            oldest = next(iter(entries))
            entry = entries[oldest]
            if oldest == key or entry.used:
                # A second chance; the new entry is never the one to make room for itself.
                entry.used = False
                entries.move_to_end(oldest)
                if oldest == key and len(entries) == 1:
                    self._drop(key)  # larger than the byte cap on its own
            else:
                self._drop(oldest)

    def admit(self, answer: UpstreamAnswer) -> UpstreamAnswer:
        """The answer as it may be passed on: no TTL longer than this cache keeps it.

        The first client gets it so too, not only the ones served from the cache.
        """
        negative = answer.rcode != wire.NOERROR or answer.an == 0
        cap = self.limits.max_negative_ttl if negative else self.limits.max_ttl
        if (answer.lifetime or 0) > cap or max(answer.ttls, default=0) > cap:
            return capped(answer, cap)
        return answer

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.answer.sections)

    @property
    def stored_bytes(self) -> int:
        return self._bytes

    def _live(self, key: bytes) -> _Entry | None:
        """The entry, its sections counted down to now; None (and counted) if absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        now = self.clock()
        if now >= entry.expires:
            self._drop(key)
            self.misses += 1
            return None
        elapsed = int(now - entry.stored)
        if elapsed != entry.second:
            entry.second = elapsed
            entry.sections = aged_sections(entry.answer, elapsed)
        entry.used = True
        self.hits += 1
        return entry

    def get(self, key: bytes) -> tuple[UpstreamAnswer, bytes] | None:
        """The answer and its sections with TTLs counted down, or None if absent or expired."""
        entry = self._live(key)
        return None if entry is None else (entry.answer, entry.sections)

    def replay(
        self, key: bytes, query: bytes, qend: int, variant: int, limit: int | None
    ) -> bytes | None:
        """The cached answer as our reply to ``query``, or None if absent or expired.

        ``query`` is the client's message, its question ending at ``qend`` (its ID,
        flags and letter case are echoed); ``variant`` and ``limit`` as for
        ``render_answer``.
        """
        entry = self._live(key)
        if entry is None:
            return None
        client_flags = query[2] << 8 | query[3]
        which = client_flags & _HEAD_FLAGS | variant << 16
        head = entry.heads.get(which)
        if head is None:
            head = entry.heads[which] = _head(entry.answer, client_flags, variant)
        reply = (
            query[:2] + head + query[wire.HEADER_LEN : qend] + entry.sections + entry.opts[variant]
        )
        if len(reply) > (wire.MAX_MESSAGE if limit is None else limit):
            return render_answer(
                entry.answer,
                entry.sections,
                qid=query[:2],
                client_flags=client_flags,
                question=query[wire.HEADER_LEN : qend],
                variant=variant,
                limit=limit,
            )
        return reply

    def flush_names(self, owned: Container[bytes]) -> int:
        """Drop entries for names a new zone owns (keys are name wire + type + class +
        flags), and every CNAME chain: completed from the old zone, or not completed
        when its end was not yet ours, it may end at a name whose data just changed."""
        stale = [
            key
            for key, entry in self._entries.items()
            if key[:-5] in owned or starts_a_chain(entry.answer)
        ]
        for key in stale:
            self._drop(key)
        return len(stale)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


def render_answer(
    answer: UpstreamAnswer,
    sections: bytes,
    *,
    qid: bytes,
    client_flags: int,
    question: bytes,
    variant: int,
    limit: int | None,
) -> bytes:
    """A forwarded or cached answer as our reply to one client.

    ``variant`` is 0 without EDNS, 1 with EDNS, 2 with EDNS and DO; ``limit`` is
    the client's UDP size, or None over TCP, where a message is at most 65,535 bytes
    (an upstream's largest answer, with our OPT added, can be longer: TC then, as
    over UDP). AA is never set: it is not our data.
    """
    opt = _opts(answer)[variant]
    reply = qid + _head(answer, client_flags, variant) + question + sections + opt
    if len(reply) > (wire.MAX_MESSAGE if limit is None else limit):
        # TC with no records: nothing of the answer, so nothing AD could vouch for.
        flags = wire.FLAG_QR | wire.FLAG_RA | wire.FLAG_TC | client_flags & _CLIENT_FLAGS
        return wire.header(qid, flags | answer.rcode, 1, 0, 0, variant > 0) + question + opt
    return reply


def _opts(answer: UpstreamAnswer) -> tuple[bytes, bytes, bytes]:
    """Our OPT by EDNS variant, carrying the upstream's Extended DNS Error if it gave
    one (RFC 8914: a filtering resolver's Blocked, a stale answer's Stale Answer), so
    an EDNS client learns it whether the answer is fresh or cached."""
    if answer.extended_error is None:
        return _OPT_BY_VARIANT
    option = wire.ede_option(*answer.extended_error)
    return (b"", wire.opt_record(options=option), wire.opt_record(do=True, options=option))


def _head(answer: UpstreamAnswer, client_flags: int, variant: int) -> bytes:
    """The header after the ID: QR, RA, the client's RD and CD, the upstream's RCODE,
    AD where the client can use it, and the counts; AA never.

    Shared by ``render_answer`` and the replay's table of heads, so a cached answer
    and a fresh one get the same header.
    """
    flags = wire.FLAG_QR | wire.FLAG_RA | (client_flags & _CLIENT_FLAGS) | answer.rcode
    if answer.authentic and (variant == 2 or client_flags & _FLAG_AD):
        flags |= _FLAG_AD
    return _COUNTS.pack(flags, 1, answer.an, answer.ns, answer.ar + (variant > 0))
