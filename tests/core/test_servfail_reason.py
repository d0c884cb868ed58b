"""The Extended DNS Error a forwarded question's SERVFAIL carries (RFC 8914)."""

from __future__ import annotations

import struct

import pytest
from dnslib import DNSRecord

from resolver.core import wire
from resolver.core.responder import Question, error_reply, parse_query
from resolver.core.servfail_reason import (
    INTERNAL_ERROR,
    MAX_TEXT,
    NOTHING_ASKED,
    UpstreamFailure,
    servfail_option,
)
from tests.core.dns_helpers import opt, query

EDE_OTHER = wire.EDE_OTHER
EDE_NO_REACHABLE_AUTHORITY = wire.EDE_NO_REACHABLE_AUTHORITY

TIMED_OUT = UpstreamFailure("10.0.0.2:53", "timed out", answered=False)
UNREACHABLE = UpstreamFailure("10.0.0.3:53", "unreachable (Connection refused)", answered=False)
REFUSED = UpstreamFailure("10.0.0.4:53", "answered REFUSED", answered=True)
BOGUS = UpstreamFailure(
    "10.0.0.5:53", "answered SERVFAIL", answered=True, extended_error=(6, "signature expired")
)
BLOCKED = UpstreamFailure("10.0.0.6:53", "answered REFUSED", answered=True, extended_error=(15, ""))


def decoded(option: bytes) -> tuple[int, str]:
    """(INFO-CODE, EXTRA-TEXT) of one EDE option, read by hand from its wire form."""
    code, length, info = struct.unpack_from("!HHH", option)
    assert code == wire.OPTION_EDE and length == len(option) - 4
    return info, option[6:].decode()


@pytest.mark.parametrize(
    ("failures", "code", "text"),
    [
        ([], EDE_NO_REACHABLE_AUTHORITY, NOTHING_ASKED),
        ([TIMED_OUT], EDE_NO_REACHABLE_AUTHORITY, "upstream 10.0.0.2:53 timed out"),
        (
            [TIMED_OUT, UNREACHABLE],
            EDE_NO_REACHABLE_AUTHORITY,
            "upstream 10.0.0.2:53 timed out; upstream 10.0.0.3:53 unreachable (Connection refused)",
        ),
        (
            [TIMED_OUT, REFUSED],
            EDE_OTHER,
            "upstream 10.0.0.2:53 timed out; upstream 10.0.0.4:53 answered REFUSED",
        ),
        # An upstream's own Extended DNS Error: its INFO-CODE, the first one given.
        (
            [REFUSED, BOGUS, BLOCKED],
            6,
            "upstream 10.0.0.4:53 answered REFUSED; "
            "upstream 10.0.0.5:53 answered SERVFAIL (EDE 6: signature expired); "
            "upstream 10.0.0.6:53 answered REFUSED (EDE 15)",
        ),
    ],
)
def test_no_reply_at_all_is_no_reachable_authority_and_an_error_reply_is_other(
    failures: list[UpstreamFailure], code: int, text: str
) -> None:
    assert decoded(servfail_option(failures)) == (code, text)


def test_a_bug_in_the_forwarder_says_so_whatever_the_upstreams_did() -> None:
    option = servfail_option([TIMED_OUT, REFUSED], internal_error=True)
    assert decoded(option) == (EDE_OTHER, INTERNAL_ERROR)


def test_a_long_story_in_any_script_is_cut_between_characters() -> None:
    said = UpstreamFailure("10.0.0.7:53", "answered SERVFAIL", True, (0, "é" * 80))
    option = servfail_option([said, *[TIMED_OUT] * 5])
    assert len(option) <= 6 + MAX_TEXT
    _code, text = decoded(option)  # decodes: no character was cut in two
    assert text.startswith("upstream 10.0.0.7:53 answered SERVFAIL (EDE 0: éé")
    assert text.endswith("...")


def test_a_servfail_with_the_longest_name_and_text_fits_512_octets() -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 255 octets in wire form
    q = parsed(query(longest, edns=opt(payload=512)))
    options = servfail_option([TIMED_OUT] * 20)
    assert len(error_reply(q, wire.SERVFAIL, ra=True, options=options)) <= 512


def test_a_long_story_is_cut_to_its_limit() -> None:
    many = [UpstreamFailure(f"10.0.{i}.1:53", "timed out", answered=False) for i in range(30)]
    _code, text = decoded(servfail_option(many))
    assert len(text) == MAX_TEXT and text.endswith("...")
    assert text.startswith("upstream 10.0.0.1:53 timed out; upstream 10.0.1.1:53")


def parsed(data: bytes) -> Question:
    q = parse_query(data)
    assert isinstance(q, Question)
    return q


def test_an_edns_client_gets_the_option_in_the_opt_of_the_servfail() -> None:
    option = servfail_option([TIMED_OUT])
    reply = error_reply(
        parsed(query("www.example.test", edns=opt(do=True))), wire.SERVFAIL, ra=True, options=option
    )
    record = DNSRecord.parse(reply)
    assert record.header.rcode == wire.SERVFAIL and record.header.ra
    [edns] = [rr for rr in record.ar if rr.rtype == wire.TYPE_OPT]
    assert edns.edns_do == 1 and edns.rclass == wire.EDNS_PAYLOAD
    [ede] = edns.rdata
    assert ede.code == wire.OPTION_EDE
    assert ede.data == option[4:]  # INFO-CODE and EXTRA-TEXT, as encoded


def test_a_client_without_edns_gets_a_plain_servfail() -> None:
    option = servfail_option([TIMED_OUT])
    reply = error_reply(parsed(query("www.example.test")), wire.SERVFAIL, ra=True, options=option)
    assert reply == error_reply(parsed(query("www.example.test")), wire.SERVFAIL, ra=True)
    assert DNSRecord.parse(reply).ar == []
