"""Checking upstream replies: only our ID and question, sections kept with their TTL offsets.

Replies are built with dnslib (an independent encoder) and what parse_reply keeps
is checked by parsing it back with dnslib.
"""

from __future__ import annotations

import re
import struct

import pytest
from dnslib import CNAME, EDNS0, QTYPE, RCODE, RR, SOA, TXT, A, DNSError, DNSHeader, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core import wire
from resolver.core.upstream_reply import (
    UpstreamAnswer,
    aged_sections,
    capped,
    failed,
    parse_reply,
    query_message,
)

QID = b"\x12\x34"
NAME = "www.Example.test"


def question_key(name: str = NAME, qtype: str = "A") -> bytes:
    """The question section as the responder keys it: name lowercased, type and class raw."""
    question = bytes(DNSRecord.question(name, qtype).pack())[12:]
    return question[:-4].lower() + question[-4:]


def reply_record(
    name: str = NAME,
    qtype: str = "A",
    *,
    answers: tuple[tuple[str, int], ...] = (("192.0.2.1", 300),),
    rcode: int = RCODE.NOERROR,
    soa: tuple[int, int] | None = None,
    opt: bool = True,
    qid: int = 0x1234,
) -> DNSRecord:
    """An upstream reply: A answers, an optional SOA (TTL, minimum) and an optional OPT."""
    record = DNSRecord(
        DNSHeader(id=qid, qr=1, aa=1, ra=1, rd=1, rcode=rcode), q=DNSRecord.question(name, qtype).q
    )
    for address, ttl in answers:
        record.add_answer(RR(name, QTYPE.A, ttl=ttl, rdata=A(address)))
    if soa is not None:
        ttl, minimum = soa
        record.add_auth(
            RR(
                "example.test",
                QTYPE.SOA,
                ttl=ttl,
                rdata=SOA("ns.example.test", "hostmaster.example.test", (1, 2, 3, 4, minimum)),
            )
        )
    if opt:
        record.add_ar(EDNS0(udp_len=4096, flags="do"))
    return record


def packed(record: DNSRecord) -> bytes:
    return bytes(record.pack())


def as_message(
    answer: UpstreamAnswer, sections: bytes, name: str = NAME, qtype: str = "A"
) -> DNSRecord:
    """The kept sections behind a header and question, parsed by dnslib."""
    question = bytes(DNSRecord.question(name, qtype).pack())[12:]
    head = wire.header(QID, wire.FLAG_QR | answer.rcode, 1, answer.an, answer.ns, answer.ar)
    return DNSRecord.parse(head + question + sections)


def test_accepts_our_id_and_question_and_drops_the_upstream_opt() -> None:
    answer = parse_reply(packed(reply_record()), QID, question_key())
    assert answer is not None
    assert (answer.rcode, answer.an, answer.ns, answer.ar) == (0, 1, 0, 0)
    assert answer.lifetime == 300 and not answer.truncated
    parsed = as_message(answer, answer.sections)
    assert [str(rr.rdata) for rr in parsed.rr] == ["192.0.2.1"]
    assert not [rr for rr in parsed.ar if rr.rtype == QTYPE.OPT]


def test_question_name_is_compared_case_insensitively() -> None:
    reply = packed(reply_record(name="WWW.EXAMPLE.TEST"))
    assert parse_reply(reply, QID, question_key("www.example.test")) is not None


@pytest.mark.parametrize("qtype", ["HTTPS", "A", "AAAA", "TXT", "SVCB", "CAA", "TYPE90"])
def test_types_are_compared_exactly_even_when_a_byte_is_a_letter(qtype: str) -> None:
    """Type 65 (HTTPS) is the byte 'A'; lowercasing it made every HTTPS reply 'not ours'."""
    reply = packed(reply_record(qtype=qtype, answers=(), soa=(60, 60)))
    answer = parse_reply(reply, QID, question_key(qtype=qtype))
    assert answer is not None and answer.rcode == wire.NOERROR


def _flip(reply: bytes, offset: int, value: int) -> bytes:
    return reply[:offset] + bytes([value]) + reply[offset + 1 :]


GOOD = packed(reply_record())
QEND = 12 + len(question_key())


@pytest.mark.parametrize(
    ("reply", "key"),
    [
        (b"\x12\x34" + GOOD[2:], question_key("other.example.test")),
        (GOOD, question_key(qtype="AAAA")),
        (GOOD, question_key("www.example.tes")),
        (GOOD, question_key("ww.example.test")),
        (b"\x12\x35" + GOOD[2:], question_key()),
        (b"\x34\x12" + GOOD[2:], question_key()),
        (_flip(GOOD, 2, GOOD[2] & 0x7F), question_key()),  # QR=0: a query, not a reply
        (_flip(GOOD, 2, GOOD[2] | 0x28), question_key()),  # opcode 5 (UPDATE)
        (GOOD[:4] + b"\x00\x00" + GOOD[6:], question_key()),  # QDCOUNT 0
        (GOOD[:4] + b"\x00\x02" + GOOD[6:], question_key()),  # QDCOUNT 2
        (GOOD[: QEND - 2] + b"\x00\x03" + GOOD[QEND:], question_key()),  # class CH
        (GOOD[:11], question_key()),
        (GOOD[: QEND - 1], question_key()),
        (b"", question_key()),
    ],
    ids=[
        "other-name",
        "other-type",
        "shorter-name",
        "shorter-label",
        "other-id",
        "swapped-id",
        "not-a-reply",
        "opcode-update",
        "no-question",
        "two-questions",
        "other-class",
        "short-header",
        "cut-question",
        "empty",
    ],
)
def test_replies_that_are_not_ours_are_refused(reply: bytes, key: bytes) -> None:
    assert parse_reply(reply, QID, key) is None


def _cname_reply(target_rdata: bytes, rtype: int = 5) -> bytes:
    """Our question, then one record of ``rtype`` whose RDATA is ``target_rdata``."""
    head = QID + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
    question = bytes(DNSRecord.question(NAME, "A").pack())[12:]
    record = b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 300, len(target_rdata))
    return head + question + record + target_rdata


@pytest.mark.parametrize(
    "reply",
    [
        _cname_reply(b"\x03web\x80bad\x00"),  # a label type that does not exist
        _cname_reply(b"\x03web\xc0\x7f"),  # a pointer aimed forward
        _cname_reply(b"\x03web\x04int"),  # a name that runs past its record
        _cname_reply(b"\xc0\x00\x01", rtype=15),  # MX: its name points into the header
        _cname_reply(b"\xc0\x00\x02", rtype=1),  # an A record of three bytes
        _cname_reply(b"\x05ab", rtype=16),  # TXT: a string longer than the record
        _cname_reply(b"\x00" * 21, rtype=6),  # SOA: two names and six numbers' worth
        _cname_reply(b"", rtype=41),  # an OPT in the answer section (RFC 6891 6.1.1)
        GOOD[:QEND] + b"\xc0\x7f" + GOOD[QEND + 2 :],  # the owner a pointer forward
        GOOD[:QEND] + b"\xc0\x01" + GOOD[QEND + 2 :],  # the owner a pointer into the header
    ],
    ids=[
        "bad-label-type",
        "forward-pointer",
        "name-past-record",
        "mx-into-header",
        "short-address",
        "txt-overrun",
        "soa-too-long",
        "opt-in-answer",
        "owner-forward",
        "owner-into-header",
    ],
)
def test_our_reply_with_records_that_do_not_hold_together_is_the_upstream_failing(
    reply: bytes,
) -> None:
    """Passed on, such a reply made a client's parser drop the whole message ("bad
    label type"), and it was cached for its TTL; ignored instead, the attempt was
    waited out. It is our ID and our question on our connected socket: the upstream
    failed, and the next one is asked at once."""
    answer = parse_reply(reply, QID, question_key())
    assert answer is not None and answer.malformed and failed(answer)
    assert answer.lifetime is None and not answer.sections


@pytest.mark.parametrize(
    ("record", "lifetime"),
    [
        (reply_record(answers=(("192.0.2.1", 300), ("192.0.2.2", 40))), 40),
        (reply_record(answers=(), rcode=RCODE.NXDOMAIN, soa=(300, 60)), 60),
        (reply_record(answers=(), rcode=RCODE.NXDOMAIN, soa=(30, 60)), 30),
        (reply_record(answers=(), soa=(900, 120)), 120),  # NODATA
        (reply_record(answers=(), rcode=RCODE.NXDOMAIN), None),  # no SOA: not cacheable
        (reply_record(answers=()), None),  # NODATA without SOA (a referral, say)
        (reply_record(answers=(), rcode=RCODE.SERVFAIL, soa=(300, 60)), None),
        (reply_record(answers=(), rcode=RCODE.REFUSED), None),
        (reply_record(answers=(("192.0.2.1", 0),)), 0),
    ],
    ids=[
        "positive-min-ttl",
        "nxdomain-soa-minimum",
        "nxdomain-soa-ttl",
        "nodata",
        "nxdomain-no-soa",
        "nodata-no-soa",
        "servfail",
        "refused",
        "ttl-zero",
    ],
)
def test_lifetimes_follow_ttls_and_rfc_2308(record: DNSRecord, lifetime: int | None) -> None:
    answer = parse_reply(packed(record), QID, question_key())
    assert answer is not None and answer.lifetime == lifetime


def test_nodata_after_a_cname_lives_no_longer_than_its_negative_part() -> None:
    record = reply_record(answers=(), soa=(300, 20))
    record.add_answer(RR(NAME, QTYPE.CNAME, ttl=600, rdata=CNAME("alias.example.test")))
    answer = parse_reply(packed(record), QID, question_key())
    assert answer is not None and answer.lifetime == 20


def test_a_truncated_reply_is_marked_and_never_cacheable() -> None:
    record = reply_record()
    record.header.tc = 1
    answer = parse_reply(packed(record), QID, question_key())
    assert answer is not None and answer.truncated and answer.lifetime is None


def test_a_truncated_reply_cut_inside_a_record_is_still_truncated() -> None:
    """RFC 1035 4.2.1: a reply with TC may end anywhere; it is asked again over TCP."""
    record = reply_record(answers=tuple((f"192.0.2.{i}", 60) for i in range(1, 41)))
    record.header.tc = 1
    whole = packed(record)
    for length in (len(whole) - 3, 12 + len(question_key()) + 7, 300):
        answer = parse_reply(whole[:length], QID, question_key())
        assert answer is not None and answer.truncated and answer.lifetime is None


def _bare_header(flags: int, qd: int = 0, qid: bytes = QID) -> bytes:
    return qid + struct.pack("!HHHHH", flags, qd, 0, 0, 0)


@pytest.mark.parametrize("rcode", [RCODE.FORMERR, RCODE.SERVFAIL, RCODE.NOTIMP, RCODE.REFUSED])
def test_an_error_without_a_question_is_this_upstreams_failure(rcode: int) -> None:
    """Some servers answer FORMERR, REFUSED or NOTIMP without repeating the question:
    with our ID it is our upstream failing, to move on from at once, not a forgery."""
    answer = parse_reply(_bare_header(0x8000 | rcode), QID, question_key())
    assert answer is not None and failed(answer) and answer.lifetime is None
    assert parse_reply(_bare_header(0x8000 | rcode, qid=b"\x43\x21"), QID, question_key()) is None


def test_tc_without_a_question_means_tcp_and_other_bare_headers_are_not_ours() -> None:
    truncated = parse_reply(_bare_header(0x8000 | wire.FLAG_TC), QID, question_key())
    assert truncated is not None and truncated.truncated
    for flags in (0x8000, 0x8000 | RCODE.NXDOMAIN, RCODE.REFUSED):  # NOERROR, NXDOMAIN, QR=0
        assert parse_reply(_bare_header(flags), QID, question_key()) is None
    assert parse_reply(_bare_header(0x8000 | RCODE.REFUSED, qd=2), QID, question_key()) is None


@pytest.mark.parametrize(
    ("upper", "lower", "rcode"), [(1, 0, 16), (1, 7, 23), (0, 0, 0), (0, 3, 3)]
)
def test_the_opt_carries_the_rcodes_upper_bits(upper: int, lower: int, rcode: int) -> None:
    """RFC 6891 6.1.3: BADVERS (16) or BADCOOKIE (23) read as NOERROR or YXRRSET would
    pass a failure on as a false NODATA; any extended RCODE is the upstream failing."""
    record = reply_record(answers=(), rcode=lower)
    record.ar[0] = EDNS0(udp_len=4096, ext_rcode=upper)
    answer = parse_reply(packed(record), QID, question_key())
    assert answer is not None and answer.rcode == rcode and answer.edns
    assert failed(answer) == (rcode > 15 or rcode in (1, 2, 4, 5))


def _option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def _with_options(options: bytes, rcode: int = RCODE.SERVFAIL) -> bytes:
    """A reply with no records but an OPT whose data is ``options``, taken as is."""
    record = reply_record(answers=(), rcode=rcode, opt=False)
    head = bytearray(packed(record))
    head[10:12] = b"\x00\x01"  # ARCOUNT
    return bytes(head) + b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options


COOKIE = _option(10, bytes(range(8)))
EDE_6 = _option(15, b"\x00\x06signature expired")


@pytest.mark.parametrize(
    ("options", "found"),
    [
        (b"", None),
        (EDE_6, (6, "signature expired")),
        (COOKIE + EDE_6, (6, "signature expired")),  # after another option
        (_option(15, b"\x00\x16"), (22, "")),  # no EXTRA-TEXT
        (EDE_6 + _option(15, b"\x00\x09second"), (6, "signature expired")),  # the first
        (_option(15, b"\x00\x06bad\x00\x1b[31mtext\xff"), (6, "bad[31mtext\ufffd")),
        (_option(15, b"\x00\x06" + b"x" * 300), (6, "x" * 80)),
        (_option(15, b"\x00"), None),  # too short for an INFO-CODE
        (EDE_6[:-3], None),  # the option runs past the OPT's data
        (COOKIE[:3], None),  # not even a whole option head
    ],
)
def test_the_upstreams_extended_error_is_read_from_its_opt(
    options: bytes, found: tuple[int, str] | None
) -> None:
    """RFC 8914: kept so a SERVFAIL of ours can repeat it; its text reduced to printable
    characters (it ends up in our reply and our logs) and cut short."""
    answer = parse_reply(_with_options(options), QID, question_key())
    assert answer is not None and answer.rcode == RCODE.SERVFAIL and answer.edns
    assert answer.extended_error == found


def test_a_reply_without_an_opt_is_marked() -> None:
    answer = parse_reply(packed(reply_record(opt=False)), QID, question_key())
    assert answer is not None and not answer.edns


def test_ttls_with_the_top_bit_set_mean_zero() -> None:
    """RFC 2181 section 8: and an answer with such a TTL is not cached."""
    answer = parse_reply(
        packed(reply_record(answers=(("192.0.2.1", 0x80000010),))), QID, question_key()
    )
    assert answer is not None and answer.ttls == (0,) and answer.lifetime == 0
    assert [rr.ttl for rr in as_message(answer, answer.sections).rr] == [0]


def test_only_the_top_bit_ttls_are_zeroed_among_several_records() -> None:
    answers = (("192.0.2.1", 60), ("192.0.2.2", 0x80000010), ("192.0.2.3", 90))
    answer = parse_reply(packed(reply_record(answers=answers)), QID, question_key())
    assert answer is not None and answer.ttls == (60, 0, 90) and answer.lifetime == 0
    assert [rr.ttl for rr in as_message(answer, answer.sections).rr] == [60, 0, 90]


def test_records_after_the_upstream_opt_are_dropped_and_the_rest_kept_whole() -> None:
    record = reply_record(soa=(120, 300))
    record.add_ar(RR("extra.example.test", QTYPE.A, ttl=5, rdata=A("192.0.2.9")))
    reply = packed(record)
    answer = parse_reply(reply, QID, question_key())
    assert answer is not None and (answer.an, answer.ns, answer.ar) == (1, 1, 0)
    qend = 12 + len(question_key())
    opt_at = reply.index(b"\x00\x00\x29", qend)
    assert answer.sections == reply[qend:opt_at]
    assert [rr.ttl for rr in as_message(answer, answer.sections).rr] == [300]
    assert answer.ttls == (300, 120) and answer.lifetime == 300


@pytest.mark.parametrize("rcode", [RCODE.NXDOMAIN, RCODE.NOERROR])
def test_an_soa_tells_no_more_than_its_minimum(rcode: int) -> None:
    """RFC 2308 section 5: a negative answer lives min(SOA TTL, MINIMUM) seconds, and the
    SOA passed on says so, or a downstream cache would keep the answer for its TTL."""
    answer = parse_reply(
        packed(reply_record(answers=(), soa=(300, 20), rcode=rcode)), QID, question_key()
    )
    assert answer is not None and answer.ttls == (20,) and answer.lifetime == 20
    assert [rr.ttl for rr in as_message(answer, answer.sections).auth] == [20]
    kept = parse_reply(packed(reply_record(answers=(), soa=(15, 20))), QID, question_key())
    assert kept is not None and kept.ttls == (15,) and kept.lifetime == 15


def test_authentic_data_is_recorded() -> None:
    record = reply_record()
    record.header.ad = 1
    answer = parse_reply(packed(record), QID, question_key())
    assert answer is not None and answer.authentic
    plain = parse_reply(packed(reply_record()), QID, question_key())
    assert plain is not None and not plain.authentic


def _rich_reply() -> DNSRecord:
    """Answers, authority and additional records, compressed names, the OPT in the middle."""
    record = reply_record(
        answers=(("192.0.2.1", 300), ("192.0.2.2", 200)), soa=(100, 150), opt=False
    )
    record.add_ar(RR("ns.example.test", QTYPE.A, ttl=1000, rdata=A("192.0.2.53")))
    record.add_ar(EDNS0(udp_len=1232))
    record.add_ar(RR("ns.example.test", QTYPE.TXT, ttl=7, rdata=TXT("hello")))
    return record


@pytest.mark.parametrize("elapsed", [0, 1, 6, 7, 100, 299, 5000])
def test_aged_sections_rewrite_exactly_the_ttl_fields(elapsed: int) -> None:
    record = _rich_reply()
    answer = parse_reply(packed(record), QID, question_key())
    assert answer is not None
    # The OPT and what follows it are dropped: cutting it out from between records would
    # leave the later records' compression pointers aimed at the wrong bytes.
    assert (answer.an, answer.ns, answer.ar) == (2, 1, 1)
    aged = aged_sections(answer, elapsed)
    assert len(aged) == len(answer.sections)
    changed = {i for i, (a, b) in enumerate(zip(aged, answer.sections, strict=True)) if a != b}
    ttl_bytes = {offset + i for offset in answer.ttl_offsets for i in range(4)}
    assert changed <= ttl_bytes
    parsed = as_message(answer, aged)
    original = record.rr + record.auth + record.ar[:1]
    kept = parsed.rr + parsed.auth + parsed.ar
    assert [rr.ttl for rr in kept] == [max(0, rr.ttl - elapsed) for rr in original]
    assert [str(rr.rdata) for rr in kept] == [str(rr.rdata) for rr in original]


def test_capped_bounds_ttls_and_lifetime() -> None:
    answer = parse_reply(packed(_rich_reply()), QID, question_key())
    assert answer is not None and answer.lifetime == 200
    assert capped(answer, 10_000) is answer
    small = capped(answer, 60)
    assert small.ttls == tuple(min(t, 60) for t in answer.ttls) and small.lifetime == 60
    assert [rr.ttl for rr in as_message(small, small.sections).rr] == [60, 60]
    assert [rr.ttl for rr in as_message(small, aged_sections(small, 5)).rr] == [55, 55]


@pytest.mark.parametrize(("do", "cd"), [(False, False), (True, False), (False, True), (True, True)])
def test_query_message_asks_for_recursion_with_our_edns(do: bool, cd: bool) -> None:
    question = bytes(DNSRecord.question(NAME, "AAAA").pack())[12:]
    message = query_message(QID, question, do=do, cd=cd)
    parsed = DNSRecord.parse(message)
    assert message[:2] == QID and message[12 : 12 + len(question)] == question
    assert parsed.header.rd == 1 and parsed.header.qr == 0 and parsed.header.cd == int(cd)
    assert parsed.header.ad == 1  # asks whether the upstream validated, DO or not
    [opt] = parsed.ar
    assert opt.rtype == QTYPE.OPT and opt.rclass == wire.EDNS_PAYLOAD
    assert bool(opt.ttl & wire.EDNS_DO) == do


@pytest.mark.parametrize("cd", [False, True])
def test_plain_query_for_an_upstream_without_edns_keeps_the_old_zero_bits(cd: bool) -> None:
    question = bytes(DNSRecord.question(NAME, "A").pack())[12:]
    parsed = DNSRecord.parse(query_message(QID, question, do=True, cd=cd, edns=False))
    assert (parsed.header.rd, parsed.header.ad, parsed.header.cd) == (1, 0, int(cd))
    assert not parsed.ar


# --- hostile bytes: None, never an exception --------------------------------------------------


_CHECKED_TYPES = {"A", "AAAA", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "SRV", "DNAME", "RR"}
"""The types whose RDATA ``parse_reply`` checks (``RR``: dnslib's name for an owner or
the fixed fields, which every record has)."""


def _mutations() -> st.SearchStrategy[bytes]:
    base = st.sampled_from([GOOD, packed(_rich_reply()), packed(reply_record(soa=(5, 5)))])

    def flip(data: bytes, position: int, value: int) -> bytes:
        if not data:
            return data
        position %= len(data)
        return data[:position] + bytes([value]) + data[position + 1 :]

    def cut(data: bytes, length: int) -> bytes:
        return data[: length % (len(data) + 1)]

    def insert(data: bytes, position: int, junk: bytes) -> bytes:
        position %= len(data) + 1
        return data[:position] + junk + data[position:]

    byte = st.integers(0, 255)
    spot = st.integers(0, 10_000)
    one = st.one_of(
        st.builds(flip, base, spot, byte),
        st.builds(cut, base, spot),
        st.builds(insert, base, spot, st.binary(min_size=1, max_size=8)),
    )
    return st.one_of(one, st.builds(flip, one, spot, byte), st.builds(cut, one, spot))


@settings(max_examples=600, deadline=None)
@given(_mutations())
def test_mutated_replies_give_none_or_a_usable_answer(reply: bytes) -> None:
    """Whatever is passed on parses: a client's parser drops the whole message at one
    bad record, and a cached one would be replayed for its whole lifetime."""
    answer = parse_reply(reply, QID, question_key())
    if answer is None or answer.malformed:
        return
    if answer.rcode == wire.NOERROR:
        try:
            as_message(answer, answer.sections)
        except DNSError as exc:
            # dnslib is stricter than DNS in two ways: it refuses octets a label may hold
            # (RFC 2181 section 11: any octet) and empty RDATA (RFC 3597 allows it for
            # types it does not know); dig and kdig take both. The RDATA of the common
            # types is checked; a mutation may make any other type of a record.
            text = str(exc)
            other_type = re.match(r"Error unpacking (\w+)", text)
            assert (
                "Invalid label" in text
                or "Empty RR" in text
                or (other_type is not None and other_type.group(1) not in _CHECKED_TYPES)
            ), exc
    assert len(answer.ttl_offsets) == len(answer.ttls) == answer.an + answer.ns + answer.ar
    assert all(offset + 4 <= len(answer.sections) for offset in answer.ttl_offsets)
    assert len(aged_sections(answer, 3)) == len(answer.sections)
    assert answer.lifetime is None or answer.lifetime >= 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 0xFFFF), st.integers(0, 8), st.integers(0, 8))
def test_junk_after_a_valid_header_and_question_never_raises(
    junk: bytes, flags: int, an: int, ar: int
) -> None:
    question = bytes(DNSRecord.question(NAME, "A").pack())[12:]
    reply = QID + struct.pack("!HHHHH", flags | wire.FLAG_QR, 1, an, 0, ar) + question + junk
    answer = parse_reply(reply, QID, question_key())
    assert answer is None or isinstance(answer, UpstreamAnswer)


def test_a_positive_answer_with_an_soa_in_authority_keeps_its_own_lifetime() -> None:
    answer = parse_reply(
        packed(reply_record(answers=(("192.0.2.1", 300),), soa=(9, 9))), QID, question_key()
    )
    assert answer is not None and answer.lifetime == 300
