"""Hypothesis against ``Responder.respond``: random and mutated messages.

Whatever arrives, the responder must return reply bytes, ``None`` (drop) or a
``Question`` (forward), never raise and never fall back to SERVFAIL (its sign of
an internal error). A reply must be a DNS message dnslib can read, with QR=1,
the query's ID and opcode, the query's question byte for byte when it had one,
no more than the client's UDP limit, and the same bytes the slow path gives.
"""

from __future__ import annotations

import ipaddress
import os
import struct

from dnslib import DNSRecord
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from resolver.core.responder import Question, Responder, parse_query
from tests.core.dns_helpers import CACHE_SIZE, header, opt, responder

PLAIN = responder()
FORWARDING = responder(forwarding=True)
AUTHORITATIVE = responder(zone="fleet.internal", authoritative=True)
AUTHORITATIVE_FORWARDING = responder(zone="fleet.internal", authoritative=True, forwarding=True)
RESPONDERS = st.sampled_from([PLAIN, FORWARDING, AUTHORITATIVE, AUTHORITATIVE_FORWARDING])

FUZZ = settings(
    # Moderate by default; TAGDNS_FUZZ_EXAMPLES=5000 for a long hunt.
    max_examples=int(os.environ.get("TAGDNS_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SERVFAIL = 2
_OWNED = [
    "web1",
    "WeB1.InTeRnAl",
    "api.internal",
    "cache",
    "CACHE.internal",
    "pool",
    "db",
    "blue.svc.fleet.internal",
    "svc.fleet.internal",
    "fleet.internal",
    "internal",
    "unknown.internal",
    "example.com",
    ipaddress.ip_address("10.0.1.10").reverse_pointer,
    ipaddress.ip_address("2600:1f18:1::10").reverse_pointer.upper(),
    f"10.0.3.{CACHE_SIZE}",
]

# -- generating queries --------------------------------------------------------------------

_ldh_labels = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1)
labels = st.one_of(
    _ldh_labels.filter(lambda s: len(s) <= 63).map(str.encode),
    st.binary(min_size=1, max_size=63),
    st.sampled_from([b"a" * 63, b"web1", b"internal", b"arpa", b"*", b"\x00", b".", b"\xc0"]),
)
_known_names = st.sampled_from(_OWNED).map(
    lambda n: b"".join(bytes([len(p)]) + p.encode() for p in n.split(".") if p) + b"\x00"
)
names_wire = st.one_of(
    _known_names,
    _known_names,  # twice: most queries should reach the zone, not only the parser
    st.lists(labels, max_size=6).map(
        lambda parts: b"".join(bytes([len(p)]) + p for p in parts) + b"\x00"
    ),
)
qtypes = st.one_of(
    st.sampled_from([1, 28, 12]),
    st.sampled_from([1, 2, 6, 12, 15, 16, 28, 33, 41, 65, 255]),
    st.integers(0, 65535),
)
qclasses = st.one_of(st.sampled_from([1, 1, 1, 3, 4, 254, 255]), st.integers(0, 65535))
header_flags = st.one_of(
    st.sampled_from([0x0000, 0x0100, 0x0110, 0x0120, 0x0800, 0x2000, 0x8000]),
    st.integers(0, 0xFFFF),
)
options = st.one_of(
    st.just(b""),
    st.lists(st.tuples(st.integers(0, 65535), st.binary(max_size=16)), max_size=3).map(
        lambda items: b"".join(struct.pack("!HH", c, len(v)) + v for c, v in items)
    ),
    st.binary(max_size=12),
)
edns_records = st.one_of(
    st.none(),
    st.builds(
        opt,
        payload=st.one_of(st.sampled_from([0, 512, 1232, 4096, 65535]), st.integers(0, 65535)),
        do=st.booleans(),
        version=st.sampled_from([0, 0, 0, 1, 255]),
        options=options,
    ),
)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """A well-formed query (or nearly: the name may be binary, the flags anything)."""
    edns = draw(edns_records)
    flags = draw(st.one_of(st.sampled_from([0x0000, 0x0100]), st.just(0x0100), header_flags))
    head = header(draw(st.integers(0, 65535)), flags=flags, ar=0 if edns is None else 1)
    question = draw(names_wire) + struct.pack("!HH", draw(qtypes), draw(qclasses))
    return head + question + (edns or b"")


@st.composite
def common_queries(draw: st.DrawFn) -> bytes:
    """The shapes stub resolvers send for the names we know: mostly the fast path."""
    edns = draw(
        st.one_of(st.none(), st.builds(opt, payload=st.integers(0, 65535), do=st.booleans()))
    )
    head = header(
        draw(st.integers(0, 65535)),
        flags=draw(st.sampled_from([0, 0x0100])),
        ar=0 if edns is None else 1,
    )
    qtype = draw(st.sampled_from([1, 28, 12, 255, 15, 6]))
    return head + draw(_known_names) + struct.pack("!HH", qtype, 1) + (edns or b"")


MUTATIONS = (
    "flip",
    "truncate",
    "insert",
    "length-lie",
    "pointers",
    "qdcount",
    "ancount",
    "nscount",
    "arcount",
    "append-rr",
)


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(queries()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(MUTATIONS))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            data[at % len(data)] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "length-lie" and len(data) > 12:
            position = 12 + at % (len(data) - 12)
            data[position] = draw(st.sampled_from([0, 1, 2, 62, 63, 64, 0x80, 0xC0, 0xFF]))
        elif kind == "pointers":
            target = draw(st.sampled_from([12, 13, 14, 0, at & 0x3FFF]))
            pointer = struct.pack("!H", 0xC000 | target)
            data[at:at] = pointer * draw(st.integers(1, 40))
        elif kind in {"qdcount", "ancount", "nscount", "arcount"} and len(data) >= 12:
            offset = {"qdcount": 4, "ancount": 6, "nscount": 8, "arcount": 10}[kind]
            value = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 0xFFFF]), st.integers(0, 0xFFFF)))
            data[offset : offset + 2] = struct.pack("!H", value)
        elif kind == "append-rr":
            owner = draw(st.sampled_from([b"\x00", b"\xc0\x0c", b"\xc0\x0e", b"\x01x\x00"]))
            rtype = draw(st.sampled_from([41, 41, 1, 250, 65280]))
            rdata = draw(options)
            rdlength = draw(st.one_of(st.just(len(rdata)), st.integers(0, 65535)))
            data += owner + struct.pack("!HHIH", rtype, 4096, 0, rdlength) + rdata
            if len(data) >= 12:
                data[10:12] = struct.pack("!H", ((data[10] << 8 | data[11]) + 1) & 0xFFFF)
    return bytes(data)


# -- the properties ---------------------------------------------------------------------------


def _question_labels_decodable(question: bytes) -> bool:
    """dnslib refuses labels that are not UTF-8; such a question cannot round-trip through it."""
    position = 0
    while question[position]:
        length = question[position]
        try:
            question[position + 1 : position + 1 + length].decode()
        except UnicodeDecodeError:
            return False
        position += length + 1
    return True


def check(responder_: Responder, data: bytes, udp: bool) -> None:
    parsed = parse_query(data)  # the slow path's parser: must not raise either
    result = responder_.respond(data, udp=udp)

    if result is None:
        event("dropped")
        assert parsed is None
        assert len(data) < 12 or data[2] & 0x80, "only short packets and responses are dropped"
        return

    if isinstance(result, Question):
        event("forwarded")
        assert responder_.forwarding, "only a forwarding responder hands questions on"
        assert result == parsed
        assert result.qid == data[:2]
        assert data[12 : 12 + len(result.question)] == result.question
        assert result.key == result.question[:-4].lower() + result.question[-4:]
        return

    assert isinstance(result, bytes), f"unexpected result {result!r}"
    assert len(result) >= 12
    flags, qdcount, ancount = struct.unpack("!HHH", result[2:8])
    query_flags = struct.unpack("!H", data[2:4])[0]
    assert result[:2] == data[:2], "ID"
    assert flags & 0x8000, "QR"
    assert flags & 0x7800 == query_flags & 0x7800, "opcode"
    assert flags & 0x0100 == query_flags & 0x0100, "RD"
    assert flags & 0x000F != SERVFAIL, "SERVFAIL means an internal error escaped"
    event(
        f"rcode {flags & 0x000F}" + (" TC" if flags & 0x0200 else "") + (" AN" if ancount else "")
    )
    if flags & 0x0200:
        assert ancount == 0, "a truncated reply carries no answers"

    if isinstance(parsed, Question):
        assert qdcount == 1
        assert result[12 : 12 + len(parsed.question)] == parsed.question, "question echoed"
        if udp:
            assert len(result) <= parsed.udp_limit()
        # The fast path must give exactly what the slow path gives.
        assert result == responder_.answer(parsed, udp=udp)
        decodable = _question_labels_decodable(parsed.question)
    else:
        assert isinstance(parsed, bytes)
        if responder_.zone.recursion_available:  # RA set on every reply of a forwarder
            parsed = parsed[:3] + bytes((parsed[3] | 0x80,)) + parsed[4:]
        assert result == parsed, "an error reply is the parser's"
        assert len(result) <= 512
        decodable = True
        if qdcount:  # BADVERS or a faulty additional section: the question was fine
            end = 12
            while result[end]:
                end += result[end] + 1
            assert result[12 : end + 5] == data[12 : end + 5]
            decodable = _question_labels_decodable(result[12:])

    if decodable:
        record = DNSRecord.parse(result)
        assert record.header.qr == 1
        assert record.header.id == struct.unpack("!H", data[:2])[0]


@FUZZ
@given(data=st.binary(max_size=300), responder_=RESPONDERS, udp=st.booleans())
@example(data=b"", responder_=PLAIN, udp=True)
@example(data=b"\x00" * 12, responder_=PLAIN, udp=True)
@example(
    data=b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
    responder_=PLAIN,
    udp=True,
)
def test_random_bytes(data: bytes, responder_: Responder, udp: bool) -> None:
    check(responder_, data, udp)


@FUZZ
@given(
    data=st.binary(min_size=12, max_size=300).map(lambda b: b[:2] + bytes([b[2] & 0x07]) + b[3:]),
    responder_=RESPONDERS,
    udp=st.booleans(),
)
def test_random_bytes_shaped_as_queries(data: bytes, responder_: Responder, udp: bool) -> None:
    """Opcode QUERY and QR=0, so random bytes get past the first checks."""
    check(responder_, data, udp)


@FUZZ
@given(data=common_queries(), responder_=RESPONDERS, udp=st.booleans())
def test_common_queries(data: bytes, responder_: Responder, udp: bool) -> None:
    check(responder_, data, udp)


@FUZZ
@given(data=queries(), responder_=RESPONDERS, udp=st.booleans())
def test_valid_queries(data: bytes, responder_: Responder, udp: bool) -> None:
    check(responder_, data, udp)


@FUZZ
@given(data=mutated_queries(), responder_=RESPONDERS, udp=st.booleans())
# An OPT whose options overrun its RDATA: the fast path answered, the slow path said FORMERR.
@example(
    data=header(ar=1)
    + b"\x04web1\x00\x00\x01\x00\x01"
    + opt(options=b"\x00\x0a\x00\x09" + b"c" * 8),
    responder_=PLAIN,
    udp=True,
)
# ANY for a name not owned: REFUSED instead of forwarded (or NXDOMAIN in an authoritative zone).
@example(data=header() + b"\x07example\x03com\x00\x00\xff\x00\x01", responder_=FORWARDING, udp=True)
# A pointer chain behind the question: dnslib recursed through it; now it is never followed.
@example(
    data=header(ar=1)
    + b"\x04web1\x00\x00\x01\x00\x01"
    + b"\xc0\x0c" * 40
    + b"\x00\x29\x10\x00"
    + b"\x00" * 6,
    responder_=PLAIN,
    udp=False,
)
def test_mutated_queries(data: bytes, responder_: Responder, udp: bool) -> None:
    check(responder_, data, udp)
