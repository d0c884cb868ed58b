"""Publish summary: counts, names added and removed, hostile values kept inert."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from resolver.core.document import HostEntry, MappingDocument, Rejection, make_document
from resolver.core.summary import PublishSummary, RegionCount, render_summary, summarise

HOSTILE = Rejection("us-east-1", "i-0000000000000000c", "x\n+ root\x1b[2J", "line1\nline2\x07")


def _host(name: str, region: str, number: int) -> HostEntry:
    return HostEntry(name, region, f"i-{number:017x}", region + "a", "10.0.0.1", None)


ALL_REGIONS = ("us-east-1", "us-west-2", "eu-west-1")


def _document(
    hosts: list[HostEntry],
    serial: int,
    rejected: Sequence[Rejection] = (),
    regions: Sequence[str] = ALL_REGIONS,
) -> MappingDocument:
    return make_document(
        serial=serial,
        generated_at="2024-05-01T12:00:00Z",
        tag_key="dns",
        regions=regions,
        hosts=hosts,
        rejected=rejected,
    )


OLD = _document([_host("web", "us-east-1", 1), _host("old", "us-east-1", 2)], 5)
NEW = _document(
    [
        _host("web", "us-east-1", 1),
        _host("api", "us-east-1", 1),
        _host("web", "us-west-2", 3),
        _host("db", "us-west-2", 4),
    ],
    6,
    [HOSTILE],
)


def test_summarise_counts_and_diff() -> None:
    assert summarise(OLD, NEW) == PublishSummary(
        serial=6,
        previous_serial=5,
        changed=True,
        instances=3,
        names=3,
        regions=(
            RegionCount("eu-west-1", 0, 0),
            RegionCount("us-east-1", 1, 2),
            RegionCount("us-west-2", 2, 2),
        ),
        rejected=(HOSTILE,),
        added=("api", "db"),
        removed=("old",),
        regions_added=(),
        regions_dropped=(),
        republished=False,
    )


def test_render_summary_exact() -> None:
    assert render_summary(summarise(OLD, NEW)) == [
        "3 named instances, 3 names, 3 regions, 1 rejected tag values",
        "  eu-west-1: 0 instances, 0 names",
        "  us-east-1: 1 instances, 2 names",
        "  us-west-2: 2 instances, 2 names",
        "  rejected us-east-1 i-0000000000000000c: 'x\\n+ root\\x1b[2J': 'line1\\nline2\\x07'",
        "  + api",
        "  + db",
        "  - old",
        "changed: serial 5 -> 6",
    ]


def test_first_publish() -> None:
    summary = summarise(None, OLD)
    assert (summary.previous_serial, summary.changed, summary.added, summary.removed) == (
        None,
        True,
        ("old", "web"),
        (),
    )
    assert render_summary(summary)[-3:] == [
        "no current document: everything is new",
        "  + old",
        "  + web",
    ]


def test_unchanged() -> None:
    summary = summarise(OLD, OLD)
    assert not summary.changed
    assert render_summary(summary)[-1] == "unchanged: serial 5 stays"


def test_plain_reason_is_not_quoted() -> None:
    rejection = Rejection("us-east-1", "i-0000000000000000c", "a b", "name 'a b' has characters")
    lines = render_summary(summarise(None, _document([], 1, [rejection])))
    assert "  rejected us-east-1 i-0000000000000000c: 'a b': name 'a b' has characters" in lines


def test_no_rendered_line_breaks() -> None:
    for line in render_summary(summarise(OLD, NEW)):
        assert line.isprintable(), line


@pytest.mark.parametrize(
    ("old_regions", "new_regions", "expected"),
    [
        (ALL_REGIONS, ALL_REGIONS, []),
        (
            ("us-east-1",),
            ALL_REGIONS,
            ["  regions added: eu-west-1, us-west-2"],
        ),
        (
            ALL_REGIONS,
            ("us-east-1",),
            ["  regions dropped: eu-west-1, us-west-2 (agents there would refuse this document)"],
        ),
        (
            ("us-east-1", "ap-southeast-2"),
            ("us-east-1", "eu-west-1"),
            [
                "  regions added: eu-west-1",
                "  regions dropped: ap-southeast-2 (agents there would refuse this document)",
            ],
        ),
    ],
    ids=["same", "added", "dropped", "both"],
)
def test_regions_added_and_dropped_each_get_a_line(
    old_regions: tuple[str, ...], new_regions: tuple[str, ...], expected: list[str]
) -> None:
    hosts = [_host("web", "us-east-1", 1)]
    summary = summarise(
        _document(hosts, 5, regions=old_regions), _document(hosts, 6, regions=new_regions)
    )
    assert [line for line in render_summary(summary) if line.startswith("  regions ")] == expected
    assert summary.regions_added == tuple(sorted(set(new_regions) - set(old_regions)))
    assert summary.regions_dropped == tuple(sorted(set(old_regions) - set(new_regions)))


def test_a_first_publish_lists_no_regions_as_added() -> None:
    summary = summarise(None, OLD)
    assert (summary.regions_added, summary.regions_dropped) == ((), ())


def test_forced_republish_of_unchanged_content_says_so_with_both_serials() -> None:
    again = dataclasses.replace(OLD, serial=9, generated_at="2024-05-02T00:00:00Z")
    summary = summarise(OLD, again)
    assert (summary.changed, summary.republished) == (False, True)
    assert render_summary(summary)[-1] == (
        "forced, content unchanged: serial 5 -> 9 (--force republishes)"
    )
    assert not summarise(OLD, OLD).republished
    assert not summarise(OLD, NEW).republished
    assert not summarise(None, OLD).republished
