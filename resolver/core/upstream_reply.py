"""Checking an upstream's reply and re-rendering it for our client.

A reply is accepted only if it answers exactly the question we asked with the ID
we chose; then its records (minus the upstream's OPT) are kept as bytes with the
offsets of their TTL fields, so a cached answer can be replayed with counted-down
TTLs, the client's ID, the client's letter case and our own OPT, without parsing
it again. Of the upstream's OPT only the RCODE's upper bits and an Extended DNS
Error are read: the one makes an error of what looks like NOERROR, the other is
passed on to our clients (with the answer, or in our SERVFAIL's own).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from resolver.core import wire

_FLAG_AD = 0x0020
_MAX_TTL = 0x7FFFFFFF
_COUNTS = struct.Struct("!HHHHH")
"""FLAGS, QDCOUNT, ANCOUNT, NSCOUNT and ARCOUNT: the header after the ID."""
RR_FIXED = struct.Struct("!HHIH")
"""TYPE, CLASS, TTL and RDLENGTH: the fixed part of a resource record after its owner."""
_U32 = struct.Struct("!I")
_OPTION_HEAD = struct.Struct("!HH")
"""OPTION-CODE and OPTION-LENGTH."""


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


def read_name(message: bytes, position: int) -> bytes:
    """The name at ``position`` as lowercased wire (uncompressed), pointers followed.

    Each pointer must aim before the label it replaces: then every jump goes back
    and a pointer loop cannot hold us, whatever the upstream sent.
    """
    labels = bytearray()
    while True:
        length = message[position]  # IndexError past the end: malformed
        if length == 0:
            labels.append(0)
            break
        if length & 0xC0 == 0xC0:
            target = (length & 0x3F) << 8 | message[position + 1]
            if target >= position:
                raise MalformedReply("compression pointer does not point back")
            if target < wire.HEADER_LEN:
                raise MalformedReply("compression pointer into the header")
            position = target
            continue
        if length & 0xC0:
            raise MalformedReply("unknown label type")
        if position + length + 1 > len(message):
            raise MalformedReply("label runs past the end")
        labels += message[position : position + length + 1]
        if len(labels) >= wire.MAX_NAME:
            raise MalformedReply("name longer than 255 octets")
        position += length + 1
    return bytes(labels).lower()


_TYPE_TXT = 16
_TYPE_MX = 15
_TYPE_SRV = 33
_NAME_AT = {
    wire.TYPE_NS: 0,
    wire.TYPE_CNAME: 0,
    wire.TYPE_PTR: 0,
    wire.TYPE_DNAME: 0,
    _TYPE_MX: 2,
    _TYPE_SRV: 6,
}
"""Where the domain name in a record's RDATA starts, for the types that carry one
(RFC 1035 3.3, RFC 2782, RFC 6672); the SOA's two are read on their own."""


def _check_rdata_name(reply: bytes, position: int, end: int) -> int:
    """Check the name at ``position`` lies whole within the RDATA ending at ``end``,
    any pointer aiming back at a well-formed name; the offset just after it."""
    after = skip_name(reply, position)
    if after > end:
        raise MalformedReply("name in RDATA runs past the record")
    read_name(reply, position)  # its labels, and where its pointers lead: back, bounded
    return after


_FIXED_RDLENGTH = {wire.TYPE_A: 4, wire.TYPE_AAAA: 16}


def _check_rdata(reply: bytes, rtype: int, start: int, end: int) -> None:
    """The RDATA of the common types holds together (addresses of their length, names
    well formed, character strings that fill it), so what we pass on and cache parses:
    a client's parser gives up on the whole message at one bad record."""
    length = _FIXED_RDLENGTH.get(rtype)
    if length is not None:
        if end - start != length:
            raise MalformedReply("address of the wrong length")
        return
    at = _NAME_AT.get(rtype)
    if at is not None:
        _check_rdata_name(reply, start + at, end)
    elif rtype == _TYPE_TXT:
        position = start
        while position < end:
            position += reply[position] + 1
        if position != end:
            raise MalformedReply("TXT strings do not fill the record")
    elif rtype == wire.TYPE_SOA:
        position = _check_rdata_name(reply, start, end)
        if end - _check_rdata_name(reply, position, end) != 20:
            raise MalformedReply("SOA RDATA is not two names and five numbers")


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
    edns: bool = True
    """The reply carried an OPT: False from an upstream that does not speak EDNS."""
    extended_error: tuple[int, str] | None = None
    """The Extended DNS Error in the upstream's OPT (RFC 8914), INFO-CODE and
    EXTRA-TEXT, if it sent one: passed on with the answer, or in our SERVFAIL."""
    malformed: bool = False
    """Our ID and question, then records that do not hold together: this upstream's
    reply (it came on our connected socket), and it failed us."""


UPSTREAM_ERRORS = frozenset((wire.FORMERR, wire.SERVFAIL, wire.NOTIMP, wire.REFUSED))
"""RCODEs that mean this upstream failed us: the next one is asked."""


def parse_reply(reply: bytes, query_id: bytes, question_key: bytes) -> UpstreamAnswer | None:
    """The reply as an UpstreamAnswer, or None when it does not answer our query.

    ``question_key`` is our question lowercased; a reply for another ID or another
    question (a spoofing attempt or a late answer) is not ours. Only the name is
    compared case-insensitively: the type and class bytes must match exactly (type
    65, HTTPS, is the byte ``A`` and must not be lowercased).

    Two replies are taken at their header alone. One with TC set may be cut
    anywhere, even inside a record (RFC 1035 4.2.1): it is asked again over TCP,
    so its sections are not read. And an error (FORMERR, SERVFAIL, NOTIMP,
    REFUSED) or TC without a question section: RFC 1035 does not make an error
    repeat the question and some servers do not, and with our ID on our connected
    socket it is this upstream's reply, to move on from at once.
    """
    if len(reply) < wire.HEADER_LEN or reply[:2] != query_id:
        return None
    flags, qd, an, ns, ar = _COUNTS.unpack_from(reply, 2)
    if not flags & wire.FLAG_QR or flags & wire.OPCODE_MASK:
        return None
    if qd != 1:
        if qd == 0 and (flags & wire.FLAG_TC or flags & 0x000F in UPSTREAM_ERRORS):
            return _header_only(flags)
        return None
    qend = wire.HEADER_LEN + len(question_key)
    name_end = qend - 4
    if (
        reply[name_end:qend] != question_key[-4:]
        or reply[wire.HEADER_LEN : name_end].lower() != question_key[:-4]
    ):
        return None
    if flags & wire.FLAG_TC:
        return _header_only(flags)
    try:
        return _read_sections(
            reply, flags, qend, an, ns, ar, question_key[-4] << 8 | question_key[-3]
        )
    except (MalformedReply, struct.error, IndexError):
        return MALFORMED


def answer_from_sections(
    flags: int, key: bytes, sections: bytes, an: int, ns: int, ar: int
) -> UpstreamAnswer:
    """An UpstreamAnswer for records of our own making (``sections``, compressed
    against a question at offset 12 if at all), read as an upstream's reply is."""
    message = bytes(wire.HEADER_LEN) + key + sections
    qtype = key[-4] << 8 | key[-3]
    return _read_sections(message, flags, wire.HEADER_LEN + len(key), an, ns, ar, qtype)


def _header_only(flags: int) -> UpstreamAnswer:
    """A reply judged by its header: no records kept, never cached."""
    return UpstreamAnswer(
        flags & 0x000F, False, 0, 0, 0, b"", (), (), None, bool(flags & wire.FLAG_TC), edns=False
    )


MALFORMED = UpstreamAnswer(wire.SERVFAIL, False, 0, 0, 0, b"", (), (), None, False, malformed=True)
"""What ``parse_reply`` gives for a reply to our query whose records do not hold
together: never passed on nor cached; the next upstream is asked at once."""


def failed(answer: UpstreamAnswer) -> bool:
    """Whether the reply is the upstream failing rather than an answer to pass on:
    an error RCODE, or any extended RCODE (BADVERS, BADCOOKIE: nothing a client of
    ours asked about, and our OPT could not carry it), or records that do not parse."""
    return answer.rcode in UPSTREAM_ERRORS or answer.rcode > 0x000F or answer.malformed


def _read_sections(  # noqa: PLR0915 - one pass over the records, on every miss's path
    reply: bytes, flags: int, qend: int, an: int, ns: int, ar: int, qtype: int
) -> UpstreamAnswer:
    """One linear pass over the records: their TTLs and where each TTL field lies.

    The records kept are contiguous (everything from the question to the upstream's
    OPT, or to the end), so the sections are one slice of the reply; only a TTL to
    rewrite makes a copy: one with the top bit set (zero, RFC 2181 section 8), and an
    SOA's above its MINIMUM (RFC 2308 section 5: a negative answer may be kept
    min(TTL, MINIMUM) seconds, and the SOA must not tell downstream caches longer).
    """
    size = len(reply)
    position = qend
    ttl_offsets: list[int] = []
    ttls: list[int] = []
    negative_ttl: int | None = None
    answered = False  # an answer record of the type asked: not NODATA after a CNAME chain
    rewritten: list[tuple[int, int]] = []
    authority_end = an + ns
    kept_end = qend
    opt_ttl: int | None = None
    extended_error: tuple[int, str] | None = None
    for index in range(authority_end + ar):
        while True:  # the owner name, skipped (never followed)
            length = reply[position]  # IndexError past the end: malformed
            if length < 0x40:
                position += length + 1
                if length == 0:
                    break
            elif length >= 0xC0:
                # Aimed back, into the message: a pointer loop or a pointer forward
                # makes a client's parser give up on the whole reply.
                target = (length & 0x3F) << 8 | reply[position + 1]
                if target != wire.HEADER_LEN:  # not the question's name, checked already
                    read_name(reply, position)  # back, to labels, bounded
                position += 2
                break
            else:
                raise MalformedReply("unknown label type")
        rtype, _rclass, ttl, rdlength = RR_FIXED.unpack_from(reply, position)
        end = position + 10 + rdlength
        if end > size:
            raise MalformedReply("record runs past the end")
        if rtype == wire.TYPE_OPT:
            if index < authority_end:  # RFC 6891 6.1.1: in the additional section only
                raise MalformedReply("OPT record outside the additional section")
            # The upstream's OPT is hop-by-hop: clients get ours. Records after it
            # (additional data, optional) go too: cutting the OPT out from between
            # records would leave their compression pointers aimed at the wrong bytes.
            opt_ttl = ttl  # its top eight bits: the RCODE's upper bits (RFC 6891 6.1.3)
            extended_error = _extended_error(reply, position + 10, end) if rdlength else None
            break
        _check_rdata(reply, rtype, position + 10, end)
        if ttl > _MAX_TTL:  # RFC 2181 section 8: a TTL with the top bit set means zero
            ttl = 0
            rewritten.append((position + 4 - qend, 0))
        if index < an:
            if rtype == qtype:
                answered = True
        elif rtype == wire.TYPE_SOA and index < authority_end and rdlength >= 20:
            minimum = _U32.unpack_from(reply, end - 4)[0]
            negative_ttl = min(ttl, minimum if minimum <= _MAX_TTL else 0)
            if negative_ttl < ttl:
                ttl = negative_ttl
                rewritten.append((position + 4 - qend, ttl))
        ttl_offsets.append(position + 4 - qend)
        ttls.append(ttl)
        position = kept_end = end
    sections = reply[qend:kept_end]
    if rewritten:
        out = bytearray(sections)
        for offset, ttl in rewritten:
            _U32.pack_into(out, offset, ttl)
        sections = bytes(out)
    rcode = flags & 0x000F | (opt_ttl or 0) >> 24 << 4
    return UpstreamAnswer(
        rcode,
        bool(flags & _FLAG_AD),
        an,
        ns,
        len(ttls) - authority_end,
        sections,
        tuple(ttl_offsets),
        tuple(ttls),
        _lifetime(rcode, an, ttls, negative_ttl, answered),
        False,
        opt_ttl is not None,
        extended_error,
    )


def extended_error_text(extended_error: tuple[int, str]) -> str:
    """An upstream's Extended DNS Error as we repeat it: ``EDE 6: signature expired``."""
    code, text = extended_error
    return f"EDE {code}: {text}" if text else f"EDE {code}"


_MAX_EXTRA_TEXT = 80
"""Characters of an upstream's EXTRA-TEXT kept: it is only repeated in our own."""


def _extended_error(reply: bytes, start: int, end: int) -> tuple[int, str] | None:
    """The first EDE option among an OPT's options (``reply[start:end]``), if any.

    The text is the upstream's: decoded leniently and reduced to printable
    characters, so it can be repeated in a reply of ours and in a log line. Options
    that do not hold together are ignored, as is the OPT's data for anything else.
    """
    position = start
    while position + 4 <= end:
        code, length = _OPTION_HEAD.unpack_from(reply, position)
        position += 4
        if position + length > end:
            return None
        if code == wire.OPTION_EDE and length >= 2:
            info = reply[position] << 8 | reply[position + 1]
            text = bytes(reply[position + 2 : position + length]).decode("utf-8", "replace")
            printable = "".join(c for c in text if c.isprintable())[:_MAX_EXTRA_TEXT]
            return info, printable
        position += length
    return None


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


def query_message(
    query_id: bytes, question: bytes, *, do: bool, cd: bool, edns: bool = True
) -> bytes:
    """The query we send upstream: recursion desired, EDNS with our payload and the DO
    bit; without ``edns``, a plain one for an upstream that does not speak EDNS.

    The EDNS query sets AD (RFC 6840 5.7): a validating upstream then says whether it
    validated even when DO is clear, which a client asking with AD and no DO (glibc's
    ``trust-ad``) is told. The plain query leaves it clear, as RFC 1035 had that bit
    zero and an upstream without EDNS is an old one.
    """
    if not edns:
        return query_id + _PLAIN_HEADS[cd] + question
    return query_id + _QUERY_HEADS[cd] + question + _QUERY_OPTS[do]


_QUERY_HEADS = tuple(
    wire.header(b"", wire.FLAG_RD | wire.FLAG_AD | (wire.FLAG_CD if cd else 0), 1, 0, 0, 1)
    for cd in (0, 1)
)
"""Our query's header after the ID, by the client's CD bit."""
_PLAIN_HEADS = tuple(
    wire.header(b"", wire.FLAG_RD | (wire.FLAG_CD if cd else 0), 1, 0, 0, 0) for cd in (0, 1)
)
_QUERY_OPTS = (wire.opt_record(do=False), wire.opt_record(do=True))
