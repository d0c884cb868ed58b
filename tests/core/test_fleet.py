"""From scanned instances to a document: what gets published, serials, no needless writes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.document import (
    MAX_SERIAL,
    HostEntry,
    MappingDocument,
    Rejection,
    parse_document,
)
from resolver.core.fleet import ScannedInstance, build_document, entries_for_instance
from resolver.errors import DocumentError
from tests.core.strategies import REGIONS, ipv4s, ipv6s

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NOW_TS = 1714564800
ID1, ID2, ID3 = "i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c"


def _instance(
    instance_id: str = ID1,
    tag: str | None = "web",
    *,
    region: str = "us-east-1",
    state: str = "running",
    private: str | None = "10.0.0.1",
    public: str | None = "54.0.0.1",
    ipv6: tuple[str, ...] = (),
    az: str | None = None,
) -> ScannedInstance:
    return ScannedInstance(
        region=region,
        instance_id=instance_id,
        az=az if az is not None else region + "a",
        state=state,
        private_ipv4=private,
        public_ipv4=public,
        ipv6=ipv6,
        tag_value=tag,
    )


def _build(
    instances: list[ScannedInstance],
    previous: MappingDocument | None = None,
    now: datetime = NOW,
    regions: tuple[str, ...] = ("us-east-1", "us-west-2"),
    *,
    republish: bool = False,
) -> MappingDocument:
    return build_document(
        instances,
        regions=regions,
        tag_key="dns",
        zone="internal",
        previous=previous,
        now=now,
        republish=republish,
    )


@pytest.mark.parametrize(
    "state", ["pending", "stopping", "stopped", "shutting-down", "terminated", "Running"]
)
def test_only_running_instances(state: str) -> None:
    assert entries_for_instance(_instance(state=state), "internal") == ([], [])


def test_untagged_instance_is_ignored() -> None:
    assert entries_for_instance(_instance(tag=None), "internal") == ([], [])


def test_entries_for_tagged_instance() -> None:
    instance = _instance(
        tag=" Web, api,bad name", ipv6=("2600:0::2", "2600::1", "2600::0001"), public=None
    )
    entries, rejections = entries_for_instance(instance, "internal")

    def entry(name: str) -> HostEntry:
        return HostEntry(
            name, "us-east-1", ID1, "us-east-1a", "10.0.0.1", None, ("2600::1", "2600::2")
        )

    assert entries == [entry("web"), entry("api")]
    assert rejections == [
        Rejection(
            "us-east-1",
            ID1,
            "bad name",
            "name 'bad name' has characters other than letters, digits and hyphens",
        )
    ]


@pytest.mark.parametrize(
    ("instance", "reason"),
    [
        (_instance(private=None), "private_ipv4: expected an IPv4 address string, got NoneType"),
        (_instance(private="10.0.0"), "private_ipv4: '10.0.0' is not an IPv4 address"),
        (_instance(public="::1"), "public_ipv4: '::1' is not an IPv4 address"),
        (_instance(ipv6=("fe80::1%eth0",)), "ipv6: 'fe80::1%eth0' is not an IPv6 address"),
        (_instance(az="nowhere"), "az: 'nowhere' is not an availability zone"),
    ],
    ids=["no-private", "bad-private", "bad-public", "scoped-ipv6", "bad-az"],
)
def test_instance_with_unusable_data_is_rejected(instance: ScannedInstance, reason: str) -> None:
    assert entries_for_instance(instance, "internal") == (
        [],
        [Rejection("us-east-1", ID1, "web", reason)],
    )


def test_long_hostile_value_is_truncated() -> None:
    value = "$" * 2000
    _, rejections = entries_for_instance(_instance(tag=value), "internal")
    assert [len(r.value) for r in rejections] == [512]


def test_first_document() -> None:
    document = _build(
        [
            _instance(ID2, "web", region="us-west-2", public=None),
            _instance(ID1, "web,$(reboot)"),
            _instance(ID3, "api", state="stopped"),
        ],
        regions=("us-west-2", "us-east-1", "eu-west-1"),
    )
    assert document.serial == NOW_TS
    assert document.generated_at == "2024-05-01T12:00:00Z"
    assert document.tag_key == "dns"
    assert document.regions == ("eu-west-1", "us-east-1", "us-west-2")
    assert [(h.name, h.instance_id, h.region) for h in document.hosts] == [
        ("web", ID1, "us-east-1"),
        ("web", ID2, "us-west-2"),
    ]
    assert document.rejected == (
        Rejection(
            "us-east-1",
            ID1,
            "$(reboot)",
            "name '$(reboot)' has characters other than letters, digits and hyphens",
        ),
    )
    assert parse_document(document.to_bytes()) == document


def test_unchanged_content_returns_previous_object() -> None:
    instances = [_instance(ID1, "web"), _instance(ID2, "api,bad name")]
    first = _build(instances)
    later = datetime(2024, 5, 2, tzinfo=UTC)
    again = _build(list(reversed(instances)), previous=first, now=later)
    assert again is first


@pytest.mark.parametrize(
    ("previous_serial", "expected"),
    [(5, NOW_TS), (NOW_TS, NOW_TS + 1), (NOW_TS + 100, NOW_TS + 101)],
    ids=["old-serial", "same-second", "serial-ahead-of-clock"],
)
def test_changed_content_increases_serial(previous_serial: int, expected: int) -> None:
    base = _build([_instance(ID1, "web")])
    previous = MappingDocument(
        serial=previous_serial,
        generated_at=base.generated_at,
        tag_key=base.tag_key,
        regions=base.regions,
        hosts=base.hosts,
    )
    document = _build([_instance(ID1, "web,api")], previous=previous)
    assert document.serial == expected
    assert document.serial > previous.serial
    assert document.serial >= NOW_TS
    assert document.names() == frozenset({"web", "api"})


@pytest.mark.parametrize(
    ("previous_serial", "content", "expected"),
    [
        (5, "web", NOW_TS),
        (NOW_TS, "web", NOW_TS + 1),
        (NOW_TS + 100, "web", NOW_TS + 101),
        (5, "web,api", NOW_TS),
        (None, "web", NOW_TS),
    ],
    ids=["unchanged", "unchanged-same-second", "unchanged-serial-ahead", "changed", "first"],
)
def test_republish_always_issues_a_new_serial(
    previous_serial: int | None, content: str, expected: int
) -> None:
    """--force: a restored older object (serial below what agents hold) must be superseded."""
    previous = None
    if previous_serial is not None:
        base = _build([_instance(ID1, "web")], now=datetime(2024, 4, 1, tzinfo=UTC))
        previous = dataclasses.replace(base, serial=previous_serial)
    document = _build([_instance(ID1, content)], previous=previous, republish=True)
    assert document is not previous
    assert document.serial == expected
    assert document.generated_at == "2024-05-01T12:00:00Z"
    assert document.names() == frozenset(content.split(","))
    if previous is not None and content == "web":
        assert previous.same_content(document)
    assert parse_document(document.to_bytes()) == document


def test_empty_region_is_kept() -> None:
    document = _build([], regions=("us-west-2", "us-east-1"))
    assert document.regions == ("us-east-1", "us-west-2")
    assert document.hosts == ()
    assert _build([], previous=document, regions=("us-east-1",)) is not document


def test_duplicate_scan_of_one_instance_is_published_once() -> None:
    document = _build([_instance(ID1, "web"), _instance(ID1, "web")])
    assert [h.instance_id for h in document.hosts] == [ID1]
    assert parse_document(document.to_bytes()) == document


def test_instance_region_is_always_among_regions() -> None:
    document = _build([_instance(ID1, "web", region="eu-west-1")], regions=("us-east-1",))
    assert document.regions == ("eu-west-1", "us-east-1")
    assert parse_document(document.to_bytes()) == document


scanned = st.builds(
    ScannedInstance,
    region=st.sampled_from(REGIONS[:3]),
    instance_id=st.sampled_from([ID1, ID2, ID3, "i-0123abcd"]),
    az=st.sampled_from(["us-east-1a", "us-west-2-lax-1a", "eu-west-1c", "bogus"]),
    state=st.sampled_from(["running", "running", "stopped"]),
    private_ipv4=st.none() | ipv4s | st.just("10.0.0.300"),
    public_ipv4=st.none() | ipv4s,
    ipv6=st.lists(ipv6s | st.just("fe80::1%eth0"), max_size=2).map(tuple),
    tag_value=st.none()
    | st.text(max_size=20)
    | st.lists(st.sampled_from(["web", "API", "db.eu", "x.internal", "a b", ""])).map(",".join),
)


@settings(max_examples=80, deadline=None)
@given(
    instances=st.lists(scanned, max_size=6),
    regions=st.lists(st.sampled_from(REGIONS[:4]), max_size=3),
)
def test_published_document_always_parses_back(
    instances: list[ScannedInstance], regions: list[str]
) -> None:
    document = build_document(
        instances, regions=regions, tag_key="dns", zone="internal", previous=None, now=NOW
    )
    assert parse_document(document.to_bytes()) == document
    assert set(regions) <= set(document.regions)
    again = build_document(
        list(reversed(instances)),
        regions=regions,
        tag_key="dns",
        zone="internal",
        previous=document,
        now=datetime(2030, 1, 1, tzinfo=UTC),
    )
    if len({i.instance_id for i in instances}) == len(instances):
        assert again is document


def test_no_serial_is_published_above_the_largest_one() -> None:
    """A document already at the largest serial cannot be followed: the next one would
    be refused by every agent, so the publisher says so rather than writing it."""
    base = _build([_instance(ID1, "web")])
    previous = dataclasses.replace(base, serial=MAX_SERIAL)
    with pytest.raises(DocumentError, match="has serial 9007199254740991, the largest allowed"):
        _build([_instance(ID1, "web,api")], previous=previous)
    assert _build([_instance(ID1, "web")], previous=previous) is previous  # unchanged: no write
