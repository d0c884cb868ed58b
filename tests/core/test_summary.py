"""Publish summary: counts, names added and removed, hostile values kept inert."""

from __future__ import annotations

from collections.abc import Sequence

from resolver.core.document import HostEntry, MappingDocument, Rejection, make_document
from resolver.core.summary import PublishSummary, RegionCount, render_summary, summarise

HOSTILE = Rejection("us-east-1", "i-0000000000000000c", "x\n+ root\x1b[2J", "line1\nline2\x07")


def _host(name: str, region: str, number: int) -> HostEntry:
    return HostEntry(name, region, f"i-{number:017x}", region + "a", "10.0.0.1", None)


def _document(
    hosts: list[HostEntry], serial: int, rejected: Sequence[Rejection] = ()
) -> MappingDocument:
    return make_document(
        serial=serial,
        generated_at="2024-05-01T12:00:00Z",
        tag_key="dns",
        regions=["us-east-1", "us-west-2", "eu-west-1"],
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
