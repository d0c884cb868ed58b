"""Views: which names a node in a region, or a laptop, answers, with which addresses."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.addresses import address_sort_key
from resolver.core.document import HostEntry, MappingDocument, make_document
from resolver.core.names import conflict_screen
from resolver.core.views import (
    PUBLIC,
    CrossRegion,
    Omission,
    View,
    ViewRecord,
    _every_name_one_local_instance,
    _region_view_by_name,
    build_view,
    public_view,
    region_view,
)
from resolver.errors import ConfigError
from tests.core.strategies import documents, host_entries


def _host(
    name: str,
    region: str,
    number: int,
    private: str,
    public: str | None,
    *ipv6: str,
) -> HostEntry:
    return HostEntry(name, region, f"i-{number:017x}", region + "a", private, public, tuple(ipv6))


DOCUMENT = make_document(
    serial=42,
    generated_at="2024-05-01T12:00:00Z",
    tag_key="dns",
    regions=["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"],
    hosts=[
        _host("web", "us-east-1", 1, "10.0.0.2", "54.0.0.2", "2600::2"),
        _host("web", "us-east-1", 2, "10.0.0.1", None, "2600::1"),
        _host("web", "us-west-2", 3, "10.1.0.1", "54.1.0.1", "2600:1::1"),
        _host("api", "us-west-2", 3, "10.1.0.1", "54.1.0.1", "2600:1::1"),
        _host("api", "us-west-2", 4, "10.1.0.2", None),
        _host("db", "eu-west-1", 5, "10.2.0.1", None),
        _host("dup", "us-east-1", 6, "10.0.0.10", "54.0.0.10"),
        _host("dup", "us-east-1", 7, "10.0.0.9", "54.0.0.10"),
        _host("dup", "us-east-1", 8, "10.0.0.9", "54.0.0.9"),
        _host("old.internal", "us-east-1", 9, "10.0.0.99", "54.0.0.99"),
    ],
)
ZONE_OMISSION = Omission(
    "old.internal", "i-00000000000000009", "name ends in the zone suffix 'internal'"
)
LOCAL_DUP = ViewRecord("dup", ("10.0.0.9", "10.0.0.10"), (), qualified=True)
LOCAL_WEB = ViewRecord("web", ("10.0.0.1", "10.0.0.2"), ("2600::1", "2600::2"), qualified=True)


def test_region_view_public_cross_region() -> None:
    view = region_view(DOCUMENT, "us-east-1", "internal")
    assert view == View(
        label="us-east-1",
        zone="internal",
        serial=42,
        records=(ViewRecord("api", ("54.1.0.1",), (), qualified=False), LOCAL_DUP, LOCAL_WEB),
        omitted=(
            ZONE_OMISSION,
            Omission("api", "i-00000000000000004", "no public IPv4 address"),
            Omission("db", "i-00000000000000005", "no public IPv4 address"),
        ),
    )


def test_region_view_private_cross_region() -> None:
    view = region_view(DOCUMENT, "us-east-1", "internal", CrossRegion.PRIVATE)
    assert view.records == (
        ViewRecord("api", ("10.1.0.1", "10.1.0.2"), (), qualified=False),
        ViewRecord("db", ("10.2.0.1",), (), qualified=False),
        LOCAL_DUP,
        LOCAL_WEB,
    )
    assert view.omitted == (ZONE_OMISSION,)


def test_region_view_of_other_region() -> None:
    view = region_view(DOCUMENT, "us-west-2", "internal")
    assert view.records == (
        ViewRecord("api", ("10.1.0.1", "10.1.0.2"), ("2600:1::1",), qualified=True),
        ViewRecord("dup", ("54.0.0.9", "54.0.0.10"), (), qualified=False),
        ViewRecord("web", ("10.1.0.1",), ("2600:1::1",), qualified=True),
    )
    assert view.record("web") == view.records[2]
    assert view.record("db") is None


def test_empty_region_sees_every_name_as_remote() -> None:
    view = region_view(DOCUMENT, "ap-southeast-2", "internal")
    assert [(r.name, r.ipv4, r.qualified) for r in view.records] == [
        ("api", ("54.1.0.1",), False),
        ("dup", ("54.0.0.9", "54.0.0.10"), False),
        ("web", ("54.0.0.2", "54.1.0.1"), False),
    ]
    assert all(r.ipv6 == () for r in view.records)


def test_public_view() -> None:
    view = public_view(DOCUMENT, "internal")
    assert view == View(
        label=PUBLIC,
        zone="internal",
        serial=42,
        records=(
            ViewRecord("api", ("54.1.0.1",), ("2600:1::1",), qualified=True),
            ViewRecord("dup", ("54.0.0.9", "54.0.0.10"), (), qualified=True),
            ViewRecord("web", ("54.0.0.2", "54.1.0.1"), ("2600::2", "2600:1::1"), qualified=True),
        ),
        omitted=(
            ZONE_OMISSION,
            Omission("api", "i-00000000000000004", "no public IPv4 address"),
            Omission("db", "i-00000000000000005", "no public IPv4 address"),
            Omission("web", "i-00000000000000002", "no public IPv4 address"),
        ),
    )


def test_other_zone_keeps_names_and_omits_its_own() -> None:
    view = region_view(DOCUMENT, "us-east-1", "fleet.internal")
    assert "old.internal" in [r.name for r in view.records]
    web_view = region_view(DOCUMENT, "us-east-1", "web")
    assert "web" not in [r.name for r in web_view.records]
    assert Omission("web", "i-00000000000000001", "name ends in the zone suffix 'web'") in (
        web_view.omitted
    )


def test_names_shadowing_aws_are_omitted() -> None:
    document = make_document(
        serial=1,
        generated_at="2024-05-01T12:00:00Z",
        tag_key="dns",
        regions=["us-east-1"],
        hosts=[_host("ip-10-0-0-5.ec2", "us-east-1", 1, "10.9.9.9", "54.9.9.9")],
    )
    for view in (region_view(document, "us-east-1", "internal"), public_view(document, "internal")):
        assert view.records == ()
        assert [o.name for o in view.omitted] == ["ip-10-0-0-5.ec2"]
    assert [r.name for r in public_view(document, "fleet").records] == ["ip-10-0-0-5.ec2"]


def test_names_of_the_public_dns_are_omitted_from_every_view() -> None:
    """A document from before the rule (or written by hand) is still read; only the
    names that would take over public names on every node are left out."""
    hosts = [
        _host("github.com", "us-east-1", 1, "10.9.9.8", "54.9.9.8"),
        _host("sts.amazonaws.com", "eu-west-1", 2, "10.9.9.9", "54.9.9.9"),
        _host("web", "us-east-1", 3, "10.0.0.3", "54.0.0.3"),
    ]
    document = make_document(
        serial=1,
        generated_at="2024-05-01T12:00:00Z",
        tag_key="dns",
        regions=["us-east-1", "eu-west-1"],
        hosts=hosts,
    )
    views = [
        region_view(document, "us-east-1", "internal"),
        region_view(document, "eu-west-1", "internal"),
        public_view(document, "internal"),
    ]
    for view in views:
        assert [r.name for r in view.records] == ["web"]
        assert {(o.name, o.reason) for o in view.omitted} >= {
            (
                "github.com",
                "name would shadow a name in the public DNS (.com is a top-level domain)",
            ),
            (
                "sts.amazonaws.com",
                "name would shadow a name in the public DNS (.com is a top-level domain)",
            ),
        }
    # One local instance a name: the column-wise fast path must see it too.
    alone = make_document(
        serial=1,
        generated_at="2024-05-01T12:00:00Z",
        tag_key="dns",
        regions=["us-east-1"],
        hosts=[hosts[0], hosts[2]],
    )
    assert _every_name_one_local_instance(alone, "us-east-1", "internal") is None
    assert [r.name for r in region_view(alone, "us-east-1", "internal").records] == ["web"]


@pytest.mark.parametrize(
    ("region", "message"),
    [
        (
            "eu-central-1",
            "view region 'eu-central-1' is not among the document's regions "
            "(ap-southeast-2, eu-west-1, us-east-1, us-west-2)",
        ),
        ("auto", "view region 'auto' is not among"),
    ],
    ids=["unscanned", "auto"],
)
def test_region_not_in_document(region: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_view(DOCUMENT, region, "internal")
    assert str(caught.value).startswith(message)


def test_region_not_in_empty_document() -> None:
    empty = make_document(
        serial=1, generated_at="2024-05-01T12:00:00Z", tag_key="dns", regions=[], hosts=[]
    )
    with pytest.raises(ConfigError, match=r"\(none\)"):
        region_view(empty, "us-east-1", "internal")
    assert public_view(empty, "internal").records == ()


def test_build_view_dispatch() -> None:
    assert build_view(DOCUMENT, "public", "internal") == public_view(DOCUMENT, "internal")
    assert build_view(DOCUMENT, "us-west-2", "internal", CrossRegion.PRIVATE) == region_view(
        DOCUMENT, "us-west-2", "internal", CrossRegion.PRIVATE
    )


def _check_view(view: View, document: MappingDocument, zone: str) -> None:
    names = [r.name for r in view.records]
    assert names == sorted(set(names))
    for record in view.records:
        assert record.ipv4 or record.ipv6
        for addresses in (record.ipv4, record.ipv6):
            assert list(addresses) == sorted(set(addresses), key=address_sort_key)
        assert record.name != zone and not record.name.endswith("." + zone)
    served = set(names)
    omitted = {o.name for o in view.omitted}
    assert served | omitted == set(document.names())


@settings(max_examples=25, deadline=None)
@given(
    document=documents(),
    zone=st.sampled_from(["internal", "fleet.internal"]),
    private=st.booleans(),
)
def test_views_are_sorted_and_complete(document: MappingDocument, zone: str, private: bool) -> None:
    cross = CrossRegion.PRIVATE if private else CrossRegion.PUBLIC
    for region in document.regions:
        view = region_view(document, region, zone, cross)
        _check_view(view, document, zone)
        for record in view.records:
            assert record.qualified == any(
                h.region == region for h in document.hosts if h.name == record.name
            )
    _check_view(public_view(document, zone), document, zone)


@settings(max_examples=100, deadline=None)
@given(
    document=documents(),
    zone=st.sampled_from(["internal", "fleet.internal", "compute.internal"]),
    private=st.booleans(),
)
def test_region_view_is_the_view_built_name_by_name(
    document: MappingDocument, zone: str, private: bool
) -> None:
    cross = CrossRegion.PRIVATE if private else CrossRegion.PUBLIC
    for region in document.regions:
        assert region_view(document, region, zone, cross) == _region_view_by_name(
            document, region, zone, cross
        )


@settings(max_examples=200, deadline=None)
@given(
    hosts=st.lists(
        host_entries(region=st.just("us-east-1")),
        min_size=1,
        max_size=8,
        unique_by=lambda host: host.name,
    ),
    reordered=st.randoms(use_true_random=False),
)
def test_one_local_instance_a_name_is_built_on_columns_as_by_name(
    hosts: list[HostEntry], reordered: random.Random
) -> None:
    """The columnar case gives the loop's records, IPv6 order included."""
    shuffled = [h._replace(ipv6=tuple(reordered.sample(h.ipv6, len(h.ipv6)))) for h in hosts]
    document = MappingDocument(
        serial=7,
        generated_at="2024-05-01T12:00:00Z",
        tag_key="dns",
        regions=("us-east-1",),
        hosts=tuple(sorted(shuffled)),
    )
    by_name = _region_view_by_name(document, "us-east-1", "internal", CrossRegion.PUBLIC)
    columns = _every_name_one_local_instance(document, "us-east-1", "internal")
    screened = any(h.name.endswith(conflict_screen("internal")) for h in hosts)
    assert (columns is None) == screened  # a name the zone may refuse is left to the loop
    if columns is None:
        return
    assert columns == by_name.records
    assert by_name.omitted == ()
    assert region_view(document, "us-east-1", "internal").records == columns


@pytest.mark.parametrize(
    ("hosts", "why"),
    [
        ([("web", "us-east-1"), ("web", "us-east-1")], "a name on two instances"),
        ([("web", "us-east-1"), ("api", "us-west-2")], "an instance in another region"),
        ([("db.internal", "us-east-1")], "a name the zone refuses"),
        ([("b", "us-east-1"), ("a", "us-east-1")], "hosts out of name order"),
        ([], "no hosts"),
    ],
)
def test_the_columnar_case_leaves_the_rest_to_the_loop(
    hosts: list[tuple[str, str]], why: str
) -> None:
    entries = tuple(
        _host(name, region, number, f"10.0.0.{number + 1}", None)
        for number, (name, region) in enumerate(hosts)
    )
    document = MappingDocument(
        serial=7,
        generated_at="2024-05-01T12:00:00Z",
        tag_key="dns",
        regions=("us-east-1", "us-west-2"),
        hosts=entries,
    )
    assert _every_name_one_local_instance(document, "us-east-1", "internal") is None, why
