"""Per-query accounting: what the responder counts on each path, and the query-log text."""

from __future__ import annotations

import struct

import pytest
from dnslib import QTYPE, RR, DNSHeader, DNSRecord
from dnslib import A as DNS_A
from hypothesis import given
from hypothesis import strategies as st

from resolver.core.cache import AnswerCache
from resolver.core.pipeline import compile_document
from resolver.core.query_stats import (
    QTYPE_OTHER,
    QueryStats,
    describe_reply,
    query_type_slot,
    rcode_name,
    type_name,
)
from resolver.core.responder import Question, Responder
from resolver.core.upstream_reply import parse_reply
from tests.core.dns_helpers import DOCUMENT, SETTINGS, header, name_wire, query, responder

A, NS, PTR, MX, AAAA, ANY, CAA = 1, 2, 12, 15, 28, 255, 257


def _responder(*, forwarding: bool = False, cache: AnswerCache | None = None) -> Responder:
    loaded = compile_document(DOCUMENT, SETTINGS)
    return Responder(loaded.zone, forwarding=forwarding, cache=cache, stats=QueryStats())


def test_fast_path_owned_answer_counts_type_as_owned_noerror() -> None:
    responder = _responder()
    for qtype in (A, A, AAAA):
        reply = responder.respond(query("web1.internal", qtype))
        assert isinstance(reply, bytes)
    counts = responder.stats.snapshot()
    assert counts.by_type == {A: 2, AAAA: 1}
    assert counts.by_rcode == {0: 3}
    assert counts.owned == 3
    assert counts.other_types == 0


def test_fast_path_nodata_counts_any_type_including_large_ones() -> None:
    responder = _responder()
    responder.respond(query("web1", MX))
    responder.respond(query("web1", CAA))  # 257: the high byte is set
    counts = responder.stats.snapshot()
    assert counts.by_type == {MX: 1}
    assert counts.other_types == 1
    assert counts.by_rcode == {0: 2}
    assert counts.owned == 2


def test_slow_path_counts_rcode_and_ownership() -> None:
    responder = _responder()
    responder.respond(query("nowhere.example", A))  # not owned, no forwarding: REFUSED
    responder.respond(query("web1.internal", ANY))  # ANY: slow path, owned
    responder.respond(header(qd=2) + name_wire("web1") + struct.pack("!HH", A, 1))  # FORMERR
    counts = responder.stats.snapshot()
    assert counts.by_type == {A: 2, ANY: 1}
    assert counts.by_rcode == {5: 1, 0: 1, 1: 1}
    assert counts.owned == 1


def test_messages_dropped_unanswered_are_no_query_of_any_type() -> None:
    """Short packets and responses are dropped (counted by the server as dropped); they
    used to swell the "other" query type."""
    responder = _responder()
    response = bytearray(query("web1.internal", A))
    response[2] |= 0x80  # QR: a response, not a query
    for junk in (b"", b"\x00" * 11, header(flags=0x8000), bytes(response)):
        assert responder.respond(junk) is None
    assert responder.respond(header() + b"\xff" * 40) is not None  # answered: FORMERR
    counts = responder.stats.snapshot()
    assert counts.by_type == {}
    assert counts.other_types == 1
    assert counts.by_rcode == {1: 1}


def test_names_not_ours_count_their_rcode_and_nxdomain_as_owned() -> None:
    """REFUSED and NXDOMAIN come from the fast path, which counts them itself."""
    refusing = _responder()
    for qtype in (A, AAAA, MX):
        refusing.respond(query("nowhere.example", qtype))
    counts = refusing.stats.snapshot()
    assert counts.by_type == {A: 1, AAAA: 1, MX: 1}
    assert counts.by_rcode == {5: 3}
    assert counts.owned == 0
    denying = responder(forwarding=True, authoritative=True)
    denying.respond(query("nothing.internal", A))
    denying.respond(query("nothing.internal", CAA))
    counts = denying.stats.snapshot()
    assert counts.by_type == {A: 1} and counts.other_types == 1
    assert counts.by_rcode == {3: 2}
    assert counts.owned == 2  # NXDOMAIN under the zone is the view's own answer (AA)


def test_question_handed_to_the_forwarder_counts_its_type_only() -> None:
    responder = _responder(forwarding=True, cache=AnswerCache())
    assert isinstance(responder.respond(query("www.example.test", A)), Question)
    counts = responder.stats.snapshot()
    assert counts.by_type == {A: 1}
    assert counts.by_rcode == {}
    assert counts.owned == 0


def test_cached_forwarded_answer_on_the_fast_path_counts_its_rcode_not_owned() -> None:
    cache = AnswerCache()
    record = DNSRecord(
        DNSHeader(id=0xABCD, qr=1, ra=1, rd=1),
        q=DNSRecord.question("www.example.test", "A").q,
    )
    record.add_answer(RR("www.example.test", QTYPE.A, ttl=300, rdata=DNS_A("192.0.2.1")))
    key = bytes(DNSRecord.question("www.example.test", "A").pack())[12:]
    answer = parse_reply(bytes(record.pack()), b"\xab\xcd", key)
    assert answer is not None
    cache.put(AnswerCache.key(key, do=False), answer)
    responder = _responder(forwarding=True, cache=cache)
    reply = responder.respond(query("www.example.test", A))
    assert isinstance(reply, bytes)
    assert reply[2] & 0x04 == 0  # AA clear: not our data
    counts = responder.stats.snapshot()
    assert counts.by_type == {A: 1}
    assert counts.by_rcode == {0: 1}
    assert counts.owned == 0


def test_forwarded_reply_is_counted_by_count_reply() -> None:
    stats = QueryStats()
    stats.count_reply(b"\x00\x01\x81\x82" + bytes(8))  # SERVFAIL, AA clear
    stats.count_reply(b"\x00\x01\x85\x80" + bytes(8))  # NOERROR, AA set
    stats.count_reply(b"short")  # not a message: ignored
    counts = stats.snapshot()
    assert counts.by_rcode == {2: 1, 0: 1}
    assert counts.owned == 1


def test_counts_are_shared_across_responders_swapped_in() -> None:
    stats = QueryStats()
    loaded = compile_document(DOCUMENT, SETTINGS)
    first = Responder(loaded.zone, forwarding=False, stats=stats)
    second = Responder(loaded.zone, forwarding=False, stats=stats)
    first.respond(query("web1", A))
    second.respond(query("web1", A))
    assert stats.snapshot().by_type == {A: 2}


@pytest.mark.parametrize(
    ("message", "slot"),
    [
        (query("web1", A), A),
        (query("web1", AAAA), AAAA),
        (query("web1", CAA), QTYPE_OTHER),
        (query(".", NS), NS),
        (b"", QTYPE_OTHER),
        (bytes(12), QTYPE_OTHER),
        (header() + b"\x04web1", QTYPE_OTHER),  # name never ends
        (header() + b"\x04web1\x00", QTYPE_OTHER),  # no type after the name
        (header() + b"\x04web1\x00\x00", QTYPE_OTHER),  # half a type
        (header() + b"\x00\x00\x01", A),  # root name, type in the last octet
    ],
    ids=[
        "a",
        "aaaa",
        "caa-high-byte",
        "root",
        "empty",
        "header-only",
        "unterminated-name",
        "no-type",
        "half-type",
        "root-short",
    ],
)
def test_query_type_slot_never_reads_past_the_message(message: bytes, slot: int) -> None:
    assert query_type_slot(message) == slot


def _reply(name_part: bytes, qtype: int, rcode: int, qd: int = 1) -> bytes:
    return header(flags=0x8000 | rcode, qd=qd) + name_part + struct.pack("!HH", qtype, 1)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (_reply(name_wire("Web1.internal"), A, 0), ("Web1.internal.", "A", "NOERROR")),
        (_reply(b"\x00", NS, 3), (".", "NS", "NXDOMAIN")),
        (_reply(name_wire("x"), 65280, 5), ("x.", "TYPE65280", "REFUSED")),
        (_reply(b"\x03a\nb\x00", A, 0), ("a\\010b.", "A", "NOERROR")),
        (_reply(b"\x03a.b\x00", A, 0), ("a\\046b.", "A", "NOERROR")),
        (_reply(b"\x02\xc3\xa9\x00", A, 0), ("\\195\\169.", "A", "NOERROR")),
        (header(flags=0x8001, qd=0), ("?", "?", "FORMERR")),
        (_reply(b"\x05ab", A, 2), ("?", "?", "SERVFAIL")),
        (_reply(b"\x40" + b"a" * 64 + b"\x00", A, 0), ("?", "?", "NOERROR")),
        (header(flags=0x8000)[:11], ("?", "?", "?")),
        (header(flags=0x800C) + b"\x00", ("?", "?", "RCODE12")),
    ],
    ids=[
        "plain",
        "root",
        "unknown-type",
        "newline-escaped",
        "dot-in-label",
        "non-ascii",
        "no-question",
        "truncated-name",
        "label-too-long",
        "short-header",
        "unassigned-rcode",
    ],
)
def test_describe_reply_is_one_safe_line(reply: bytes, expected: tuple[str, str, str]) -> None:
    described = describe_reply(reply)
    assert described == expected
    assert all("\n" not in part and " " not in part for part in described)


def _escaped(label: bytes) -> str:
    """The query log's spelling of a label, written out octet by octet (RFC 1035 ``\\DDD``)."""
    return "".join(
        chr(octet) if 0x21 <= octet <= 0x7E and octet not in b".\\" else f"\\{octet:03d}"
        for octet in label
    )


@given(st.lists(st.binary(min_size=1, max_size=63), min_size=1, max_size=6))
def test_describe_reply_spells_every_label_octet_by_octet(labels: list[bytes]) -> None:
    wire = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    name, _qtype, _rcode = describe_reply(_reply(wire, A, 0))
    assert name == ".".join(_escaped(label) for label in labels) + "."
    assert name.isprintable() and " " not in name


def test_type_and_rcode_names() -> None:
    assert [type_name(t) for t in (1, 28, 12, 65, 257, 999)] == [
        "A",
        "AAAA",
        "PTR",
        "HTTPS",
        "CAA",
        "TYPE999",
    ]
    assert [rcode_name(r) for r in (0, 3, 5, 15)] == ["NOERROR", "NXDOMAIN", "REFUSED", "RCODE15"]
