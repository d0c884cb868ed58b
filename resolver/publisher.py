"""Publish: scan the fleet, build the document, guard it, and write what changed.

Wiring only: every rule lives in resolver.core, every AWS call in the adapters.
The CLI and the Lambda handler both call ``publish`` and only differ in how they
read their options and report the result. ``on_plan`` hands the caller the
summary and diff before the guards and the writes, so a refused or failed run
still shows what it found.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

import boto3

from resolver.adapters.aws import make_session, s3_client
from resolver.adapters.ec2_scan import (
    DEFAULT_MAX_WORKERS,
    RegionScan,
    resolve_regions,
    scan_regions,
)
from resolver.adapters.s3_store import S3Store, WriteError
from resolver.config import Config
from resolver.core.buckets import check_bucket_name
from resolver.core.document import MappingDocument, parse_document
from resolver.core.fleet import build_document
from resolver.core.guards import check_regions, check_shrink
from resolver.core.publication import (
    Publication,
    PublishedObject,
    build_publication,
    hosts_key,
    mapping_key,
)
from resolver.core.summary import PublishSummary, summarise
from resolver.core.views import Omission
from resolver.errors import ConfigError, DocumentError, DroppedRegionError, ShrinkError

_REMOVED_SHOWN = 10
_WRITTEN_SHOWN = 5


@dataclass(frozen=True)
class PublishOptions:
    """Everything one publish needs; built from config and flags by the caller."""

    bucket: str
    prefix: str = "dns"
    regions: tuple[str, ...] = ("all",)
    tag_key: str = "dns"
    zone: str = "internal"
    max_shrink: float = 0.5
    dry_run: bool = False
    force: bool = False
    max_workers: int = DEFAULT_MAX_WORKERS
    page_size: int | None = None
    force_at_hand: bool = True
    """Whether the caller can pass --force (the CLI). The Lambda cannot, so its refusals
    say to run ``tagdns publish --force`` from a shell instead of naming an option it lacks."""

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        dry_run: bool = False,
        force: bool = False,
        force_at_hand: bool = True,
    ) -> Self:
        publish = config.publish
        if not publish.bucket:
            raise ConfigError("no bucket: pass --bucket or set [publish] bucket")
        # Also checked by the CLI for --bucket; here for the config file and Lambda.
        check_bucket_name(publish.bucket, "bucket", "prefix")
        return cls(
            bucket=publish.bucket,
            prefix=publish.prefix,
            regions=publish.regions,
            tag_key=publish.tag_key,
            zone=config.view.zone,
            max_shrink=config.source.max_shrink,
            dry_run=dry_run,
            force=force,
            force_at_hand=force_at_hand,
        )


@dataclass(frozen=True)
class PublishPlan:
    """What a run found and is about to write: known before the guards and the writes."""

    document: MappingDocument
    previous: MappingDocument | None
    summary: PublishSummary
    scans: tuple[RegionScan, ...]
    omitted: tuple[tuple[str, tuple[Omission, ...]], ...]
    mapping_url: str
    dry_run: bool
    replaced_invalid: str | None
    """The reason the current object was invalid, when --force replaced it."""
    scan_seconds: float
    left_as_is: tuple[str, ...]
    """Hosts files of dropped regions: never deleted (no s3:DeleteObject), never rewritten."""


@dataclass(frozen=True)
class PublishResult:
    """What happened, for the CLI to print and the Lambda handler to return."""

    plan: PublishPlan
    """What the run found, as ``on_plan`` was given it."""
    written: tuple[str, ...]
    seconds: float
    would_write: tuple[str, ...] = ()
    """A dry run's keys that differ from S3: what the same run without --dry-run writes."""


def publish(
    options: PublishOptions,
    *,
    session: boto3.Session | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_plan: Callable[[PublishPlan], None] | None = None,
) -> PublishResult:
    """One publish run. Raises a TagdnsError subclass on any failure, having written nothing
    unless the failure came from S3 in the middle of writing (then a WriteError saying
    what was written).

    ``on_plan`` is called once the document and its diff are known, before the guards
    and any write: the summary is what a user needs to judge a refusal.

    ``force`` passes the guards, and republishes an unchanged fleet under a new serial:
    the way back after an old object version (an older serial) was restored.
    """
    started = time.monotonic()
    session = session if session is not None else make_session()
    store = S3Store(s3_client(session), options.bucket, options.prefix)
    key = mapping_key(options.prefix)
    current_bytes = store.read_mapping()
    previous, replaced_invalid = _parse_current(current_bytes, store.url(key), options)

    regions = resolve_regions(session, options.regions)
    scan_started = time.monotonic()
    scans = scan_regions(
        session,
        regions,
        options.tag_key,
        max_workers=options.max_workers,
        page_size=options.page_size,
    )
    scan_seconds = time.monotonic() - scan_started
    document = build_document(
        (instance for scan in scans for instance in scan.instances),
        regions=regions,
        tag_key=options.tag_key,
        zone=options.zone,
        previous=previous,
        now=clock(),
        republish=options.force,
    )
    # A self-check: never publish what an agent's validation would refuse.
    try:
        parse_document(document.to_bytes())
    except DocumentError as exc:
        raise DocumentError(f"refusing to publish an invalid document: {exc}") from None
    summary = summarise(previous, document)
    publication = build_publication(document, options.prefix, options.zone)
    plan = PublishPlan(
        document=document,
        previous=previous,
        summary=summary,
        scans=tuple(scans),
        omitted=publication.omitted,
        mapping_url=store.url(key),
        dry_run=options.dry_run,
        replaced_invalid=replaced_invalid,
        scan_seconds=scan_seconds,
        left_as_is=tuple(hosts_key(options.prefix, r) for r in summary.regions_dropped),
    )
    if on_plan is not None:
        on_plan(plan)
    if summary.changed and not options.force:
        _check_guards(previous, document, summary, options)
    objects, known = _to_sync(publication, document is previous, key, current_bytes)
    if options.dry_run:
        would_write = store.pending(objects, known)
        return PublishResult(plan, (), time.monotonic() - started, tuple(would_write))
    try:
        written = store.sync(objects, known)
    except WriteError as exc:
        raise _partial_write(exc, document, previous, current_bytes is not None) from None
    return PublishResult(plan, tuple(written), time.monotonic() - started)


def _check_guards(
    previous: MappingDocument | None,
    document: MappingDocument,
    summary: PublishSummary,
    options: PublishOptions,
) -> None:
    """Both guards' refusals in one line: an operator deciding on --force needs them all."""
    refusals: list[str] = []
    error: type[ShrinkError] = ShrinkError
    try:
        check_regions(previous, document)
    except DroppedRegionError as exc:
        refusals.append(str(exc))
        error = DroppedRegionError
    try:
        check_shrink(previous, document, options.max_shrink)
    except ShrinkError as exc:
        shown = ", ".join(summary.removed[:_REMOVED_SHOWN])
        more = " ..." if len(summary.removed) > _REMOVED_SHOWN else ""
        refusals.append(f"{exc} ({shown}{more})")
    if refusals:
        hint = _force_hint(options, "publishes anyway", "publish anyway")
        raise error("; ".join(refusals) + f"; nothing written ({hint})")


def _force_hint(options: PublishOptions, does: str, do: str) -> str:
    """``--force publishes anyway`` where --force can be passed; the way to it elsewhere."""
    if options.force_at_hand:
        return f"--force {does}"
    return f"run tagdns publish --force from a shell to {do}"


def _parse_current(
    data: bytes | None, url: str, options: PublishOptions
) -> tuple[MappingDocument | None, str | None]:
    """The document in force; an invalid one stops the run unless --force replaces it."""
    if data is None:
        return None, None
    try:
        return parse_document(data), None
    except DocumentError as exc:
        if options.force:
            return None, str(exc)
        hint = _force_hint(options, "replaces it", "replace it")
        raise DocumentError(f"{url}: current document is invalid: {exc} ({hint})") from None


def _to_sync(
    publication: Publication,
    unchanged: bool,
    key: str,
    current_bytes: bytes | None,
) -> tuple[tuple[PublishedObject, ...], dict[str, bytes | None]]:
    """The objects to compare with S3 and write where they differ (hosts files first,
    mapping last), and the bytes already read; a dry run compares the same ones.

    An unchanged document is the previous object itself, so the mapping is left
    alone even if the stored bytes are not in canonical form; its hosts files are
    still compared (a 304 each) so a deleted file or a new zone gets repaired.
    """
    if unchanged:
        return publication.hosts_files, {}
    return publication.objects, {key: current_bytes}


def _partial_write(
    exc: WriteError,
    document: MappingDocument,
    previous: MappingDocument | None,
    mapping_existed: bool,
) -> WriteError:
    """The write error, plus what S3 now holds: S3 has no transaction to roll back.

    The mapping is written last and never when anything before it failed, so it is
    never among the written keys: S3 keeps whatever mapping.json it had (none, the
    invalid object --force was replacing, or the previous document) and agents keep
    the document they last accepted. A hosts file that was written holds the new
    serial; the next run compares every object with S3 again and rewrites whatever
    differs from what it publishes.
    """
    if not exc.written:
        return WriteError(f"{exc}; nothing was written", ())
    shown = ", ".join(exc.written[:_WRITTEN_SHOWN])
    more = len(exc.written) - _WRITTEN_SHOWN
    if more > 0:
        shown += f" and {more} more"
    if previous is not None:
        mapping = f"mapping.json was not updated and still holds serial {previous.serial}"
    elif mapping_existed:
        mapping = (
            "mapping.json was not replaced and still holds the invalid object; "
            "agents keep the document they last accepted"
        )
    else:
        mapping = "mapping.json was not written and S3 still has none"
    return WriteError(
        f"{exc}; already written for serial {document.serial}: {shown}; {mapping}; "
        "the next successful publish rewrites whatever differs",
        exc.written,
    )
