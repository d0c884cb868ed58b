"""The fast path agrees with the full parse whenever it answers.

``Responder._fast`` answers the common query shape straight from the bytes: owned
names, and for a name not owned NXDOMAIN under an authoritative zone, else the
Question to forward (a cache miss) or, when nothing is forwarded, REFUSED.
Whatever it gives must be exactly what
``parse_query`` followed by ``answer`` would give, and every other query must be
left to them.
"""

from __future__ import annotations

import struct

import pytest
from dnslib import DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.cache import AnswerCache
from resolver.core.responder import Question, Responder, parse_query
from tests.core.dns_helpers import NEGATIVE_TTL, opt, query, responder


def shortcut(r: Responder, data: bytes) -> Question | None:
    """The Question the fast path takes for ``data``, if it takes one."""
    taken = r._fast(data, True)
    return taken if isinstance(taken, Question) else None


def full_path(r: Responder, data: bytes) -> bytes | Question | None:
    parsed = parse_query(data)
    if not isinstance(parsed, Question):
        return parsed
    return r.answer(parsed, udp=True)


FORWARDING = responder(forwarding=True)
AUTHORITATIVE = responder(forwarding=True, authoritative=True)
PLAIN = responder(forwarding=False)
PLAIN_AUTHORITATIVE = responder(forwarding=False, authoritative=True)
RESPONDERS = (FORWARDING, AUTHORITATIVE, PLAIN, PLAIN_AUTHORITATIVE)

names = st.sampled_from(
    [
        "www.example.test",
        "WWW.Example.TEST",
        "web1",
        "web1.internal",
        "WEB1.Internal",
        "nothing.internal",
        "api",
        "x." * 120 + "test",
        "ip-10-0-0-5.ec2.internal",
    ]
)
edns = st.one_of(
    st.none(),
    st.builds(
        opt,
        payload=st.integers(0, 65535),
        do=st.booleans(),
        version=st.integers(0, 1),
        options=st.sampled_from([b"", b"\x00\x0a\x00\x02ab", b"\x00\x0a\x00\x05ab"]),
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    name=names,
    qtype=st.sampled_from([1, 28, 12, 6, 15, 65, 255, 0x4141]),
    qclass=st.sampled_from([1, 3, 255]),
    extra=edns,
    flags=st.sampled_from([0, 0x0010, 0x8000, 0x0800, 0x0020]),
    r=st.sampled_from(RESPONDERS),
)
def test_whatever_the_fast_path_gives_is_what_the_full_parse_gives(
    name: str, qtype: int, qclass: int, extra: bytes | None, flags: int, r: Responder
) -> None:
    data = query(name, qtype, qclass=qclass, edns=extra, flags=flags)
    taken = r._fast(data, True)
    if taken is not None:
        assert taken == full_path(r, data)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(min_size=12, max_size=80), r=st.sampled_from(RESPONDERS))
def test_garbage_is_never_answered_otherwise_than_by_the_full_parse(
    data: bytes, r: Responder
) -> None:
    taken = r._fast(data, True)
    if taken is not None:
        assert taken == full_path(r, data)


def test_the_common_miss_is_taken_and_odd_shapes_are_not() -> None:
    miss = query("www.Example.test", 1, edns=opt(do=True))
    question = shortcut(FORWARDING, miss)
    assert question is not None and question.do and question.edns
    assert question == full_path(FORWARDING, miss)
    assert shortcut(FORWARDING, query("web1.internal")) is None  # owned
    assert shortcut(FORWARDING, query("www.example.test", 255)) is None  # ANY
    assert shortcut(FORWARDING, query("www.example.test", qclass=3)) is None  # CHAOS
    bad_labels = query("www.example.test")[:12] + b"\x05ab\x00cd\x00" + struct.pack("!HH", 1, 1)
    assert shortcut(FORWARDING, bad_labels) is None  # a zero octet inside a label
    assert shortcut(FORWARDING, query("a." * 130 + "test")) is None  # longer than 255 octets
    assert shortcut(FORWARDING, query("www.example.test", edns=opt(version=1))) is None
    # With a cache, a miss in it comes to the same Question.
    cached = Responder(FORWARDING.zone, forwarding=True, cache=AnswerCache())
    assert shortcut(cached, miss) == question


def test_a_name_not_ours_is_refused_on_the_fast_path_when_nothing_is_forwarded() -> None:
    for data in (
        query("www.Example.test"),
        query("www.example.test", 28, edns=opt(do=True), flags=0x0010),
        query("nothing.internal", 15, edns=opt(payload=512)),
    ):
        taken = PLAIN._fast(data, True)
        assert isinstance(taken, bytes) and taken == full_path(PLAIN, data)
        assert taken[3] & 0x0F == 5  # REFUSED

    bad_labels = query("www.example.test")[:12] + b"\x05ab\x00cd\x00" + struct.pack("!HH", 1, 1)
    assert PLAIN._fast(bad_labels, True) is None  # FORMERR, by the full path
    assert PLAIN._fast(query("www.example.test", 255), True) is None  # ANY


@pytest.mark.parametrize("r", [AUTHORITATIVE, PLAIN_AUTHORITATIVE], ids=["forwarding", "plain"])
def test_a_name_under_an_authoritative_zone_is_nxdomain_on_the_fast_path(r: Responder) -> None:
    for data in (
        query("nothing.internal"),
        query("Deep.Nothing.INTERNAL", 28, edns=opt(do=True), flags=0x0110),
        query("x" * 63 + ".internal", 15, edns=opt(payload=512)),
    ):
        taken = r._fast(data, True)
        assert isinstance(taken, bytes) and taken == full_path(r, data)
        reply = DNSRecord.parse(taken)
        assert reply.header.rcode == 3 and reply.header.aa == 1
        assert [(str(rr.rname).lower(), rr.rtype, rr.ttl) for rr in reply.auth] == [
            ("internal.", 6, NEGATIVE_TTL)
        ]
    # AWS's own names under the zone are forwarded, or refused when nothing is.
    aws = r._fast(query("ip-10-0-0-5.ec2.internal"), True)
    assert isinstance(aws, Question if r is AUTHORITATIVE else bytes)


def test_the_responder_forwards_what_the_full_parse_would() -> None:
    data = query("Www.Example.Test", 28, edns=opt(payload=4096))
    assert FORWARDING.respond(data) == full_path(FORWARDING, data)
