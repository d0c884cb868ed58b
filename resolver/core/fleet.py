"""From scanned instances to a mapping document, without any AWS call.

The EC2 adapter only turns API pages into ``ScannedInstance`` values; every rule
about what gets published (running only, tag validation, addresses, serials)
lives here where it can be tested without a network.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from resolver.core.addresses import address_sort_key, canonical_ipv4, canonical_ipv6
from resolver.core.document import (
    AZ_PATTERN,
    MAX_SERIAL,
    HostEntry,
    MappingDocument,
    Rejection,
    format_timestamp,
    make_document,
)
from resolver.core.names import split_tag_value
from resolver.errors import DocumentError

_REJECTED_VALUE_MAX = 512


@dataclass(frozen=True)
class ScannedInstance:
    """What the scanner learned about one instance, before any validation."""

    region: str
    instance_id: str
    az: str
    state: str
    private_ipv4: str | None
    public_ipv4: str | None
    ipv6: tuple[str, ...]
    tag_value: str | None


def entries_for_instance(
    instance: ScannedInstance, zone: str
) -> tuple[list[HostEntry], list[Rejection]]:
    """Host entries and rejections for one instance; nothing for untagged or not running."""
    if instance.state != "running" or instance.tag_value is None:
        return [], []
    names, name_rejections = split_tag_value(instance.tag_value, zone)
    rejections = [
        Rejection(instance.region, instance.instance_id, r.value[:_REJECTED_VALUE_MAX], r.reason)
        for r in name_rejections
    ]
    if not names:
        return [], rejections
    try:
        if not AZ_PATTERN.match(instance.az):
            raise DocumentError(f"az: {instance.az!r} is not an availability zone")
        private = canonical_ipv4(instance.private_ipv4, "private_ipv4")
        public = (
            None
            if instance.public_ipv4 is None
            else canonical_ipv4(instance.public_ipv4, "public_ipv4")
        )
        ipv6 = sorted(
            {canonical_ipv6(address, "ipv6") for address in instance.ipv6}, key=address_sort_key
        )
    except DocumentError as exc:
        value = instance.tag_value[:_REJECTED_VALUE_MAX]
        return [], [*rejections, Rejection(instance.region, instance.instance_id, value, str(exc))]
    entries = [
        HostEntry(
            name=name,
            region=instance.region,
            instance_id=instance.instance_id,
            az=instance.az,
            private_ipv4=private,
            public_ipv4=public,
            ipv6=tuple(ipv6),
        )
        for name in names
    ]
    return entries, rejections


def build_document(
    instances: Iterable[ScannedInstance],
    *,
    regions: Iterable[str],
    tag_key: str,
    zone: str,
    previous: MappingDocument | None,
    now: datetime,
    republish: bool = False,
) -> MappingDocument:
    """The document for this scan; ``previous`` itself when nothing changed.

    Returning the previous document unchanged keeps its bytes, its ETag and its
    serial, so an unchanged fleet never causes a write. When content changes the
    serial is at least the scan's Unix time, so it still increases if the stored
    object was lost and the publisher starts again from nothing.

    ``republish`` (``--force``) gives unchanged content a new serial all the same:
    after an old object version is restored, S3 holds a serial that agents already
    passed, and only a higher one gets the fleet's current names to them again.
    """
    hosts: list[HostEntry] = []
    rejected: list[Rejection] = []
    scanned_regions = set(regions)
    seen: set[str] = set()
    for instance in instances:
        if instance.instance_id in seen:  # listed twice by the scan: publish it once
            continue
        seen.add(instance.instance_id)
        scanned_regions.add(instance.region)
        entries, rejections = entries_for_instance(instance, zone)
        hosts.extend(entries)
        rejected.extend(rejections)
    candidate = make_document(
        serial=0,
        generated_at=format_timestamp(now),
        tag_key=tag_key,
        regions=scanned_regions,
        hosts=hosts,
        rejected=rejected,
    )
    if previous is not None and previous.same_content(candidate) and not republish:
        return previous
    floor = previous.serial + 1 if previous is not None else 1
    if floor > MAX_SERIAL:
        raise DocumentError(
            f"serial: the document in force has serial {MAX_SERIAL}, the largest allowed, "
            "so no later one can be published; agents refuse a lower one until restarted "
            "without their last-known-good copy"
        )
    return make_document(
        serial=max(floor, int(now.timestamp())),
        generated_at=candidate.generated_at,
        tag_key=tag_key,
        regions=candidate.regions,
        hosts=candidate.hosts,
        rejected=candidate.rejected,
    )
