"""A forwarded CNAME chain that ends at an owned name is completed from the view.

Upstream replies are built with dnslib, read with ``parse_reply`` as the forwarder
reads them, completed, rendered as a client gets them, and parsed back with dnslib.
"""

from __future__ import annotations

import itertools

import pytest
from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RD, RR, SOA, A, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from resolver.core.cache import render_answer
from resolver.core.owned_target import MAX_CHAIN, complete_with_owned, starts_a_chain
from resolver.core.upstream_reply import UpstreamAnswer, parse_reply
from tests.core.dns_helpers import NEGATIVE_TTL, TTL, responder

ZONE = responder(forwarding=True).zone
QID = b"\x42\x42"
ALIAS = "db.corp.example"
UPSTREAM_SOA = RR(
    "corp.example", QTYPE.SOA, ttl=900, rdata=SOA("ns.corp.example", "host.corp.example")
)


def key_of(name: str, qtype: str) -> bytes:
    question = bytes(DNSRecord.question(name, qtype).pack())[12:]
    return question[:-4].lower() + question[-4:]


def upstream(
    records: list[RR],
    *,
    qtype: str = "A",
    rcode: int = RCODE.NXDOMAIN,
    ad: bool = True,
    authority: bool = True,
    name: str = ALIAS,
) -> UpstreamAnswer:
    """The upstream's reply to ``name``: ``records`` as its answer section, and the
    SOA of the NXDOMAIN its own search for the chain's end met."""
    reply = DNSRecord.question(name, qtype).reply()
    reply.header.id = int.from_bytes(QID, "big")
    reply.header.rcode = rcode
    reply.header.ad = int(ad)
    for record in records:
        reply.add_answer(record)
    if authority:
        reply.add_auth(UPSTREAM_SOA)
    answer = parse_reply(bytes(reply.pack()), QID, key_of(name, qtype))
    assert answer is not None
    return answer


def client_view(answer: UpstreamAnswer, qtype: str = "A", name: str = ALIAS) -> DNSRecord:
    question = bytes(DNSRecord.question(name, qtype).pack())[12:]
    reply = render_answer(
        answer,
        answer.sections,
        qid=QID,
        client_flags=0x0100 | 0x0020,  # RD, and AD: the client would see an upstream's AD
        question=question,
        variant=2,
        limit=None,
    )
    return DNSRecord.parse(reply)


def cname(owner: str, target: str, ttl: int = 600) -> RR:
    return RR(owner, QTYPE.CNAME, ttl=ttl, rdata=CNAME(target))


def answers(record: DNSRecord) -> list[tuple[str, str, int, str]]:
    return [
        (str(rr.rname).lower(), QTYPE[rr.rtype], rr.ttl, str(rr.rdata).lower()) for rr in record.rr
    ]


@pytest.mark.parametrize(
    ("chain", "qtype", "expected"),
    [
        (
            [cname(ALIAS, "web1.internal")],
            "A",
            [("web1.internal.", "A", TTL, "10.0.1.10")],
        ),
        (
            [cname(ALIAS, "Web1.INTERNAL")],  # names compare without case
            "AAAA",
            [("web1.internal.", "AAAA", TTL, "2600:1f18:1::10")],
        ),
        (
            [cname(ALIAS, "api")],  # a bare name, two instances
            "A",
            [("api.", "A", TTL, "10.0.1.10"), ("api.", "A", TTL, "10.0.2.21")],
        ),
        (
            # Two links, the second first: a chain is followed by name, not by position.
            [cname("mid.corp.example", "web2.internal"), cname(ALIAS, "mid.corp.example")],
            "A",
            [("web2.internal.", "A", TTL, "10.0.2.20")],
        ),
    ],
    ids=["qualified-A", "mixed-case-AAAA", "bare-two-instances", "two-links-out-of-order"],
)
def test_a_chain_ending_at_an_owned_name_gets_the_views_records(
    chain: list[RR], qtype: str, expected: list[tuple[str, str, int, str]]
) -> None:
    completed = complete_with_owned(upstream(chain, qtype=qtype), key_of(ALIAS, qtype), ZONE)
    reply = client_view(completed, qtype)
    assert reply.header.rcode == RCODE.NOERROR
    assert answers(reply)[: len(chain)] == answers(DNSRecord(rr=chain))
    assert answers(reply)[len(chain) :] == expected
    assert reply.auth == []  # the upstream's SOA was for the NXDOMAIN it met
    assert reply.header.ad == 0 and reply.header.aa == 0  # not the upstream's signed data
    assert completed.lifetime == min(TTL, 600)


@pytest.mark.parametrize("qtype", ["MX", "HTTPS", "TXT"])
def test_a_type_the_view_holds_nothing_of_is_nodata_not_the_upstreams_nxdomain(
    qtype: str,
) -> None:
    """The chain's end exists (it is ours), so NXDOMAIN would be wrong (RFC 6604)."""
    completed = complete_with_owned(
        upstream([cname(ALIAS, "web1.internal")], qtype=qtype), key_of(ALIAS, qtype), ZONE
    )
    reply = client_view(completed, qtype)
    assert reply.header.rcode == RCODE.NOERROR
    assert answers(reply) == [(ALIAS + ".", "CNAME", 600, "web1.internal.")]
    [soa] = reply.auth
    assert (str(soa.rname), soa.rtype) == ("internal.", QTYPE.SOA)


def test_a_chain_to_an_owned_reverse_name_gets_its_ptr() -> None:
    """RFC 2317 style: a reverse name held elsewhere, aliased to one of ours."""
    reverse = "10.1.0.10.in-addr.arpa"
    completed = complete_with_owned(
        upstream([cname(ALIAS, reverse)], qtype="PTR"), key_of(ALIAS, "PTR"), ZONE
    )
    assert answers(client_view(completed, "PTR"))[1:] == [
        (reverse + ".", "PTR", TTL, "api.internal.")
    ]


def test_an_owned_name_without_that_family_is_nodata_with_the_views_soa() -> None:
    assert ZONE.lookup(key_of("web2.internal", "AAAA")) is None  # the premise
    completed = complete_with_owned(
        upstream([cname(ALIAS, "web2.internal")], qtype="AAAA"), key_of(ALIAS, "AAAA"), ZONE
    )
    reply = client_view(completed, "AAAA")
    assert reply.header.rcode == RCODE.NOERROR
    assert answers(reply) == [(ALIAS + ".", "CNAME", 600, "web2.internal.")]
    [soa] = reply.auth
    assert (str(soa.rname), soa.rtype, soa.ttl) == ("internal.", QTYPE.SOA, NEGATIVE_TTL)
    assert completed.lifetime == min(600, NEGATIVE_TTL)


@pytest.mark.parametrize(
    ("records", "qtype"),
    [
        ([cname(ALIAS, "www.elsewhere.example")], "A"),  # not ours
        ([cname(ALIAS, "nothere.internal")], "A"),  # under the zone, but not a view name
        ([cname(ALIAS, "web1.internal"), RR("web1.internal", rdata=A("192.0.2.9"))], "A"),
        ([RR(ALIAS, rdata=A("192.0.2.8"))], "A"),  # no chain at all
        ([cname(ALIAS, "web1.internal")], "CNAME"),  # the alias is the answer
        ([cname(ALIAS, "web1.internal")], "ANY"),
        ([cname(ALIAS, "a.corp.example"), cname("a.corp.example", ALIAS)], "A"),  # a loop
        ([cname("other.example", "web1.internal")], "A"),  # a chain from another name
    ],
    ids=[
        "target-not-owned",
        "unowned-under-zone",
        "upstream-answered-target",
        "no-chain",
        "cname-question",
        "any-question",
        "loop",
        "not-from-the-question",
    ],
)
def test_other_answers_pass_as_they_came(records: list[RR], qtype: str) -> None:
    answer = upstream(records, qtype=qtype)
    assert complete_with_owned(answer, key_of(ALIAS, qtype), ZONE) is answer


@pytest.mark.parametrize(("links", "completed"), [(MAX_CHAIN, True), (MAX_CHAIN + 1, False)])
def test_a_chain_of_up_to_max_chain_links_is_followed(links: int, completed: bool) -> None:
    names = [ALIAS] + [f"l{i}.corp.example" for i in range(links - 1)] + ["web1.internal"]
    answer = upstream([cname(a, b) for a, b in itertools.pairwise(names)])
    assert (complete_with_owned(answer, key_of(ALIAS, "A"), ZONE) is not answer) == completed


def test_a_chain_that_runs_on_past_an_owned_name_passes_as_it_came() -> None:
    """The upstream says a name of ours is an alias: the agent does not mend that
    answer with the view's data for a later name."""
    chain = [cname(ALIAS, "web2.internal"), cname("web2.internal", "web1.internal")]
    answer = upstream(chain)
    assert complete_with_owned(answer, key_of(ALIAS, "A"), ZONE) is answer


def test_errors_and_truncated_replies_pass_as_they_came() -> None:
    for rcode in (RCODE.SERVFAIL, RCODE.REFUSED):
        answer = upstream([cname(ALIAS, "web1.internal")], rcode=rcode)
        assert complete_with_owned(answer, key_of(ALIAS, "A"), ZONE) is answer
    answer = upstream([cname(ALIAS, "web1.internal")])._replace(truncated=True)
    assert complete_with_owned(answer, key_of(ALIAS, "A"), ZONE) is answer


def test_a_pointer_that_does_not_point_back_is_not_followed() -> None:
    """The CNAME's RDATA is a pointer to itself: a loop a careless reader would spin in."""
    answer = upstream([cname(ALIAS, "web1.internal")], authority=False)
    rdata_at = len(answer.sections) - len(b"\x04web1\x08internal\x00")
    offset = 12 + len(key_of(ALIAS, "A")) + rdata_at
    looped = answer.sections[:rdata_at] + bytes((0xC0 | offset >> 8, offset & 0xFF))
    hostile = answer._replace(sections=looped)
    assert complete_with_owned(hostile, key_of(ALIAS, "A"), ZONE) is hostile


@given(
    st.binary(max_size=120),
    st.integers(min_value=1, max_value=8),
    st.sampled_from(["A", "AAAA", "PTR", "MX", "HTTPS"]),
)
def test_any_sections_give_an_answer_never_an_exception(
    sections: bytes, an: int, qtype: str
) -> None:
    """Whatever an upstream's records hold (parse_reply only walks them), completing
    returns an answer: the one given, or a completed one that renders."""
    for prefix in (b"", b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c"):
        answer = UpstreamAnswer(0, False, an, 0, 0, prefix + sections, (), (), None, False)
        result = complete_with_owned(answer, key_of(ALIAS, qtype), ZONE)
        assert isinstance(result, UpstreamAnswer)
        if result is not answer:
            client_view(result, qtype)


def test_a_signature_before_the_cname_is_kept_and_the_chain_still_followed() -> None:
    signature = RR(ALIAS, QTYPE.RRSIG, rdata=RD(bytes(18) + b"\x00" + bytes(8)))
    chain = [signature, cname(ALIAS, "web1.internal")]
    completed = complete_with_owned(upstream(chain), key_of(ALIAS, "A"), ZONE)
    got = answers(client_view(completed))
    assert [rtype for _, rtype, _, _ in got] == ["RRSIG", "CNAME", "A"]
    assert got[-1] == ("web1.internal.", "A", TTL, "10.0.1.10")


def test_a_dname_and_the_cname_it_synthesised_are_followed() -> None:
    """RFC 6672: an upstream holding ``corp.example DNAME internal`` answers with
    the DNAME first, then the CNAME it synthesised for the question."""
    name = "web1.corp.example"
    dname = RR("corp.example", QTYPE.DNAME, ttl=600, rdata=CNAME("internal"))
    chain = [dname, cname(name, "web1.internal")]
    answer = upstream(chain, name=name)
    completed = complete_with_owned(answer, key_of(name, "A"), ZONE)
    got = answers(client_view(completed, name=name))
    assert [rtype for _, rtype, _, _ in got] == ["DNAME", "CNAME", "A"]
    assert got[-1] == ("web1.internal.", "A", TTL, "10.0.1.10")
    assert starts_a_chain(answer) and starts_a_chain(completed)  # a reload drops both


def test_other_data_at_the_question_name_is_not_a_chain() -> None:
    """A name with a CNAME has no other data (RFC 1034 3.6.2): a reply that starts
    with an MX for the question is taken as no chain at all."""
    chain = [RR(ALIAS, QTYPE.MX, rdata=MX("mail.corp.example")), cname(ALIAS, "web1.internal")]
    answer = upstream(chain)
    assert complete_with_owned(answer, key_of(ALIAS, "A"), ZONE) is answer


def test_an_address_for_another_family_does_not_stop_completion() -> None:
    chain = [cname(ALIAS, "web1.internal"), RR("web1.internal", QTYPE.AAAA, rdata=AAAA("::1"))]
    completed = complete_with_owned(upstream(chain), key_of(ALIAS, "A"), ZONE)
    assert answers(client_view(completed))[-1] == ("web1.internal.", "A", TTL, "10.0.1.10")
