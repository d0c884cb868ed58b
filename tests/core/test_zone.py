"""Compiling a view into the zone index: which keys exist and what they share."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct

import pytest
from dnslib import DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.core import wire
from resolver.core.document import HostEntry, MappingDocument, make_document
from resolver.core.pipeline import ZoneSettings, compile_document
from resolver.core.responder import Responder
from resolver.core.views import CrossRegion, View, ViewRecord, build_view
from resolver.core.zone import (
    CompiledZone,
    OwnedNames,
    Prepared,
    ReplySettings,
    _ipv6_packed,
    _ipv6_reverse,
    compile_image,
    compile_zone,
    ipv6_reverse_wire,
    prepared_heads,
    reverse_claims,
)
from tests.core import strategies
from tests.core.dns_helpers import (
    AWAY,
    DOCUMENT,
    HOME,
    NEGATIVE_TTL,
    SERIAL,
    SETTINGS,
    TTL,
    name_wire,
    query,
)

A, AAAA, PTR, SOA = 1, 28, 12, 6


def key(name: str, rtype: int) -> bytes:
    return name_wire(name) + struct.pack("!HH", rtype, 1)


def reverse(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer


def compiled(**changes: object) -> CompiledZone:
    return compile_document(DOCUMENT, dataclasses.replace(SETTINGS, **changes)).zone  # type: ignore[arg-type]


ZONE = compiled()


@pytest.mark.parametrize(
    ("name", "rtype"),
    [
        ("web1", A),
        ("web1.internal", A),
        ("web1", AAAA),
        ("web1.internal", AAAA),
        ("api", A),
        ("api.internal", AAAA),
        ("web2.internal", A),
        ("cache.internal", A),
        ("blue.svc.internal", AAAA),
        ("db", A),
        (reverse("10.0.1.10"), PTR),
        (reverse("10.0.2.21"), PTR),
        (reverse("2600:1f18:1::10"), PTR),
        (reverse("10.0.3.40"), PTR),
    ],
    ids=str,
)
def test_answer_keys_present(name: str, rtype: int) -> None:
    assert key(name, rtype) in ZONE.answers


@pytest.mark.parametrize(
    ("name", "rtype", "why"),
    [
        ("web2", AAAA, "no IPv6 address"),
        ("db.internal", A, "a remote name answers bare only"),
        ("batch", A, "remote and without a public address"),
        (reverse("34.240.0.5"), PTR, "a remote name's public address is not ours"),
        (reverse("10.1.1.5"), PTR, "nor its private one"),
        (reverse("54.12.0.10"), PTR, "a local name's public address is not served"),
        ("svc.internal", A, "empty non-terminal: only in an authoritative zone"),
        ("internal", SOA, "apex SOA only in an authoritative zone"),
        ("web1.internal", SOA, "no SOA below the apex"),
    ],
    ids=str,
)
def test_answer_keys_absent(name: str, rtype: int, why: str) -> None:
    assert key(name, rtype) not in ZONE.answers, why


OWNED = [
    *("api", "web1", "web2", "cache", "blue.svc", "db", "pool"),
    *(f"{name}.internal" for name in ("api", "web1", "web2", "cache", "blue.svc", "pool")),
    *(
        reverse(address)
        for address in (
            *("10.0.1.10", "10.0.2.21", "10.0.2.20", "10.0.4.7", "2600:1f18:1::10"),
            "2600:1f18:1::47",
            *(f"10.0.3.{i}" for i in range(1, 41)),
            *(f"10.0.5.{i}" for i in range(1, 11)),
        )
    ),
]
NOT_OWNED = [
    *("batch", "db.internal", "svc.internal", "internal", "svc", "web1.internal.internal"),
    *("web", "eb1", "ec2.internal", reverse("34.240.0.5"), reverse("10.1.1.5")),
    reverse("54.12.0.10"),
]


@pytest.mark.parametrize("name", OWNED)
def test_owned_names_answer_nodata(name: str) -> None:
    assert ZONE.owns(name_wire(name))
    assert name_wire(name) in OwnedNames(ZONE)


@pytest.mark.parametrize("name", NOT_OWNED)
def test_other_names_are_not_owned(name: str) -> None:
    assert ZONE.nodata_for(name_wire(name)) is None
    assert name_wire(name) not in OwnedNames(ZONE)


def test_every_answer_key_is_an_owned_name() -> None:
    for k in ZONE.answers:
        assert ZONE.owns(k[:-4])


def test_qualified_nodata_points_the_soa_at_the_apex_inside_the_question() -> None:
    for name in ("web2.internal", "blue.svc.internal"):
        body = ZONE.nodata_for(name_wire(name)).body  # type: ignore[union-attr]
        apex = wire.HEADER_LEN + len(name_wire(name)) - len(name_wire("internal"))
        assert body[:2] == wire.pointer(apex)


def test_every_key_is_lowercase_and_a_legal_name() -> None:
    for k in ZONE.answers:
        assert k == k.lower()
        assert len(k) - 4 <= wire.MAX_NAME


def test_bare_and_qualified_forms_share_one_prepared_reply() -> None:
    for name in ("web1", "api", "cache", "blue.svc"):
        for rtype in (A, AAAA):
            bare = ZONE.answers.get(key(name, rtype))
            if bare is not None:
                assert ZONE.answers[key(f"{name}.internal", rtype)] is bare


def test_bare_names_and_reverse_names_share_one_nodata_reply() -> None:
    shared = ZONE.nodata_for(name_wire("web1"))
    for name in ("api", "db", reverse("10.0.1.10"), reverse("2600:1f18:1::10")):
        assert ZONE.nodata_for(name_wire(name)) is shared


def test_addresses_of_one_name_share_one_ptr_reply() -> None:
    ptrs = {id(ZONE.answers[key(reverse(f"10.0.3.{i}"), PTR)]) for i in range(1, 41)}
    assert len(ptrs) == 1


def test_headers_are_shared_between_zones() -> None:
    other = compiled(ttl=5, negative_ttl=7)
    assert other.one_answer is ZONE.one_answer
    assert prepared_heads(0, 1, 0, aa=True, ra=False) is ZONE.one_answer
    several = ZONE.answers[key("cache", A)]  # 40 addresses
    assert isinstance(several, Prepared)
    assert several.heads is prepared_heads(0, 40, 0, aa=True, ra=False)


def test_a_one_record_answer_is_stored_as_its_body_alone() -> None:
    assert type(ZONE.answers[key("web2", A)]) is bytes
    assert ZONE.lookup(key("web2", A)) == Prepared(ZONE.one_answer, ZONE.answers[key("web2", A)])  # type: ignore[arg-type]
    assert ZONE.lookup(key("web2", AAAA)) is None


@pytest.mark.parametrize(
    ("address", "owner"),
    [
        ("10.0.1.10", "api.internal."),  # shared by api and web1: first name in sorted order
        ("2600:1f18:1::10", "api.internal."),
        ("10.0.2.21", "api.internal."),
        ("10.0.2.20", "web2.internal."),
        ("10.0.4.7", "blue.svc.internal."),
        ("2600:1f18:1::47", "blue.svc.internal."),
        ("10.0.3.17", "cache.internal."),
    ],
    ids=str,
)
def test_reverse_names_point_at_the_first_qualified_name(address: str, owner: str) -> None:
    prepared = ZONE.lookup(key(reverse(address), PTR))
    assert prepared is not None
    body = prepared.body
    # Owner pointer (2) + TYPE, CLASS, TTL, RDLENGTH (10), then the uncompressed target.
    assert body[:2] == wire.POINTER_TO_QNAME
    rtype, rclass, ttl, rdlength = struct.unpack("!HHIH", body[2:12])
    assert (rtype, rclass, ttl) == (PTR, 1, TTL)
    assert body[12 : 12 + rdlength] == name_wire(owner)


def test_ipv6_reverse_name_is_the_full_nibble_form() -> None:
    name = reverse("2600:1f18:1::10")
    assert name.endswith(".ip6.arpa") and name.count(".") == 33
    assert key(name, PTR) in ZONE.answers


def test_prepared_heads_and_the_opt_appended_per_variant() -> None:
    prepared = ZONE.lookup(key("web1", A))
    assert prepared is not None
    assert (b"", wire.opt_record(do=False), wire.opt_record(do=True)) == wire.OPT_BY_VARIANT
    assert not prepared.body.endswith(wire.OPT_PLAIN)
    for index, head in enumerate(prepared.heads):
        flags, qd, an, ns, ar = struct.unpack("!HHHHH", head)
        assert flags & wire.FLAG_QR and flags & wire.FLAG_AA
        assert bool(flags & wire.FLAG_RD) == bool(index & 2)
        assert (qd, an, ns, ar) == (1, 1, 0, index & 1)


def test_soa_carries_serial_and_negative_ttl() -> None:
    soa = ZONE.soa_rdata
    assert soa.startswith(name_wire("tagdns.internal") + name_wire("hostmaster.internal"))
    serial, refresh, retry, expire, minimum = struct.unpack("!IIIII", soa[-20:])
    assert serial == SERIAL
    assert minimum == NEGATIVE_TTL
    assert (refresh, retry, expire) == (3600, 600, 86400)


def test_authoritative_adds_apex_and_empty_non_terminals() -> None:
    zone = compiled(authoritative=True)
    assert key("internal", SOA) in zone.answers
    assert zone.owns(name_wire("internal"))
    assert zone.owns(name_wire("svc.internal"))
    assert not zone.owns(name_wire("svc"))  # bare names have no parents to claim
    assert set(zone.structural) == {name_wire("internal"), name_wire("svc.internal")}
    assert set(zone.answers) - set(ZONE.answers) == {key("internal", SOA)}


def test_other_zone_suffix() -> None:
    zone = compiled(zone="fleet.example")
    assert key("web1.fleet.example", A) in zone.answers
    assert key("web1.internal", A) not in zone.answers
    assert zone.zone_wire == name_wire("fleet.example")


def test_public_view_qualifies_every_name_with_public_addresses() -> None:
    zone = compiled(view="public")
    for name in ("db", "db.internal", "web1.internal", "api"):
        assert key(name, A) in zone.answers
    assert key("batch", A) not in zone.answers  # no public address
    assert key(reverse("34.240.0.5"), PTR) in zone.answers
    assert key(reverse("10.1.1.5"), PTR) not in zone.answers


def test_cross_region_private_keeps_remote_names_bare_without_ptr() -> None:
    zone = compiled(view=HOME, cross_region=CrossRegion.PRIVATE)
    assert key("batch", A) in zone.answers
    assert key("batch.internal", A) not in zone.answers
    assert key(reverse("10.1.2.6"), PTR) not in zone.answers


def test_empty_view_compiles_to_empty_indexes() -> None:
    document = make_document(
        serial=1, generated_at="2025-01-01T00:00:00Z", tag_key="dns", regions=[AWAY], hosts=[]
    )
    zone = compile_zone(build_view(document, AWAY, "internal"))
    assert zone.names == 0
    assert not zone.answers and not zone.structural


LONG_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
"""253 octets: a legal name, but ``name.internal`` would be 262."""


def test_name_too_long_with_the_zone_is_left_out_and_reported() -> None:
    """Every name answers as ``name.<zone>`` too; one that cannot is left out, with a reason."""
    hosts = [
        HostEntry(LONG_NAME, HOME, "i-00000000000000001", "us-east-1a", "10.9.9.9", None, ()),
        HostEntry("web1", HOME, "i-00000000000000002", "us-east-1a", "10.9.9.10", None, ()),
    ]
    document = make_document(
        serial=1, generated_at="2025-01-01T00:00:00Z", tag_key="dns", regions=[HOME], hosts=hosts
    )
    loaded = compile_document(document, ZoneSettings(view=HOME, authoritative=True))
    assert [r.name for r in loaded.view.records] == ["web1"]
    assert [(o.name, o.instance_id) for o in loaded.view.omitted] == [
        (LONG_NAME, "i-00000000000000001")
    ]
    assert "too long to serve as name.internal (262 octets" in loaded.view.omitted[0].reason
    assert not loaded.zone.owns(name_wire(LONG_NAME))
    assert key(reverse("10.9.9.9"), PTR) not in loaded.zone.answers


def test_a_record_too_long_to_qualify_compiles_bare_only() -> None:
    """The compile's own guard, for a view built without ``region_view``'s screening."""
    view = View(HOME, "internal", 1, (ViewRecord(LONG_NAME, ("10.9.9.9",), (), True),))
    zone = compile_image(view, ReplySettings(authoritative=True)).materialize()
    assert key(LONG_NAME, A) in zone.answers
    assert key(reverse("10.9.9.9"), PTR) not in zone.answers
    assert all(len(k) - 4 <= wire.MAX_NAME for k in zone.answers)
    assert zone.owns(name_wire(LONG_NAME))
    # Its parents are not empty non-terminals either: nothing lives below them.
    assert set(zone.structural) == {name_wire("internal")}


def test_a_parent_that_is_a_name_is_no_empty_non_terminal() -> None:
    hosts = [
        HostEntry(name, HOME, f"i-0000000000000000{n}", "us-east-1a", f"10.9.9.{n}", None, ())
        for n, name in enumerate(["api.svc", "svc", "db.eu.svc"], start=1)
    ]
    document = make_document(
        serial=1, generated_at="2025-01-01T00:00:00Z", tag_key="dns", regions=[HOME], hosts=hosts
    )
    zone = compile_document(document, ZoneSettings(view=HOME, authoritative=True)).zone
    assert set(zone.structural) == {name_wire("internal"), name_wire("eu.svc.internal")}


def _ask(responder: Responder, name: str, qtype: int) -> DNSRecord:
    reply = responder.respond(query(name, qtype), udp=False)
    assert isinstance(reply, bytes)
    return DNSRecord.parse(reply)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=strategies.documents(), data=st.data())
def test_any_document_answers_exactly_its_view(
    document: MappingDocument, data: st.DataObject
) -> None:
    """For random fleets, every view record answers A/AAAA with exactly its addresses."""
    label = data.draw(
        st.sampled_from(["public", *document.regions]) if document.regions else st.just("public")
    )
    view = build_view(document, label, "internal")
    responder = Responder(compile_zone(view, ttl=TTL), forwarding=False)
    for record in view.records:
        names = [record.name] + ([f"{record.name}.internal"] if record.qualified else [])
        for name in names:
            for qtype, addresses in ((A, record.ipv4), (AAAA, record.ipv6)):
                reply = _ask(responder, name, qtype)
                assert reply.header.rcode == 0 and reply.header.aa
                got = [str(rr.rdata) for rr in reply.rr]
                assert got == [str(ipaddress.ip_address(a)) for a in addresses]
                if not addresses:
                    assert [rr.rtype for rr in reply.auth] == [SOA]


_TOO_LONG_TO_QUALIFY = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + ".d" * 28
_RECORDS = st.lists(
    st.builds(
        ViewRecord,
        name=st.sampled_from(["api", "db.eu", "web", "x", _TOO_LONG_TO_QUALIFY]),
        ipv4=st.lists(
            st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"]), max_size=2, unique=True
        ).map(tuple),
        ipv6=st.lists(st.sampled_from(["2600::1", "2600::2"]), max_size=2, unique=True).map(tuple),
        qualified=st.booleans(),
    ),
    max_size=5,
    unique_by=lambda record: record.name,
).map(lambda records: sorted(records, key=lambda record: record.name))
"""Few names on few addresses, so that names share addresses (and dual-stack names) often."""


@settings(max_examples=300, deadline=None)
@given(records=_RECORDS)
def test_each_reverse_name_answers_its_first_claimant(records: list[ViewRecord]) -> None:
    """The compile's inlined paths against the rule spelt out plainly (``reverse_claims``)."""
    view = View("us-east-1", "internal", SERIAL, tuple(records))
    image = compile_image(view, ReplySettings(ttl=TTL))
    zone = image.materialize()
    claims = reverse_claims(records, zone.zone_wire)
    ptr_keys = {k for k in zone.answers if k.endswith(struct.pack("!HH", PTR, 1))}
    assert ptr_keys == {name + struct.pack("!HH", PTR, 1) for name in claims}
    for reverse_wire, claimants in claims.items():
        prepared = zone.lookup(reverse_wire + struct.pack("!HH", PTR, 1))
        assert prepared is not None
        assert prepared.body[12:] == name_wire(claimants[0] + ".internal")
    assert image.shared_reverse == {name for name, by in claims.items() if len(by) > 1}
    for record in records:
        for qtype, addresses in ((A, record.ipv4), (AAAA, record.ipv6)):
            prepared = zone.lookup(key(record.name, qtype))
            assert (prepared is None) == (not addresses)


_IPV6_HEADS: dict[str, bytes] = {}
_IPV6_TAILS: dict[bytes, bytes] = {}


@settings(max_examples=300)
@given(
    value=st.one_of(
        st.integers(min_value=0, max_value=2**128 - 1),
        # A few /64s with many hosts, as a fleet has: the caches are hit.
        st.builds(
            lambda net, host: net << 64 | host,
            st.sampled_from([0x2600_1F18_1234_5600, 0x2001_0DB8_0000_0000, 0]),
            st.integers(min_value=0, max_value=2**64 - 1) | st.integers(0, 0xFFFF),
        ),
    )
)
def test_compiled_ipv6_packing_and_reverse_names_match_the_plain_ones(value: int) -> None:
    """The compile's per-/64 shortcuts: the bytes of ``ipaddress`` and ``ipv6_reverse_wire``."""
    address = ipaddress.IPv6Address(value)
    packed = _ipv6_packed(address.compressed, _IPV6_HEADS)
    assert packed == address.packed
    assert _ipv6_reverse(packed, _IPV6_TAILS) == ipv6_reverse_wire(packed)
