"""Checking an upstream's reply and re-rendering it for our client.

A reply is accepted only if it answers exactly the question we asked with the ID
we chose; then its records (minus the upstream's OPT) are kept as bytes with the
offsets of their TTL fields, so a cached answer can be replayed with counted-down
TTLs, the client's ID, the client's letter case and our own OPT, without parsing
it again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from resolver.core import wire

_FLAG_AD = 0x0020
_MAX_TTL = 0x7FFFFFFF


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


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """An accepted upstream reply, reduced to what we replay to clients."""

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
    flags, qd, an, ns, ar = struct.unpack("!HHHHH", reply[2:12])
    if not flags & wire.FLAG_QR or flags & wire.OPCODE_MASK or qd != 1:
        return None
    qend = wire.HEADER_LEN + len(question_key)
    name_end = qend - 4
    if (
        reply[wire.HEADER_LEN : name_end].lower() != question_key[:-4]
        or reply[name_end:qend] != question_key[-4:]
    ):
        return None
    try:
        return _read_sections(reply, flags, qend, an, ns, ar, question_key[-4:-2])
    except (MalformedReply, struct.error, IndexError):
        return None


def _read_sections(
    reply: bytes, flags: int, qend: int, an: int, ns: int, ar: int, qtype: bytes
) -> UpstreamAnswer:
    position = qend
    kept: list[bytes] = []
    ttl_offsets: list[int] = []
    ttls: list[int] = []
    negative_ttl: int | None = None
    answered = False  # an answer record of the type asked: not NODATA after a CNAME chain
    kept_ar = 0
    length = 0
    for index in range(an + ns + ar):
        start = position
        position = skip_name(reply, position)
        rtype, _rclass, ttl, rdlength = struct.unpack("!HHIH", reply[position : position + 10])
        end = position + 10 + rdlength
        if end > len(reply):
            raise MalformedReply("record runs past the end")
        if rtype == wire.TYPE_OPT and index >= an + ns:
            # The upstream's OPT is hop-by-hop: clients get ours. Records after it
            # (additional data, optional) go too: cutting the OPT out from between
            # records would leave their compression pointers aimed at the wrong bytes.
            break
        record = reply[start:end]
        if ttl > _MAX_TTL:  # RFC 2181 section 8: a TTL with the top bit set means zero
            ttl = 0
            cut = position - start + 4
            record = record[:cut] + bytes(4) + record[cut + 4 :]
        if index < an and reply[position : position + 2] == qtype:
            answered = True
        if rtype == wire.TYPE_SOA and an <= index < an + ns and rdlength >= 20:
            minimum = struct.unpack("!I", reply[end - 4 : end])[0]
            negative_ttl = min(ttl, minimum if minimum <= _MAX_TTL else 0)
        ttl_offsets.append(length + position - start + 4)
        ttls.append(ttl)
        kept.append(record)
        length += end - start
        if index >= an + ns:
            kept_ar += 1
        position = end
    rcode = flags & 0x000F
    truncated = bool(flags & wire.FLAG_TC)
    lifetime: int | None = None
    if not truncated:
        if rcode == wire.NOERROR and an:
            lifetime = min(ttls[:an])
            if negative_ttl is not None and not answered:  # NODATA after a CNAME (RFC 2308)
                lifetime = min(lifetime, negative_ttl)
        elif rcode in (wire.NOERROR, wire.NXDOMAIN):
            lifetime = negative_ttl
    return UpstreamAnswer(
        rcode=rcode,
        authentic=bool(flags & _FLAG_AD),
        an=an,
        ns=ns,
        ar=kept_ar,
        sections=b"".join(kept),
        ttl_offsets=tuple(ttl_offsets),
        ttls=tuple(ttls),
        lifetime=lifetime,
        truncated=truncated,
    )


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
    if all(ttl <= cap for ttl in answer.ttls):
        return answer
    out = bytearray(answer.sections)
    ttls = tuple(min(ttl, cap) for ttl in answer.ttls)
    for offset, ttl in zip(answer.ttl_offsets, ttls, strict=True):
        struct.pack_into("!I", out, offset, ttl)
    lifetime = None if answer.lifetime is None else min(answer.lifetime, cap)
    return replace(answer, sections=bytes(out), ttls=ttls, lifetime=lifetime)


def query_message(query_id: bytes, question: bytes, *, do: bool, cd: bool) -> bytes:
    """The query we send upstream: recursion desired, EDNS with our payload and the DO bit."""
    flags = wire.FLAG_RD | (wire.FLAG_CD if cd else 0)
    return wire.header(query_id, flags, 1, 0, 0, 1) + question + wire.opt_record(do=do)
