"""An independent, strict reader of DNS messages: the fuzzers' oracle for replies.

Written apart from resolver.core (which never decompresses names) so that a bug
there cannot hide here. Every name is fully decompressed; a pointer must land on
a label an earlier name spelled out, so loops, forward references and pointers
into other fields are malformed by construction.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!2sHHHHH")
RR_FIXED = struct.Struct("!HHIH")
MAX_NAME = 255
TYPE_OPT = 41


class Malformed(AssertionError):
    """The message is not well-formed DNS (an oracle failure when we produced it)."""


@dataclass(frozen=True)
class Record:
    name: bytes
    """Decompressed owner name, lowercased wire form."""
    rtype: int
    rclass: int
    ttl: int
    ttl_offset: int
    """Offset of the TTL field in the message."""
    rdata: bytes
    rdata_offset: int
    names_in_rdata: tuple[bytes, ...]
    """Decompressed names inside RDATA for the types whose RDATA holds names."""


@dataclass(frozen=True)
class Message:
    qid: bytes
    flags: int
    question: tuple[bytes, int, int] | None
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F


def read_name(message: bytes, position: int, starts: set[int]) -> tuple[bytes, int]:
    """(decompressed lowercased name wire, offset after the name as written).

    A pointer must land on a label that an earlier name spelled out (``starts``,
    which this call extends with the labels it reads): what every encoder does,
    and what keeps a pointer from reading bytes that are not a name.
    """
    out = bytearray()
    end: int | None = None
    labels: list[int] = []
    size = len(message)
    while True:
        if position >= size:
            raise Malformed(f"name runs past the end at {position}")
        length = message[position]
        if length & 0xC0 == 0xC0:
            if position + 2 > size:
                raise Malformed("pointer cut short")
            target = (length & 0x3F) << 8 | message[position + 1]
            if target not in starts:
                raise Malformed(f"pointer at {position} to {target}: not an earlier label")
            if end is None:
                end = position + 2
            position = target
            continue
        if length & 0xC0:
            raise Malformed(f"label type {length:#x} at {position}")
        if length == 0:
            out.append(0)
            if len(out) > MAX_NAME:
                raise Malformed(f"name of {len(out)} octets")
            starts.update(labels)
            return bytes(out).lower(), end if end is not None else position + 1
        if position + 1 + length > size:
            raise Malformed("label runs past the end")
        if end is None:
            labels.append(position)
        out += message[position : position + 1 + length]
        if len(out) > MAX_NAME:
            raise Malformed(f"name longer than {MAX_NAME} octets")
        position += 1 + length


# Types whose RDATA is, or starts with, names that may be compressed (RFC 3597 section 4).
_NAME_RDATA = {2: 1, 5: 1, 12: 1, 6: 2, 15: -1}
"""NS, CNAME, PTR: one name; SOA: two names then 20 octets; MX: 2 octets then a name."""


def _rdata_names(
    message: bytes, rtype: int, start: int, end: int, starts: set[int]
) -> tuple[bytes, ...]:
    if rtype not in _NAME_RDATA:
        return ()
    names: list[bytes] = []
    position = start + 2 if rtype == 15 else start
    for _ in range(abs(_NAME_RDATA[rtype])):
        name, position = read_name(message, position, starts)
        names.append(name)
    expected = end - 20 if rtype == 6 else end
    if position != expected:
        raise Malformed(f"type {rtype} RDATA of the wrong length")
    return tuple(names)


def parse_message(message: bytes, *, strict_rdata: bool = True) -> Message:
    """Parse every section; raise Malformed unless the bytes are exactly one message."""
    if len(message) < HEADER.size:
        raise Malformed("shorter than a header")
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(message)
    if qd > 1:
        raise Malformed(f"QDCOUNT {qd}")
    position = HEADER.size
    starts: set[int] = set()
    question: tuple[bytes, int, int] | None = None
    if qd:
        name, position = read_name(message, position, starts)
        if position + 4 > len(message):
            raise Malformed("question cut short")
        qtype, qclass = struct.unpack_from("!HH", message, position)
        position += 4
        question = (name, qtype, qclass)
    sections: list[list[Record]] = [[], [], []]
    for index in range(an + ns + ar):
        owner, position = read_name(message, position, starts)
        if position + RR_FIXED.size > len(message):
            raise Malformed("record cut short")
        rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(message, position)
        ttl_offset = position + 4
        rdata_offset = position + RR_FIXED.size
        end = rdata_offset + rdlength
        if end > len(message):
            raise Malformed("RDATA runs past the end")
        names = _rdata_names(message, rtype, rdata_offset, end, starts) if strict_rdata else ()
        section = 0 if index < an else 1 if index < an + ns else 2
        sections[section].append(
            Record(
                owner,
                rtype,
                rclass,
                ttl,
                ttl_offset,
                message[rdata_offset:end],
                rdata_offset,
                names,
            )
        )
        position = end
    if position != len(message):
        raise Malformed(f"{len(message) - position} octets after the last record")
    opts = [r for r in sections[0] + sections[1] if r.rtype == TYPE_OPT]
    if opts:
        raise Malformed("OPT outside the additional section")
    if sum(1 for r in sections[2] if r.rtype == TYPE_OPT) > 1:
        raise Malformed("more than one OPT")
    return Message(qid, flags, question, tuple(sections[0]), tuple(sections[1]), tuple(sections[2]))


def comparable(record: Record) -> tuple[bytes, int, int, bytes, tuple[bytes, ...]]:
    """A record without its TTL and positions: what must survive re-rendering.

    For name-bearing types the raw RDATA depends on compression, so only the
    decompressed names (and, for SOA and MX, the fixed octets) are compared.
    """
    rdata = record.rdata
    if record.rtype in _NAME_RDATA:
        if record.rtype == 6:
            rdata = rdata[-20:]
        elif record.rtype == 15:
            rdata = rdata[:2]
        else:
            rdata = b""
    return (record.name, record.rtype, record.rclass, rdata, record.names_in_rdata)
