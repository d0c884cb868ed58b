"""EC2 scan: running, tagged instances of every requested region, as ScannedInstance values.

Regions are scanned concurrently because a fleet-wide scan is dominated by
round trips to many regional endpoints. A region that fails aborts the whole
scan: an unreadable region must never look like an empty one, or the next
document would silently drop all its names.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3

from resolver.adapters.aws import AWS_ERRORS, describe_error, ec2_client, home_region
from resolver.core.fleet import ScannedInstance
from resolver.errors import AwsError, ConfigError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import (
        FilterTypeDef,
        InstanceTypeDef,
        PaginatorConfigTypeDef,
        TagTypeDef,
    )

ALL_REGIONS = "all"
DEFAULT_MAX_WORKERS = 16
_ENABLED = frozenset({"opt-in-not-required", "opted-in"})


@dataclass(frozen=True)
class RegionScan:
    """One region's instances, and what it cost (pages, seconds) for the summary."""

    region: str
    instances: tuple[ScannedInstance, ...]
    pages: int
    seconds: float


def resolve_regions(session: boto3.Session, requested: Sequence[str]) -> list[str]:
    """``["all"]`` becomes the account's enabled regions; named regions are checked to exist.

    Checking named regions up front turns a typo such as ``us-est-1`` into a clear
    usage error instead of a DNS failure on a made-up endpoint after retries.
    """
    wanted = list(dict.fromkeys(requested))
    if not wanted:
        raise ConfigError("no regions to scan")
    if ALL_REGIONS in wanted and len(wanted) > 1:
        raise ConfigError("regions: 'all' cannot be combined with named regions")
    explicit = wanted != [ALL_REGIONS]
    client = ec2_client(session, home_region(session, wanted[0] if explicit else "us-east-1"))
    try:
        reply = client.describe_regions(AllRegions=True)
    except AWS_ERRORS as exc:
        raise AwsError(f"EC2 DescribeRegions failed: {describe_error(exc)}") from None
    status = {r["RegionName"]: r.get("OptInStatus", "") for r in reply.get("Regions", [])}
    enabled = sorted(name for name, state in status.items() if state in _ENABLED)
    if not explicit:
        if not enabled:
            raise AwsError("EC2 DescribeRegions returned no enabled region")
        return enabled
    for region in wanted:
        if region not in status:
            raise ConfigError(f"regions: {region!r} is not an EC2 region")
        if region not in enabled:
            raise ConfigError(f"regions: {region!r} is not enabled for this account")
    return sorted(wanted)


def scan_regions(
    session: boto3.Session,
    regions: Sequence[str],
    tag_key: str,
    *,
    max_workers: int = DEFAULT_MAX_WORKERS,
    page_size: int | None = None,
) -> list[RegionScan]:
    """Scan ``regions`` with up to ``max_workers`` at once; any failure raises AwsError.

    ``max_workers=1`` scans one region at a time (the benchmark's baseline);
    ``page_size`` sets DescribeInstances' MaxResults (None: the service default).
    """
    if max_workers < 1:
        raise ConfigError(f"max_workers must be at least 1, got {max_workers}")
    # Clients are created here, in one thread: boto3 sessions are not thread-safe,
    # clients are.
    clients = {region: ec2_client(session, region) for region in regions}
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(max_workers, len(regions))), thread_name_prefix="tagdns-scan"
    )
    try:
        futures: dict[Future[RegionScan], str] = {
            pool.submit(scan_region, clients[region], region, tag_key, page_size): region
            for region in regions
        }
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failures = sorted((futures[f], exc) for f in done if (exc := f.exception()) is not None)
        if failures:
            # The first failing region by name, so the message does not depend on timing.
            raise failures[0][1]
        return sorted((f.result() for f in futures), key=lambda scan: scan.region)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def scan_region(
    client: EC2Client, region: str, tag_key: str, page_size: int | None = None
) -> RegionScan:
    """All running instances carrying ``tag_key`` in one region, filtered server-side."""
    started = time.monotonic()
    filters: list[FilterTypeDef] = [
        {"Name": "instance-state-name", "Values": ["running"]},
        {"Name": "tag-key", "Values": [tag_key]},
    ]
    paginator = client.get_paginator("describe_instances")
    pagination: PaginatorConfigTypeDef = {} if page_size is None else {"PageSize": page_size}
    instances: list[ScannedInstance] = []
    pages = 0
    try:
        for page in paginator.paginate(Filters=filters, PaginationConfig=pagination):
            pages += 1
            for reservation in page.get("Reservations", []):
                instances.extend(
                    to_scanned(region, raw, tag_key) for raw in reservation.get("Instances", [])
                )
    except AWS_ERRORS as exc:
        raise AwsError(f"EC2 DescribeInstances in {region} failed: {describe_error(exc)}") from None
    return RegionScan(region, tuple(instances), pages, time.monotonic() - started)


def to_scanned(region: str, raw: InstanceTypeDef, tag_key: str) -> ScannedInstance:
    """Copy the fields the core needs; validation of every value happens in the core."""
    ipv6: list[str] = []
    primary_ipv6 = raw.get("Ipv6Address")
    if primary_ipv6:
        ipv6.append(primary_ipv6)
    for interface in raw.get("NetworkInterfaces", []):
        ipv6.extend(
            entry["Ipv6Address"]
            for entry in interface.get("Ipv6Addresses", [])
            if entry.get("Ipv6Address")
        )
    return ScannedInstance(
        region=region,
        instance_id=raw.get("InstanceId", ""),
        az=raw.get("Placement", {}).get("AvailabilityZone", ""),
        state=raw.get("State", {}).get("Name", ""),
        private_ipv4=raw.get("PrivateIpAddress") or None,
        public_ipv4=raw.get("PublicIpAddress") or None,
        ipv6=tuple(dict.fromkeys(ipv6)),
        tag_value=_tag_value(raw.get("Tags", []), tag_key),
    )


def _tag_value(tags: Iterable[TagTypeDef], tag_key: str) -> str | None:
    for tag in tags:
        if tag.get("Key") == tag_key:
            return tag.get("Value", "")
    return None
