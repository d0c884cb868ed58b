"""``Responder.respond`` against DESIGN.md's DNS behaviour, one table per rule.

Every reply is decoded with dnslib; the question section is compared byte for
byte with the query's, so the client's letter case must come back untouched.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from dnslib import DNSRecord

from resolver.core import responder as responder_module
from resolver.core import wire
from resolver.core.document import HostEntry, make_document
from resolver.core.pipeline import ZoneSettings, compile_document
from resolver.core.responder import Question, Responder, parse_query
from resolver.core.views import CrossRegion
from tests.core.dns_helpers import (
    CD,
    HOME,
    NEGATIVE_TTL,
    RD,
    SERIAL,
    TTL,
    broken_zone,
    header,
    name_wire,
    opt,
    parse,
    query,
    question,
    question_of,
    reply_question,
    responder,
)

A, NS, SOA, PTR, MX, TXT, AAAA, SRV, OPT, HTTPS, ANY = 1, 2, 6, 12, 15, 16, 28, 33, 41, 65, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

PLAIN = responder()
FORWARDING = responder(forwarding=True)
AUTHORITATIVE = responder(zone="fleet.internal", authoritative=True)
AUTHORITATIVE_FORWARDING = responder(zone="fleet.internal", authoritative=True, forwarding=True)
PRIVATE = responder(cross_region=CrossRegion.PRIVATE)
PUBLIC = responder(view="public")

CACHE_A = [f"10.0.3.{i}" for i in range(1, 41)]
POOL_A = [f"10.0.5.{i}" for i in range(1, 11)]


def reverse(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer


def rdatas(records: list[object]) -> list[str]:
    return [str(rr.rdata) for rr in records]  # type: ignore[attr-defined]


def opts(reply: DNSRecord) -> list[object]:
    return [rr for rr in reply.ar if rr.rtype == OPT]


def check_echo(data: bytes, reply: object) -> DNSRecord:
    """Common to every reply to a parsable query: QR, ID, opcode, RD and the question."""
    assert isinstance(reply, bytes)
    record = parse(reply)
    assert record.header.qr == 1
    assert reply[:2] == data[:2]
    assert reply_question(reply) == question_of(data)
    assert record.header.rd == (data[2] & 1)
    return record


# -- answers -------------------------------------------------------------------------------

ANSWERS = [
    ("bare-A", PLAIN, "web1", A, ["10.0.1.10"]),
    ("qualified-A", PLAIN, "web1.internal", A, ["10.0.1.10"]),
    ("case-echoed", PLAIN, "WeB1.InTeRnAl", A, ["10.0.1.10"]),
    ("upper-bare", PLAIN, "WEB2", A, ["10.0.2.20"]),
    ("bare-AAAA", PLAIN, "web1", AAAA, ["2600:1f18:1::10"]),
    ("qualified-AAAA", PLAIN, "Web1.Internal", AAAA, ["2600:1f18:1::10"]),
    ("two-instances", PLAIN, "api", A, ["10.0.1.10", "10.0.2.21"]),
    ("two-labels", PLAIN, "blue.svc.internal", AAAA, ["2600:1f18:1::47"]),
    ("trailing-dot", PLAIN, "api.internal.", A, ["10.0.1.10", "10.0.2.21"]),
    ("remote-public", PLAIN, "db", A, ["34.240.0.5"]),
    ("remote-private", PRIVATE, "db", A, ["10.1.1.5"]),
    ("remote-private-no-public-ip", PRIVATE, "batch", A, ["10.1.2.6"]),
    ("public-view-bare", PUBLIC, "web1", A, ["54.12.0.10"]),
    ("public-view-qualified", PUBLIC, "db.internal", A, ["34.240.0.5"]),
    ("public-view-AAAA", PUBLIC, "web1.internal", AAAA, ["2600:1f18:1::10"]),
    ("other-zone", AUTHORITATIVE, "web1.fleet.internal", A, ["10.0.1.10"]),
    ("forwarding-owned", FORWARDING, "web1", A, ["10.0.1.10"]),
    ("pool", PLAIN, "pool", A, POOL_A),
]


@pytest.mark.parametrize(
    "edns",
    [None, opt(), opt(do=True, options=b"\x00\x0a\x00\x08" + b"c" * 8)],
    ids=["no-edns", "edns", "edns-do-cookie"],
)
@pytest.mark.parametrize("udp", [True, False], ids=["udp", "tcp"])
@pytest.mark.parametrize(
    ("responder_", "name", "qtype", "addresses"),
    [case[1:] for case in ANSWERS],
    ids=[case[0] for case in ANSWERS],
)
def test_owned_name_answers(
    responder_: Responder,
    name: str,
    qtype: int,
    addresses: list[str],
    udp: bool,
    edns: bytes | None,
) -> None:
    data = query(name, qtype, edns=edns)
    reply = check_echo(data, responder_.respond(data, udp=udp))
    assert reply.header.rcode == NOERROR
    assert reply.header.aa == 1 and reply.header.tc == 0
    assert rdatas(reply.rr) == addresses
    for rr in reply.rr:
        assert rr.rtype == qtype and rr.rclass == 1 and rr.ttl == TTL
        assert str(rr.rname) == name.rstrip(".") + "."  # the owner points at the question
    assert reply.auth == []
    assert len(opts(reply)) == (0 if edns is None else 1)


def test_ttl_comes_from_settings() -> None:
    reply = parse(responder(ttl=7).respond(query("web1"), udp=True))
    assert [rr.ttl for rr in reply.rr] == [7]


# -- NODATA ----------------------------------------------------------------------------------

NODATA = [
    ("no-AAAA-bare", PLAIN, "web2", AAAA, "web2."),
    ("no-AAAA-qualified", PLAIN, "web2.internal", AAAA, "internal."),
    ("no-AAAA-case", PLAIN, "WeB2.InTeRnAl", AAAA, "InTeRnAl."),
    ("MX-bare", PLAIN, "web1", MX, "web1."),
    ("TXT-qualified", PLAIN, "web1.internal", TXT, "internal."),
    ("SRV-two-labels", PLAIN, "blue.svc.internal", SRV, "internal."),
    ("NS-owned", PLAIN, "api", NS, "api."),
    ("SOA-below-apex", PLAIN, "api.internal", SOA, "internal."),
    ("SOA-qualified-authoritative", AUTHORITATIVE, "web1.fleet.internal", SOA, "fleet.internal."),
    ("HTTPS", PLAIN, "Api.Internal", HTTPS, "Internal."),
    ("remote-no-AAAA", PLAIN, "db", AAAA, "db."),
    ("reverse-A", PLAIN, reverse("10.0.1.10"), A, reverse("10.0.1.10") + "."),
    ("reverse-TXT-v6", PLAIN, reverse("2600:1f18:1::10"), TXT, reverse("2600:1f18:1::10") + "."),
    ("PTR-on-forward-name", PLAIN, "web1", PTR, "web1."),
    ("other-zone", AUTHORITATIVE, "web2.Fleet.Internal", AAAA, "Fleet.Internal."),
    ("forwarding-owned", FORWARDING, "web2", AAAA, "web2."),
]


@pytest.mark.parametrize("edns", [None, opt()], ids=["no-edns", "edns"])
@pytest.mark.parametrize(
    ("responder_", "name", "qtype", "soa_owner"),
    [case[1:] for case in NODATA],
    ids=[case[0] for case in NODATA],
)
def test_nodata_carries_soa(
    responder_: Responder, name: str, qtype: int, soa_owner: str, edns: bytes | None
) -> None:
    data = query(name, qtype, edns=edns)
    reply = check_echo(data, responder_.respond(data, udp=True))
    assert reply.header.rcode == NOERROR and reply.header.aa == 1
    assert reply.rr == []
    assert [rr.rtype for rr in reply.auth] == [SOA]
    soa = reply.auth[0]
    assert soa.ttl == NEGATIVE_TTL
    assert soa.rdata.times[-1] == NEGATIVE_TTL  # SOA MINIMUM: the negative-caching TTL
    assert soa.rdata.times[0] == SERIAL
    assert str(soa.rname) == soa_owner
    assert (name.rstrip(".") + ".").endswith(soa_owner)  # a suffix of the qname, case kept
    assert len(opts(reply)) == (0 if edns is None else 1)


SELF_APEX_SOA = [
    ("bare", PLAIN, "web1"),
    ("bare-case", PLAIN, "WeB1"),
    ("bare-two-labels", PLAIN, "blue.svc"),
    ("remote", PLAIN, "db"),
    ("reverse-v4", PLAIN, reverse("10.0.1.10")),
    ("reverse-v6", PLAIN, reverse("2600:1f18:1::10")),
    ("forwarding", FORWARDING, "web2"),
    ("authoritative-bare", AUTHORITATIVE, "web1"),
]


@pytest.mark.parametrize("udp", [True, False], ids=["udp", "tcp"])
@pytest.mark.parametrize("edns", [None, opt()], ids=["no-edns", "edns"])
@pytest.mark.parametrize(
    ("responder_", "name"), [case[1:] for case in SELF_APEX_SOA], ids=[c[0] for c in SELF_APEX_SOA]
)
def test_a_name_that_is_its_own_apex_answers_its_soa(
    responder_: Responder, name: str, edns: bytes | None, udp: bool
) -> None:
    """Its NODATA names it as the SOA owner, so the SOA it names exists."""
    nodata = parse(responder_.respond(query(name, TXT, edns=edns), udp=udp))
    data = query(name, SOA, edns=edns)
    reply = check_echo(data, responder_.respond(data, udp=udp))
    assert reply.header.rcode == NOERROR and reply.header.aa == 1
    assert reply.auth == []
    assert [(rr.rtype, str(rr.rname), rr.ttl) for rr in reply.rr] == [
        (SOA, name + ".", NEGATIVE_TTL)
    ]
    assert reply.rr[0].rdata == nodata.auth[0].rdata
    assert str(nodata.auth[0].rname) == name + "."
    # The slow path (a parsed question) gives the same bytes.
    parsed = parse_query(data)
    assert isinstance(parsed, Question)
    assert responder_.answer(parsed, udp=udp) == responder_.respond(data, udp=udp)


TRANSFERS = [
    ("axfr-bare", PLAIN, "web1", 252),
    ("axfr-qualified", PLAIN, "web1.internal", 252),
    ("ixfr-reverse", PLAIN, reverse("10.0.1.10"), 251),
    ("axfr-apex-authoritative", AUTHORITATIVE, "fleet.internal", 252),
    ("axfr-not-owned-forwarding", FORWARDING, "example.com", 252),
    ("ixfr-owned-forwarding", FORWARDING, "web1", 251),
]


@pytest.mark.parametrize("udp", [True, False], ids=["udp", "tcp"])
@pytest.mark.parametrize(
    ("responder_", "name", "qtype"), [c[1:] for c in TRANSFERS], ids=[c[0] for c in TRANSFERS]
)
def test_zone_transfers_are_refused_never_forwarded(
    responder_: Responder, name: str, qtype: int, udp: bool
) -> None:
    """No zone is transferred from here, and a resolver upstream transfers none either."""
    data = query(name, qtype)
    reply = check_echo(data, responder_.respond(data, udp=udp))
    assert reply.header.rcode == REFUSED
    assert reply.rr == [] and reply.auth == []
    assert reply.header.ra == (1 if responder_.forwarding else 0)


@pytest.mark.parametrize("edns", [None, opt(do=True)], ids=["plain", "edns"])
@pytest.mark.parametrize("responder_", [PLAIN, FORWARDING, AUTHORITATIVE_FORWARDING])
@pytest.mark.parametrize("name", ["web1", "api.internal", "example.com", "no.fleet.internal"])
@pytest.mark.parametrize("qtype", [OPT, 128, 200, 249, 250, 253, 254])
def test_types_nothing_is_held_under_are_formerr_never_forwarded(
    qtype: int, name: str, responder_: Responder, edns: bytes | None
) -> None:
    """OPT, the meta range, TKEY, TSIG, MAILB and MAILA: an upstream answers FORMERR too,
    which the forwarder would take for a failing upstream (SERVFAIL after asking all)."""
    data = query(name, qtype, edns=edns)
    for udp in (True, False):
        reply = check_echo(data, responder_.respond(data, udp=udp))
        assert reply.header.rcode == FORMERR
        assert reply.rr == reply.auth == [] and reply.header.aa == 0
        assert len(opts(reply)) == (0 if edns is None else 1)


@pytest.mark.parametrize("qtype", [127, 251, 252, 255, 256, 65535])
def test_types_next_to_the_meta_range_are_not_formerr(qtype: int) -> None:
    reply = parse(FORWARDING.respond(query("web1", qtype), udp=False))
    assert reply.header.rcode != FORMERR


OWNED_NAMES = [
    "api",
    "api.internal",
    "web1",
    "web2.internal",
    "db",
    "cache.internal",
    "blue.svc",
    reverse("10.0.2.20"),
    reverse("2600:1f18:1::47"),
]


@pytest.mark.parametrize("qtype", [A, NS, SOA, PTR, MX, TXT, AAAA, SRV, HTTPS, ANY, 99, 65280])
@pytest.mark.parametrize("name", OWNED_NAMES)
def test_never_nxdomain_for_an_owned_name(name: str, qtype: int) -> None:
    for responder_ in (PLAIN, FORWARDING):
        reply = parse(responder_.respond(query(name, qtype), udp=False))
        assert reply.header.rcode == NOERROR
        assert reply.header.aa == 1
        assert reply.rr or [rr.rtype for rr in reply.auth] == [SOA]


# -- PTR ---------------------------------------------------------------------------------------

PTRS = [
    ("v4-shared-first-name", PLAIN, "10.0.1.10", "api.internal."),
    ("v4-second-instance", PLAIN, "10.0.2.21", "api.internal."),
    ("v4-single", PLAIN, "10.0.2.20", "web2.internal."),
    ("v4-two-labels", PLAIN, "10.0.4.7", "blue.svc.internal."),
    ("v4-many", PLAIN, "10.0.3.33", "cache.internal."),
    ("v6-shared-first-name", PLAIN, "2600:1f18:1::10", "api.internal."),
    ("v6-single", PLAIN, "2600:1f18:1::47", "blue.svc.internal."),
    ("other-zone", AUTHORITATIVE, "10.0.2.20", "web2.fleet.internal."),
    ("public-view", PUBLIC, "54.12.0.20", "web2.internal."),
    ("public-view-remote", PUBLIC, "34.240.0.5", "db.internal."),
]


@pytest.mark.parametrize("upper", [False, True], ids=["lower", "upper"])
@pytest.mark.parametrize(
    ("responder_", "address", "target"),
    [case[1:] for case in PTRS],
    ids=[case[0] for case in PTRS],
)
def test_ptr(responder_: Responder, address: str, target: str, upper: bool) -> None:
    name = reverse(address).upper() if upper else reverse(address)
    data = query(name, PTR)
    reply = check_echo(data, responder_.respond(data, udp=True))
    assert reply.header.rcode == NOERROR and reply.header.aa == 1
    assert rdatas(reply.rr) == [target]
    assert reply.rr[0].ttl == TTL
    assert str(reply.rr[0].rname) == name + "."


@pytest.mark.parametrize(
    ("responder_", "address"),
    [
        (PLAIN, "34.240.0.5"),  # remote name's public address
        (PLAIN, "54.12.0.10"),  # local name's public address: not served in a region view
        (PRIVATE, "10.1.1.5"),  # remote name's private address (peered VPC)
        (PLAIN, "10.0.9.9"),  # nobody's
        (PUBLIC, "10.0.1.10"),  # a private address in the public view
    ],
    ids=["remote-public", "local-public", "remote-private", "unknown", "public-view-private"],
)
def test_no_ptr_for_addresses_not_served_under_the_zone(
    responder_: Responder, address: str
) -> None:
    reply = parse(responder_.respond(query(reverse(address), PTR), udp=True))
    assert reply.header.rcode == REFUSED


# -- names not owned ---------------------------------------------------------------------------

NOT_OWNED = [
    ("public-name", "example.com", A),
    ("aws-name", "ip-10-0-0-1.ec2.internal", A),
    ("aws-regional", "ip-10-0-0-1.us-east-1.compute.internal", A),
    ("unknown-in-zone", "unknown.internal", A),
    ("remote-qualified", "db.internal", A),
    ("below-a-name", "x.web1.internal", A),
    ("empty-non-terminal", "svc.internal", A),
    ("apex-SOA", "internal", SOA),
    ("no-public-address", "batch", A),
    ("suffix-lookalike", "web1.internal.evil", A),
    ("prefix-lookalike", "xweb1", A),
    ("root", "", NS),
    ("remote-PTR", reverse("34.240.0.5"), PTR),
]


@pytest.mark.parametrize("edns", [None, opt(do=True)], ids=["no-edns", "edns-do"])
@pytest.mark.parametrize(
    ("name", "qtype"), [case[1:] for case in NOT_OWNED], ids=[case[0] for case in NOT_OWNED]
)
def test_not_owned_is_refused_without_forwarding(name: str, qtype: int, edns: bytes | None) -> None:
    data = query(name, qtype, edns=edns)
    reply = check_echo(data, PLAIN.respond(data, udp=True))
    assert reply.header.rcode == REFUSED
    assert reply.header.aa == 0 and reply.header.ra == 0
    assert reply.rr == [] and reply.auth == []
    if edns is None:
        assert reply.ar == []
    else:
        (record,) = opts(reply)
        assert record.rclass == wire.EDNS_PAYLOAD  # type: ignore[attr-defined]
        assert record.ttl & 0x8000  # type: ignore[attr-defined]
        assert extended_errors(record) == [NOT_AUTHORITATIVE]


NOT_AUTHORITATIVE = (wire.EDE_NOT_AUTHORITATIVE, "nothing is forwarded: upstream none")


def extended_errors(record: object) -> list[tuple[int, str]]:
    """(INFO-CODE, EXTRA-TEXT) of each EDE option in an OPT record, as dnslib reads it."""
    return [
        (struct.unpack("!H", option.data[:2])[0], option.data[2:].decode())
        for option in record.rdata  # type: ignore[attr-defined]
        if option.code == wire.OPTION_EDE
    ]


@pytest.mark.parametrize(
    "data",
    [
        query("example.com", edns=opt()),  # the fast path
        query("example.com", A, qclass=255, edns=opt(do=True)),  # QCLASS *: the slow path
    ],
    ids=["fast-path", "slow-path-class-any"],
)
def test_a_refused_name_says_why_to_edns_clients_on_either_path(data: bytes) -> None:
    """RFC 8914 20 (Not Authoritative): with --upstream none a name not ours has
    nowhere to go, and the operator reading dig's EDE line learns that at once."""
    reply = check_echo(data, PLAIN.respond(data, udp=True))
    assert reply.header.rcode == REFUSED
    (record,) = opts(reply)
    assert extended_errors(record) == [NOT_AUTHORITATIVE]


def test_the_longest_refused_name_with_its_ede_still_fits_512_octets() -> None:
    """The fast path sends a REFUSED without a truncation check."""
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 255 octets in wire form
    data = query(name, edns=opt(do=True))
    reply = PLAIN.respond(data, udp=True)
    assert isinstance(reply, bytes) and len(reply) <= 512
    assert parse(reply).header.rcode == REFUSED and not parse(reply).header.tc


@pytest.mark.parametrize(
    ("name", "qtype"), [case[1:] for case in NOT_OWNED], ids=[case[0] for case in NOT_OWNED]
)
def test_not_owned_is_handed_to_the_forwarder(name: str, qtype: int) -> None:
    data = query(name.upper(), qtype, qid=0xBEEF, edns=opt(payload=4096, do=True))
    result = FORWARDING.respond(data, udp=True)
    assert isinstance(result, Question)
    assert result.qid == b"\xbe\xef"
    assert result.question == question_of(data)
    assert result.key == question_of(data).lower()
    assert (result.qtype, result.qclass) == (qtype, 1)
    assert result.edns and result.do and result.payload == 4096
    assert result.rd and result.udp_limit() == wire.EDNS_PAYLOAD


# -- authoritative zone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "answers", "soa_owner"),
    [
        ("unknown.fleet.internal", A, NXDOMAIN, [], "fleet.internal."),
        ("UnKnOwN.FlEeT.InTeRnAl", AAAA, NXDOMAIN, [], "FlEeT.InTeRnAl."),
        ("x.web1.fleet.internal", A, NXDOMAIN, [], "fleet.internal."),
        ("db.fleet.internal", A, NXDOMAIN, [], "fleet.internal."),
        ("a.b.c.fleet.internal", TXT, NXDOMAIN, [], "fleet.internal."),
        ("nope.fleet.internal", ANY, NXDOMAIN, [], "fleet.internal."),
        ("svc.fleet.internal", A, NOERROR, [], "fleet.internal."),
        ("Svc.Fleet.Internal", ANY, NOERROR, [], "Fleet.Internal."),
        ("fleet.internal", A, NOERROR, [], "fleet.internal."),
        ("fleet.internal", SOA, NOERROR, ["tagdns.fleet.internal."], None),
        ("FLEET.internal", ANY, NOERROR, ["tagdns.fleet.internal."], None),
        ("web1.fleet.internal", A, NOERROR, ["10.0.1.10"], None),
    ],
    ids=[
        "unknown",
        "unknown-case",
        "below-a-name",
        "remote-qualified",
        "deep",
        "unknown-ANY",
        "empty-non-terminal",
        "empty-non-terminal-ANY",
        "apex-A",
        "apex-SOA",
        "apex-ANY",
        "owned",
    ],
)
def test_authoritative_zone(
    name: str, qtype: int, rcode: int, answers: list[str], soa_owner: str | None
) -> None:
    for responder_ in (AUTHORITATIVE, AUTHORITATIVE_FORWARDING):
        data = query(name, qtype, edns=opt())
        reply = check_echo(data, responder_.respond(data, udp=True))
        assert reply.header.rcode == rcode and reply.header.aa == 1
        assert [str(rr.rdata).split()[0] for rr in reply.rr] == answers
        if soa_owner is None:
            assert reply.auth == []
        else:
            assert [(str(rr.rname), rr.rtype, rr.ttl) for rr in reply.auth] == [
                (soa_owner, SOA, NEGATIVE_TTL)
            ]
        assert len(opts(reply)) == 1


def test_apex_soa_answer() -> None:
    reply = parse(AUTHORITATIVE.respond(query("fleet.internal", SOA), udp=True))
    (soa,) = reply.rr
    assert str(soa.rname) == "fleet.internal."
    assert str(soa.rdata.mname) == "tagdns.fleet.internal."
    assert str(soa.rdata.rname) == "hostmaster.fleet.internal."
    assert soa.rdata.times == (SERIAL, 3600, 600, 86400, NEGATIVE_TTL)


@pytest.mark.parametrize(
    "name", ["example.com", "ip-10-0-0-1.ec2.internal", "internal", "xfleet.internal"]
)
def test_authoritative_zone_forwards_or_refuses_outside_it(name: str) -> None:
    assert parse(AUTHORITATIVE.respond(query(name), udp=True)).header.rcode == REFUSED
    assert isinstance(AUTHORITATIVE_FORWARDING.respond(query(name), udp=True), Question)


AUTHORITATIVE_INTERNAL = responder(authoritative=True, forwarding=True)
"""Authoritative for ``internal`` itself, the parent of AWS's own names."""


@pytest.mark.parametrize(
    "name",
    [
        "ip-10-0-0-99.ec2.internal",
        "IP-10-0-0-99.EC2.Internal",
        "ec2.internal",
        "ip-10-0-1-10.us-east-1.compute.internal",
        "compute.internal",
    ],
)
def test_aws_names_under_an_authoritative_internal_are_forwarded(name: str) -> None:
    assert isinstance(AUTHORITATIVE_INTERNAL.respond(query(name), udp=True), Question)
    assert isinstance(
        AUTHORITATIVE_INTERNAL.respond(query(name, TXT, edns=opt()), udp=True), Question
    )


@pytest.mark.parametrize("name", ["unknown.internal", "xec2.internal", "ec2.internal.internal"])
def test_other_unknown_names_under_an_authoritative_internal_are_nxdomain(name: str) -> None:
    reply = parse(AUTHORITATIVE_INTERNAL.respond(query(name), udp=True))
    assert reply.header.rcode == NXDOMAIN and reply.header.aa == 1


def test_not_authoritative_never_nxdomain() -> None:
    for name in ("unknown.internal", "x.web1.internal", "nothing"):
        result = FORWARDING.respond(query(name), udp=True)
        assert isinstance(result, Question)


# -- header flags ----------------------------------------------------------------------------

FLAG_CASES = [
    ("answer", "web1", A, NOERROR),
    ("nodata", "web2", AAAA, NOERROR),
    ("ptr", reverse("10.0.2.20"), PTR, NOERROR),
    ("truncated", "cache", A, NOERROR),
    ("any", "web1", ANY, NOERROR),
]


@pytest.mark.parametrize("cd", [False, True], ids=["cd0", "cd1"])
@pytest.mark.parametrize("edns", [None, opt()], ids=["plain", "edns"])
@pytest.mark.parametrize("rd", [False, True], ids=["rd0", "rd1"])
@pytest.mark.parametrize(
    ("name", "qtype", "rcode"), [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES]
)
def test_rd_and_cd_copied_and_ra_only_with_forwarding(
    name: str, qtype: int, rcode: int, rd: bool, edns: bytes | None, cd: bool
) -> None:
    """RD as RFC 1035 asks, CD as RFC 4035 3.1.6 does: forwarded replies copy it too."""
    data = query(name, qtype, rd=rd, edns=edns, flags=CD if cd else 0)
    for responder_, ra in ((PLAIN, 0), (FORWARDING, 1)):
        reply = parse(responder_.respond(data, udp=True))
        assert reply.header.rcode == rcode
        assert (reply.header.rd, reply.header.cd) == (int(rd), int(cd))
        assert reply.header.ra == ra, "RA only when names not owned are forwarded"
        assert reply.header.aa == 1 and reply.header.ad == 0


@pytest.mark.parametrize("cd", [False, True], ids=["cd0", "cd1"])
@pytest.mark.parametrize("rd", [False, True], ids=["rd0", "rd1"])
def test_rd_and_cd_copied_on_errors(rd: bool, cd: bool) -> None:
    flags = (RD if rd else 0) | (CD if cd else 0)
    refused = PLAIN.respond(query("example.com", rd=rd, flags=flags), udp=True)
    nxdomain = AUTHORITATIVE.respond(query("no.fleet.internal", rd=rd, flags=flags), udp=True)
    formerr = PLAIN.respond(header(flags=flags, qd=0), udp=True)
    notimp = PLAIN.respond(header(flags=flags | 0x2000) + question("web1"), udp=True)
    badvers = PLAIN.respond(query("web1", rd=rd, flags=flags, edns=opt(version=1)), udp=True)
    for reply in (refused, nxdomain, formerr, notimp, badvers):
        assert isinstance(reply, bytes)
        assert (bool(reply[2] & 1), bool(reply[3] & CD)) == (rd, cd)


# -- EDNS --------------------------------------------------------------------------------------


@pytest.mark.parametrize("do", [False, True], ids=["do0", "do1"])
@pytest.mark.parametrize("payload", [0, 511, 512, 1232, 4096, 65535])
def test_opt_in_reply(payload: int, do: bool) -> None:
    for name in ("web1", "web2.internal", "cache"):
        qtype = AAAA if name.startswith("web2") else A
        data = query(name, qtype, edns=opt(payload=payload, do=do))
        reply = check_echo(data, PLAIN.respond(data, udp=False))
        (record,) = opts(reply)
        assert str(record.rname) == "."  # type: ignore[attr-defined]
        assert record.rclass == 1232  # type: ignore[attr-defined]
        ttl = record.ttl  # type: ignore[attr-defined]
        assert ttl >> 24 == 0, "no extended rcode"
        assert (ttl >> 16) & 0xFF == 0, "version 0"
        assert bool(ttl & 0x8000) == do
        assert ttl & 0x7FFF == 0


@pytest.mark.parametrize("version", [1, 2, 255])
@pytest.mark.parametrize("name", ["web1", "example.com", "cache"])
def test_unknown_edns_version_is_badvers(name: str, version: int) -> None:
    for responder_ in (PLAIN, FORWARDING):
        data = query(name, edns=opt(version=version, do=True))
        reply = check_echo(data, responder_.respond(data, udp=True))
        (record,) = opts(reply)
        ttl = record.ttl  # type: ignore[attr-defined]
        assert (ttl >> 24) << 4 | reply.header.rcode == 16, "BADVERS"
        assert (ttl >> 16) & 0xFF == 0, "we answer with the version we speak"
        assert ttl & 0x8000
        assert reply.rr == [] and reply.auth == []


# -- truncation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("responder_", "name", "qtype", "edns"),
    [
        (PLAIN, "cache", A, None),
        (PLAIN, "CaChE.InTeRnAl", A, None),
        (PLAIN, "cache", ANY, None),
        (PLAIN, "cache", A, opt(payload=512)),
        (PLAIN, "cache", A, opt(payload=100)),
        (PLAIN, "cache", A, opt(payload=600, do=True)),
        (PLAIN, "cache", A, b"\x00" + struct.pack("!HHBBHH", 41, 512, 0, 0, 0, 0)),
        (FORWARDING, "cache", A, None),
        (PRIVATE, "cache", A, None),
    ],
    ids=[
        "no-edns",
        "qualified-case",
        "ANY-slow-path",
        "edns-512",
        "edns-100-is-512",
        "edns-600-do",
        "edns-literal",
        "forwarding",
        "private",
    ],
)
def test_udp_reply_over_the_limit_is_truncated(
    responder_: Responder, name: str, qtype: int, edns: bytes | None
) -> None:
    data = query(name, qtype, edns=edns)
    raw = responder_.respond(data, udp=True)
    reply = check_echo(data, raw)
    assert isinstance(raw, bytes) and len(raw) <= 512
    assert reply.header.tc == 1
    assert reply.header.rcode == NOERROR
    assert reply.rr == [] and reply.auth == []
    assert reply.header.ra == (1 if responder_ is FORWARDING else 0)
    assert len(opts(reply)) == (0 if edns is None else 1)
    if edns is not None:
        assert bool(opts(reply)[0].ttl & 0x8000) == bool(edns[7] & 0x80)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("udp", "edns"),
    [(False, None), (False, opt()), (True, opt(payload=4096)), (True, opt(payload=700))],
    ids=["tcp", "tcp-edns", "udp-edns-4096", "udp-edns-700"],
)
def test_large_answer_in_full_when_it_fits(udp: bool, edns: bytes | None) -> None:
    data = query("cache", edns=edns)
    raw = PLAIN.respond(data, udp=udp)
    reply = check_echo(data, raw)
    assert isinstance(raw, bytes)
    assert reply.header.tc == 0
    assert rdatas(reply.rr) == CACHE_A
    assert len(raw) == 12 + 11 + 40 * 16 + (0 if edns is None else 11)
    if udp:
        assert len(raw) <= 1232


def test_small_edns_payload_counts_as_512() -> None:
    data = query("pool", edns=opt(payload=100))
    raw = PLAIN.respond(data, udp=True)
    assert isinstance(raw, bytes) and 100 < len(raw) <= 512
    reply = parse(raw)
    assert reply.header.tc == 0 and rdatas(reply.rr) == POOL_A


def test_our_payload_caps_the_client_s() -> None:
    """A client offering 4096 still gets at most 1232 bytes over UDP (we advertise 1232)."""
    hosts = [
        HostEntry("big", HOME, f"i-{0x300 + i:017x}", "us-east-1a", f"10.0.6.{i}", None, ())
        for i in range(1, 101)
    ]
    document = make_document(
        serial=1, generated_at="2025-01-01T00:00:00Z", tag_key="dns", regions=[HOME], hosts=hosts
    )
    big = Responder(compile_document(document, ZoneSettings(view=HOME)).zone, forwarding=False)
    data = query("big", edns=opt(payload=4096))
    udp = big.respond(data, udp=True)
    tcp = big.respond(data, udp=False)
    assert isinstance(udp, bytes) and isinstance(tcp, bytes)
    assert len(tcp) > 1232 and len(parse(tcp).rr) == 100
    assert len(udp) <= 1232 and parse(udp).header.tc == 1


# -- malformed and unusual messages ------------------------------------------------------------

WEB1 = question("web1")
LONG_LABEL = b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01"
NAME_256 = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00\x00\x01\x00\x01"  # 257 octets
NAME_255 = b"".join(b"\x3f" + b"a" * 63 for _ in range(3)) + b"\x3d" + b"a" * 61 + b"\x00"
NAME_255 += b"\x00\x01\x00\x01"

DROPPED = [
    ("empty", b""),
    ("one-byte", b"\x12"),
    ("eleven-bytes", header()[:11]),
    ("qr-set", header(flags=0x8000) + WEB1),
    ("qr-set-header-only", header(flags=0x8000, qd=0)),
    ("qr-set-notimp-opcode", header(flags=0x8000 | 0x2000) + WEB1),
    ("qr-set-garbage", header(flags=0x8100, qd=7) + b"\xff" * 30),
]


@pytest.mark.parametrize("udp", [True, False], ids=["udp", "tcp"])
@pytest.mark.parametrize("data", [c[1] for c in DROPPED], ids=[c[0] for c in DROPPED])
def test_dropped(data: bytes, udp: bool) -> None:
    assert PLAIN.respond(data, udp=udp) is None
    assert FORWARDING.respond(data, udp=udp) is None


BARE, BARE_OPT = "header", "header+opt"
QUESTION, QUESTION_OPT = "header+question", "header+question+opt"
"""What an error reply holds: the question only when it is sound and the fault lies
after it, and an OPT whenever the request has one (RFC 6891 6.1.1 and 7)."""

ERRORS = [
    ("qdcount-0", header(qd=0), FORMERR, BARE),
    ("qdcount-0-with-question", header(qd=0) + WEB1, FORMERR, BARE),
    ("qdcount-0-edns", header(qd=0, ar=1) + opt(), FORMERR, BARE_OPT),
    ("qdcount-2", header(qd=2) + WEB1 + question("web2"), FORMERR, BARE),
    ("qdcount-2-edns", header(qd=2, ar=1) + WEB1 + question("web2") + opt(), FORMERR, BARE_OPT),
    ("qdcount-2-lie", header(qd=2) + WEB1, FORMERR, BARE),
    ("header-only", header(), FORMERR, BARE),
    (
        "ancount-1",
        header(an=1) + WEB1 + b"\xc0\x0c\x00\x01\x00\x01" + b"\x00" * 4 + b"\x00\x00",
        FORMERR,
        BARE,
    ),
    (
        "ancount-1-edns",
        header(an=1, ar=1) + WEB1 + b"\xc0\x0c\x00\x01\x00\x01" + b"\x00" * 6 + opt(),
        FORMERR,
        BARE_OPT,
    ),
    ("nscount-1", header(ns=1) + WEB1, FORMERR, BARE),
    ("pointer-question", header() + b"\xc0\x0c\x00\x01\x00\x01", FORMERR, BARE),
    ("pointer-after-label", header() + b"\x04web1\xc0\x0c\x00\x01\x00\x01", FORMERR, BARE),
    ("pointer-loop-chain", header() + b"\xc0\x0c" * 20, FORMERR, BARE),
    ("label-64", header() + LONG_LABEL, FORMERR, BARE),
    (
        "label-extended-type",
        header() + b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01",
        FORMERR,
        BARE,
    ),
    ("name-257", header() + NAME_256, FORMERR, BARE),
    ("name-257-edns", header(ar=1) + NAME_256 + opt(), FORMERR, BARE),  # its OPT is not found
    ("no-root-label", header() + b"\x04web1", FORMERR, BARE),
    ("label-past-end", header() + b"\x3fweb1", FORMERR, BARE),
    ("no-type-class", header() + b"\x04web1\x00", FORMERR, BARE),
    ("half-type", header() + b"\x04web1\x00\x00\x01\x00", FORMERR, BARE),
    ("two-opt", header(ar=2) + WEB1 + opt() + opt(), FORMERR, QUESTION_OPT),
    ("opt-non-root-owner", header(ar=1) + WEB1 + b"\x01x" + opt(), FORMERR, QUESTION_OPT),
    ("opt-rdlength-lie", header(ar=1) + WEB1 + opt()[:-2] + b"\x00\x10", FORMERR, QUESTION_OPT),
    (
        "opt-option-misframed",
        header(ar=1) + WEB1 + opt(options=b"\x00\x0a\x00\x09" + b"c" * 8),
        FORMERR,
        QUESTION_OPT,
    ),
    ("arcount-lie", header(ar=2) + WEB1 + opt(), FORMERR, QUESTION_OPT),
    ("arcount-no-records", header(ar=1) + WEB1, FORMERR, QUESTION),
    ("ar-truncated-rr", header(ar=1) + WEB1 + b"\x00\x00\x29\x04", FORMERR, QUESTION),
    ("opcode-iquery", header(flags=0x0800) + WEB1, NOTIMP, BARE),
    ("opcode-status", header(flags=0x1000) + WEB1, NOTIMP, BARE),
    ("opcode-notify", header(flags=0x2000) + WEB1, NOTIMP, BARE),
    ("opcode-update", header(flags=0x2800) + WEB1, NOTIMP, BARE),
    ("opcode-15-garbage", header(flags=0x7800, qd=0) + b"\xff\xff", NOTIMP, BARE),
    ("opcode-15-edns", header(flags=0x7800, ar=1) + WEB1 + opt(), NOTIMP, BARE_OPT),
    ("opcode-15-edns-do", header(flags=0x7800, ar=1) + WEB1 + opt(do=True), NOTIMP, BARE_OPT),
]


@pytest.mark.parametrize(
    ("data", "rcode", "shape"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_error_replies(data: bytes, rcode: int, shape: str) -> None:
    opt_length = 11 if shape.endswith("+opt") else 0
    question_length = len(WEB1) if "question" in shape else 0
    for responder_, ra in ((PLAIN, 0), (FORWARDING, 0x80), (AUTHORITATIVE, 0)):
        reply = responder_.respond(data, udp=True)
        assert isinstance(reply, bytes)
        assert len(reply) == 12 + question_length + opt_length, shape
        flags, qd, an, ns, ar = struct.unpack("!HHHHH", reply[2:12])
        assert reply[:2] == data[:2]
        assert flags & 0x8000, "QR"
        assert flags & 0x000F == rcode
        assert flags & 0x7800 == struct.unpack("!H", data[2:4])[0] & 0x7800, "opcode echoed"
        assert flags & 0x0080 == ra, "RA says whether this server forwards, whatever the reply"
        assert (qd, an, ns, ar) == (1 if question_length else 0, 0, 0, 1 if opt_length else 0)
        assert reply[12 : 12 + question_length] == data[12 : 12 + question_length]
        if opt_length:
            record = parse(reply).ar[0]
            assert (record.rtype, record.rclass) == (41, 1232)
            assert record.ttl & 0x8000 == (0x8000 if data.endswith(opt(do=True)) else 0), "DO"


@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
def test_a_cut_datagram_is_formerr_with_ra_when_forwarding(edns: bool) -> None:
    """What the batched UDP path sends for a datagram longer than its buffer."""
    data = (header(ar=1) + WEB1 + opt() if edns else query("web1")) + b"\x00" * 64
    for responder_, ra in ((PLAIN, 0), (FORWARDING, 0x80)):
        reply = responder_.cut(data)
        assert reply is not None
        flags, qd, an, ns, ar = struct.unpack("!HHHHH", reply[2:12])
        assert flags & 0x000F == FORMERR and flags & 0x0080 == ra
        assert (qd, an, ns, ar) == (0, 0, 0, 1 if edns else 0)


def test_longest_legal_name_is_parsed() -> None:
    data = header() + NAME_255
    assert len(NAME_255) - 4 == 255
    reply = check_echo(data, PLAIN.respond(data, udp=True))
    assert reply.header.rcode == REFUSED


def test_trailing_bytes_after_the_question_are_ignored() -> None:
    data = query("web1") + b"\x00garbage"
    reply = parse(PLAIN.respond(data, udp=True))
    assert reply.header.rcode == NOERROR and rdatas(reply.rr) == ["10.0.1.10"]


def test_many_additional_records_are_walked_not_decompressed() -> None:
    """A 64 KB query full of records pointing at a pointer chain is cheap (it was quadratic)."""
    base = 12 + len(WEB1)
    chain = bytearray(b"\x01x\x00")
    start = base + 11
    previous = start
    for _ in range(300):
        offset = start + len(chain)
        chain += struct.pack("!H", 0xC000 | previous)
        previous = offset
    first = b"\x00" + struct.pack("!HHIH", 65280, 1, 0, len(chain)) + bytes(chain)
    record = struct.pack("!H", 0xC000 | previous) + struct.pack("!HHIH", 65280, 1, 0, 1) + b"z"
    count = (65535 - base - len(first) - 12) // len(record)
    data = header(ar=1 + count) + WEB1 + first + record * count
    reply = check_echo(data, PLAIN.respond(data, udp=False))
    assert reply.header.rcode == FORMERR  # more additional records than a query carries
    assert reply.ar == []  # no OPT among them


def _records(count: int) -> bytes:
    return b"".join(b"\x00" + struct.pack("!HHIH", 65280, 1, 0, 2) + b"zz" for _ in range(count))


@pytest.mark.parametrize("udp", [True, False], ids=["udp", "tcp"])
@pytest.mark.parametrize("extra", [0, 3, 4, 330])
def test_additional_records_past_four_are_formerr_unwalked(
    extra: int, udp: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of records in one query cost a hundred answers' CPU when each was
    walked, so a few clients could starve the rest; a query carries an OPT and a TSIG."""
    walked = 0
    skip_name = responder_module._skip_name

    def counting(data: bytes, position: int) -> int:
        nonlocal walked
        walked += 1
        return skip_name(data, position)

    monkeypatch.setattr(responder_module, "_skip_name", counting)
    data = header(ar=1 + extra) + WEB1 + opt(do=True) + _records(extra)
    reply = check_echo(data, PLAIN.respond(data, udp=udp))
    assert len(opts(reply)) == 1, "the query's OPT is echoed, FORMERR or not"
    if extra + 1 <= 4:
        assert reply.header.rcode == NOERROR and rdatas(reply.rr) == ["10.0.1.10"]
    else:
        assert reply.header.rcode == FORMERR and reply.rr == []
    assert walked <= 8


@pytest.mark.parametrize("count", [1, 32, 33, 1000])
def test_edns_options_past_thirty_two_are_formerr(count: int) -> None:
    options = struct.pack("!HH", 65001, 0) * count
    data = query("web1", edns=opt(options=options))
    for responder_ in (PLAIN, FORWARDING):
        reply = check_echo(data, responder_.respond(data, udp=True))
        assert reply.header.rcode == (NOERROR if count <= 32 else FORMERR)


def test_edns_query_with_other_additional_records() -> None:
    tsig_like = b"\x03key\x00" + struct.pack("!HHIH", 250, 255, 0, 4) + b"abcd"
    data = header(ar=2) + WEB1 + tsig_like + opt(do=True)
    reply = parse(PLAIN.respond(data, udp=True))
    assert reply.header.rcode == NOERROR and rdatas(reply.rr) == ["10.0.1.10"]
    assert opts(reply)[0].ttl & 0x8000  # type: ignore[attr-defined]


# -- classes and qtype ANY ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "qtype", "qclass", "expect"),
    [
        ("web1", A, 3, REFUSED),  # CH: the zone has no data in CHAOS
        ("version.bind", TXT, 3, REFUSED),
        ("web1", A, 4, REFUSED),  # HS
        ("web1", A, 254, REFUSED),  # NONE
        ("web1", A, 255, ["10.0.1.10"]),  # QCLASS *: matches IN
        ("WEB1.internal", AAAA, 255, ["2600:1f18:1::10"]),
        ("web1", ANY, 255, ["10.0.1.10", "2600:1f18:1::10"]),
        (reverse("10.0.2.20"), PTR, 255, ["web2.internal."]),
        ("web2", AAAA, 255, []),
        ("example.com", A, 255, REFUSED),
    ],
    ids=[
        "CH-owned",
        "CH-version-bind",
        "HS",
        "NONE",
        "ANY-class-A",
        "ANY-class-AAAA",
        "ANY-class-ANY",
        "ANY-class-PTR",
        "ANY-class-nodata",
        "ANY-class-not-owned",
    ],
)
def test_classes(name: str, qtype: int, qclass: int, expect: int | list[str]) -> None:
    data = query(name, qtype, qclass=qclass)
    reply = check_echo(data, PLAIN.respond(data, udp=True))
    if isinstance(expect, int):
        assert reply.header.rcode == expect and reply.header.aa == 0
        forwarded = FORWARDING.respond(data, udp=True)
        assert isinstance(forwarded, Question) and forwarded.qclass == qclass
        return
    assert reply.header.rcode == NOERROR and reply.header.aa == 1
    assert rdatas(reply.rr) == expect
    assert all(rr.rclass == 1 for rr in [*reply.rr, *reply.auth])
    if not expect:
        assert [rr.rtype for rr in reply.auth] == [SOA]


@pytest.mark.parametrize(
    ("responder_", "name", "expect"),
    [
        (PLAIN, "web1", [(A, "10.0.1.10"), (AAAA, "2600:1f18:1::10")]),
        (PLAIN, "Web1.Internal", [(A, "10.0.1.10"), (AAAA, "2600:1f18:1::10")]),
        (PLAIN, "web2", [(A, "10.0.2.20")]),
        (PLAIN, "db", [(A, "34.240.0.5")]),
        (PLAIN, "api", [(A, "10.0.1.10"), (A, "10.0.2.21"), (AAAA, "2600:1f18:1::10")]),
        (PLAIN, reverse("10.0.2.20"), [(PTR, "web2.internal.")]),
        (PLAIN, reverse("2600:1f18:1::10"), [(PTR, "api.internal.")]),
        (FORWARDING, "web1", [(A, "10.0.1.10"), (AAAA, "2600:1f18:1::10")]),
    ],
    ids=["bare", "qualified", "v4-only", "remote", "two-instances", "ptr", "ptr-v6", "forwarding"],
)
def test_qtype_any_for_owned_names(
    responder_: Responder, name: str, expect: list[tuple[int, str]]
) -> None:
    for edns in (None, opt(do=True)):
        data = query(name, ANY, edns=edns)
        reply = check_echo(data, responder_.respond(data, udp=True))
        assert reply.header.rcode == NOERROR and reply.header.aa == 1
        assert [(rr.rtype, str(rr.rdata)) for rr in reply.rr] == expect
        assert all(rr.ttl == TTL and str(rr.rname) == name + "." for rr in reply.rr)
        assert reply.header.ra == (1 if responder_ is FORWARDING else 0)
        assert len(opts(reply)) == (0 if edns is None else 1)


def test_qtype_any_not_owned() -> None:
    assert parse(PLAIN.respond(query("example.com", ANY), udp=True)).header.rcode == REFUSED
    assert isinstance(FORWARDING.respond(query("example.com", ANY), udp=True), Question)


# -- fast path and slow path agree -------------------------------------------------------------

AGREEMENT = [
    query("web1"),
    query("WEB1.INTERNAL", AAAA, rd=False),
    query("web2", AAAA, edns=opt()),
    query("cache", edns=opt(payload=4096, do=True)),
    query("cache"),
    query(reverse("10.0.1.10"), PTR, edns=opt(do=True, options=b"\x00\x08\x00\x00")),
    query("db", MX),
    query("api.internal", TXT, edns=opt(payload=0)),
]


@pytest.mark.parametrize("udp", [True, False], ids=["udp", "tcp"])
@pytest.mark.parametrize("data", AGREEMENT, ids=[f"q{i}" for i in range(len(AGREEMENT))])
def test_fast_and_slow_paths_agree(data: bytes, udp: bool) -> None:
    for responder_ in (PLAIN, FORWARDING, AUTHORITATIVE):
        parsed = parse_query(data)
        assert isinstance(parsed, Question)
        assert responder_.respond(data, udp=udp) == responder_.answer(parsed, udp=udp)


# -- internal errors ---------------------------------------------------------------------------


def test_internal_error_is_servfail_with_the_question(caplog: pytest.LogCaptureFixture) -> None:
    zone = PLAIN.zone
    broken = broken_zone(zone)
    for data in (query("WeB1"), query("example.com", edns=opt(do=True))):
        reply = check_echo(data, Responder(broken, forwarding=False).respond(data, udp=True))
        assert reply.header.rcode == SERVFAIL
        assert len(opts(reply)) == (1 if data[11] else 0)
        if data[11]:  # EDNS: the client is told it was ours
            (record,) = opts(reply)
            assert extended_errors(record) == [(0, "internal error in the agent (logged)")]
    assert Responder(broken, forwarding=False).respond(b"\x00" * 5, udp=True) is None
    errors = [r for r in caplog.records if r.name == "tagdns.responder"]
    assert len(errors) == 2 and all(r.exc_info for r in errors), "logged, with the traceback"


def test_the_last_resort_servfail_says_internal_error_even_without_a_question() -> None:
    """``servfail`` for a message whose question does not parse (two questions here):
    a bare SERVFAIL, with the OPT the request had and the EDE in it."""
    data = header(0x4242, qd=2, ar=1) + question("web1") + question("web2") + opt()
    reply = responder_module.servfail(data)
    assert reply is not None
    record = parse(reply)
    assert record.header.rcode == SERVFAIL and record.questions == []
    (option,) = opts(record)
    assert extended_errors(option) == [(0, "internal error in the agent (logged)")]


def test_question_helpers() -> None:
    assert name_wire("A.b.") == b"\x01A\x01b\x00"
    parsed = parse_query(query("WeB1.InTeRnAl", AAAA, edns=opt(payload=300)))
    assert isinstance(parsed, Question)
    assert parsed.qname_wire == name_wire("web1.internal")
    assert parsed.udp_limit() == 512
