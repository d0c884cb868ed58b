"""The shortcut to a forwarded Question agrees with the full parse whenever it is taken.

``Responder._slow`` reads a cache miss's Question straight from the query when the
query has the common shape; any query it takes must come out exactly as
``parse_query`` followed by ``answer`` would have it, and every other query must be
left to them.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.responder import Question, Responder, _forwardable, parse_query
from tests.core.dns_helpers import opt, query, responder


def full_path(r: Responder, data: bytes) -> bytes | Question | None:
    parsed = parse_query(data)
    if not isinstance(parsed, Question):
        return parsed
    return r.answer(parsed, udp=True)


FORWARDING = responder(forwarding=True)
AUTHORITATIVE = responder(forwarding=True, authoritative=True)

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
    authoritative=st.booleans(),
)
def test_any_question_taken_is_the_one_the_full_parse_forwards(
    name: str, qtype: int, qclass: int, extra: bytes | None, flags: int, authoritative: bool
) -> None:
    r = AUTHORITATIVE if authoritative else FORWARDING
    data = query(name, qtype, qclass=qclass, edns=extra, flags=flags)
    taken = _forwardable(data, r.zone)
    if taken is not None:
        assert taken == full_path(r, data)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(min_size=12, max_size=80))
def test_garbage_is_never_taken_unless_the_full_parse_forwards_it_too(data: bytes) -> None:
    taken = _forwardable(data, FORWARDING.zone)
    if taken is not None:
        assert taken == full_path(FORWARDING, data)


def test_the_common_miss_is_taken_and_odd_shapes_are_not() -> None:
    zone = FORWARDING.zone
    miss = query("www.Example.test", 1, edns=opt(do=True))
    question = _forwardable(miss, zone)
    assert question is not None and question.do and question.edns
    assert question == full_path(FORWARDING, miss)
    assert _forwardable(query("web1.internal"), zone) is None  # owned
    assert _forwardable(query("www.example.test", 255), zone) is None  # ANY
    assert _forwardable(query("www.example.test", qclass=3), zone) is None  # CHAOS
    bad_labels = query("www.example.test")[:12] + b"\x05ab\x00cd\x00" + struct.pack("!HH", 1, 1)
    assert _forwardable(bad_labels, zone) is None  # a zero octet inside a label
    assert _forwardable(query("a." * 130 + "test"), zone) is None  # longer than 255 octets
    assert _forwardable(query("www.example.test", edns=opt(version=1)), zone) is None


def test_the_responder_forwards_what_the_full_parse_would() -> None:
    data = query("Www.Example.Test", 28, edns=opt(payload=4096))
    assert FORWARDING.respond(data) == full_path(FORWARDING, data)
