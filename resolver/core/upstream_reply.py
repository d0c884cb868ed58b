"""Checking an upstream's reply and re-rendering it for our client.

A reply is accepted only if it answers exactly the question we asked with the ID
we chose; then its records (minus the upstream's OPT) are kept as bytes with the
offsets of their TTL fields, so a cached answer can be replayed with counted-down
TTLs, the client's ID, the client's letter case and our own OPT, without parsing
it again.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from resolver.core import wire

_FLAG_AD = 0x0020
_MAX_TTL = 0x7FFFFFFF
_COUNTS = struct.Struct("!HHHHH")
"""FLAGS, QDCOUNT, ANCOUNT, NSCOUNT and ARCOUNT: the header after the ID."""
_RR_FIXED = struct.Struct("!HHIH")
"""TYPE, CLASS, TTL and RDLENGTH: the fixed part of a resource record after its owner."""
_U32 = struct.Struct("!I")


class MalformedReply(ValueError):
    """The upstream's bytes are not a well-formed DNS message."""


def skip_name(message: bytes, position: int) -> int:
    """Offset just after the (possibly compressed) name at ``position``."""
    size = len(message)
    while True:
        if position >= size:
            raise MalformedReply("name runs past the end")
        length = message[position]
        if length == 0:
            return position + 1
        if length & 0xC0 == 0xC0:
            if position + 2 > size:
                raise MalformedReply("pointer runs past the end")
            return position + 2
        if length & 0xC0:
            raise MalformedReply("unknown label type")
        position += length + 1


class UpstreamAnswer(NamedTuple):
    """An accepted upstream reply, reduced to what we replay to clients.

    A named tuple rather than a frozen dataclass: one is built per cache miss, and a
    frozen dataclass's ``__init__`` (a guarded ``setattr`` per field) cost as much
    as the rest of parsing the reply.
    """

    rcode: int
    authentic: bool
    """The upstream set AD: passed on only to clients that asked for DNSSEC."""
    an: int
    ns: int
    ar: int
    sections: bytes
    """Answer, authority and additional records (no OPT), as they follow the question."""
    ttl_offsets: tuple[int, ...]
    ttls: tuple[int, ...]
    lifetime: int | None
    """Seconds it may be cached (RFC 2308 for negative answers); None: do not cache."""
    truncated: bool


def parse_reply(reply: bytes, query_id: bytes, question_key: bytes) -> UpstreamAnswer | None:
    """The reply as an UpstreamAnswer, or None when it does not answer our query.

    ``question_key`` is our question lowercased; a reply for another ID or another
    question (a spoofing attempt or a late answer) is not ours. Only the name is
    compared case-insensitively: the type and class bytes must match exactly (type
    65, HTTPS, is the byte ``A`` and must not be lowercased).
    """
    if len(reply) < wire.HEADER_LEN or reply[:2] != query_id:
        return None
    flags, qd, an, ns, ar = _COUNTS.unpack_from(reply, 2)
    if not flags & wire.FLAG_QR or flags & wire.OPCODE_MASK or qd != 1:
        return None
    qend = wire.HEADER_LEN + len(question_key)
    name_end = qend - 4
    if (
        reply[name_end:qend] != question_key[-4:]
        or reply[wire.HEADER_LEN : name_end].lower() != question_key[:-4]
    ):
        return None
    try:
        return _read_sections(
            reply, flags, qend, an, ns, ar, question_key[-4] << 8 | question_key[-3]
        )
    except (MalformedReply, struct.error, IndexError):
        return None


def _read_sections(
    reply: bytes, flags: int, qend: int, an: int, ns: int, ar: int, qtype: int
) -> UpstreamAnswer:
    """One linear pass over the records: their TTLs and where each TTL field lies.

    The records kept are contiguous (everything from the question to the upstream's
    OPT, or to the end), so the sections are one slice of the reply; only a TTL with
    the top bit set makes a copy, to zero it.
    """
    size = len(reply)
    position = qend
    ttl_offsets: list[int] = []
    ttls: list[int] = []
    negative_ttl: int | None = None
    answered = False  # an answer record of the type asked: not NODATA after a CNAME chain
    zeroed: list[int] | None = None
    authority_end = an + ns
    kept_end = qend
    for index in range(authority_end + ar):
        while True:  # the owner name, skipped (never followed)
            length = reply[position]  # IndexError past the end: malformed
            if length < 0x40:
                position += length + 1
                if length == 0:
                    break
            elif length >= 0xC0:
                position += 2
                break
            else:
                raise MalformedReply("unknown label type")
        rtype, _rclass, ttl, rdlength = _RR_FIXED.unpack_from(reply, position)
        end = position + 10 + rdlength
        if end > size:
            raise MalformedReply("record runs past the end")
        if rtype == wire.TYPE_OPT and index >= authority_end:
            # The upstream's OPT is hop-by-hop: clients get ours. Records after it
            # (additional data, optional) go too: cutting the OPT out from between
            # records would leave their compression pointers aimed at the wrong bytes.
            break
        if ttl > _MAX_TTL:  # RFC 2181 section 8: a TTL with the top bit set means zero
            ttl = 0
            if zeroed is None:
                zeroed = []
            zeroed.append(position + 4 - qend)
        if index < an:
            if rtype == qtype:
                answered = True
        elif rtype == wire.TYPE_SOA and index < authority_end and rdlength >= 20:
            minimum = _U32.unpack_from(reply, end - 4)[0]
            negative_ttl = min(ttl, minimum if minimum <= _MAX_TTL else 0)
        ttl_offsets.append(position + 4 - qend)
        ttls.append(ttl)
        position = kept_end = end
    sections = reply[qend:kept_end]
    if zeroed is not None:
        out = bytearray(sections)
        for offset in zeroed:
            out[offset : offset + 4] = bytes(4)
        sections = bytes(out)
    rcode = flags & 0x000F
    truncated = bool(flags & wire.FLAG_TC)
    return UpstreamAnswer(
        rcode,
        bool(flags & _FLAG_AD),
        an,
        ns,
        len(ttls) - authority_end,
        sections,
        tuple(ttl_offsets),
        tuple(ttls),
        None if truncated else _lifetime(rcode, an, ttls, negative_ttl, answered),
        truncated,
    )


def _lifetime(
    rcode: int, an: int, ttls: list[int], negative_ttl: int | None, answered: bool
) -> int | None:
    """How long a whole reply may be cached: its answers' TTL, or RFC 2308's negative TTL."""
    if rcode == wire.NOERROR and an:
        lifetime = min(ttls[:an])
        if negative_ttl is not None and not answered:  # NODATA after a CNAME (RFC 2308)
            return min(lifetime, negative_ttl)
        return lifetime
    if rcode in (wire.NOERROR, wire.NXDOMAIN):
        return negative_ttl
    return None


def aged_sections(answer: UpstreamAnswer, elapsed: int) -> bytes:
    """The sections with every TTL reduced by ``elapsed`` seconds (never below zero)."""
    if elapsed <= 0:
        return answer.sections
    out = bytearray(answer.sections)
    for offset, ttl in zip(answer.ttl_offsets, answer.ttls, strict=True):
        struct.pack_into("!I", out, offset, max(0, ttl - elapsed))
    return bytes(out)


def capped(answer: UpstreamAnswer, cap: int) -> UpstreamAnswer:
    """The answer with every TTL (and its lifetime) at most ``cap`` seconds.

    A cache that keeps an answer for at most ``cap`` seconds must not tell its
    clients they may keep it longer.
    """
    if max(answer.ttls, default=0) <= cap:
        return answer
    out = bytearray(answer.sections)
    ttls = tuple(min(ttl, cap) for ttl in answer.ttls)
    for offset, ttl in zip(answer.ttl_offsets, ttls, strict=True):
        struct.pack_into("!I", out, offset, ttl)
    lifetime = None if answer.lifetime is None else min(answer.lifetime, cap)
    return answer._replace(sections=bytes(out), ttls=ttls, lifetime=lifetime)


def query_message(query_id: bytes, question: bytes, *, do: bool, cd: bool) -> bytes:
    """The query we send upstream: recursion desired, EDNS with our payload and the DO bit."""
    return query_id + _QUERY_HEADS[cd] + question + _QUERY_OPTS[do]


_QUERY_HEADS = tuple(
    wire.header(b"", wire.FLAG_RD | (wire.FLAG_CD if cd else 0), 1, 0, 0, 1) for cd in (0, 1)
)
"""Our query's header after the ID, by the client's CD bit."""
_QUERY_OPTS = (wire.opt_record(do=False), wire.opt_record(do=True))
