"""What a publish found and what it changes, for the operator reading the output."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from resolver.core.document import MappingDocument, Rejection


@dataclass(frozen=True)
class RegionCount:
    region: str
    instances: int
    names: int


@dataclass(frozen=True)
class PublishSummary:
    serial: int
    previous_serial: int | None
    changed: bool
    instances: int
    names: int
    regions: tuple[RegionCount, ...]
    rejected: tuple[Rejection, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    regions_added: tuple[str, ...]
    """Against a previous document only: on a first publish everything is new anyway."""
    regions_dropped: tuple[str, ...]
    """Regions the previous document had: agents there refuse a document without them."""
    republished: bool
    """Content unchanged, written again under a new serial (``--force``)."""


def summarise(previous: MappingDocument | None, document: MappingDocument) -> PublishSummary:
    """Counts per region and the names and regions added and removed versus ``previous``."""
    instances: dict[str, set[str]] = defaultdict(set)
    names: dict[str, set[str]] = defaultdict(set)
    for host in document.hosts:
        instances[host.region].add(host.instance_id)
        names[host.region].add(host.name)
    old_names = previous.names() if previous is not None else frozenset()
    new_names = document.names()
    old_regions = set(previous.regions) if previous is not None else set(document.regions)
    changed = previous is None or not previous.same_content(document)
    return PublishSummary(
        serial=document.serial,
        previous_serial=previous.serial if previous is not None else None,
        changed=changed,
        instances=len({host.instance_id for host in document.hosts}),
        names=len(new_names),
        regions=tuple(
            RegionCount(region, len(instances[region]), len(names[region]))
            for region in document.regions
        ),
        rejected=document.rejected,
        added=tuple(sorted(new_names - old_names)),
        removed=tuple(sorted(old_names - new_names)),
        regions_added=tuple(sorted(set(document.regions) - old_regions)),
        regions_dropped=tuple(sorted(old_regions - set(document.regions))),
        republished=not changed and previous is not None and previous.serial != document.serial,
    )


def _inert(text: str) -> str:
    """``text`` itself when it is plain printable text, else its repr (one line, no escapes)."""
    return text if text.isprintable() else repr(text)


def render_summary(summary: PublishSummary) -> list[str]:
    """Human lines; tag values are shown with repr so hostile bytes stay inert."""
    lines = [
        f"{summary.instances} named instances, {summary.names} names, "
        f"{len(summary.regions)} regions, {len(summary.rejected)} rejected tag values"
    ]
    lines.extend(
        f"  {count.region}: {count.instances} instances, {count.names} names"
        for count in summary.regions
    )
    lines.extend(
        f"  rejected {r.region} {r.instance_id}: {r.value!r}: {_inert(r.reason)}"
        for r in summary.rejected
    )
    if summary.previous_serial is None:
        lines.append("no current document: everything is new")
    if summary.regions_added:
        lines.append(f"  regions added: {', '.join(summary.regions_added)}")
    if summary.regions_dropped:
        lines.append(
            f"  regions dropped: {', '.join(summary.regions_dropped)} "
            "(agents there would refuse this document)"
        )
    lines.extend(f"  + {name}" for name in summary.added)
    lines.extend(f"  - {name}" for name in summary.removed)
    if summary.republished:
        lines.append(
            f"forced, content unchanged: serial {summary.previous_serial} -> {summary.serial} "
            "(--force republishes)"
        )
    elif not summary.changed:
        lines.append(f"unchanged: serial {summary.serial} stays")
    elif summary.previous_serial is not None:
        lines.append(f"changed: serial {summary.previous_serial} -> {summary.serial}")
    return lines
