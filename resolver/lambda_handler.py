"""AWS Lambda entry point: the same publish as ``tagdns publish``, configured by environment.

Run it on a schedule and on EC2 state changes (conf/publisher-eventbridge.json).
Failures raise, so Lambda records the invocation as failed and its metrics and
alarms see it; the returned dict is a small summary for the invocation log.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resolver.config import Config, flagged_keys, load_config, override, validate_config
from resolver.core.buckets import check_bucket_name, check_prefix
from resolver.core.lambda_event import event_dry_run
from resolver.core.publish_settings import check_tag_key, check_zone_text, parse_regions
from resolver.core.summary import render_summary
from resolver.errors import ConfigError
from resolver.publisher import PublishOptions, PublishPlan, PublishResult, publish

ENV_CONFIG = "TAGDNS_CONFIG"
ENV_BUCKET = "TAGDNS_BUCKET"
ENV_PREFIX = "TAGDNS_PREFIX"
ENV_REGIONS = "TAGDNS_REGIONS"
ENV_TAG_KEY = "TAGDNS_TAG_KEY"
ENV_ZONE = "TAGDNS_ZONE"


def config_from_env(environ: Mapping[str, str]) -> Config:
    """TAGDNS_CONFIG (a TOML file) if set, then TAGDNS_* variables override it.

    Each variable is checked on its own first, so an error names the variable the
    user set (``TAGDNS_REGIONS: 'ALL' is not a region name``), not a TOML key of a
    file they may not have. An empty variable counts as unset: the Lambda console
    keeps a cleared value as "", and an empty TAGDNS_PREFIX would otherwise
    publish at the bucket's root instead of the documented default ``dns``.
    """
    path = _variable(environ, ENV_CONFIG)
    try:
        config = load_config(Path(path), validate=False) if path else Config()
    except ConfigError as exc:
        raise ConfigError(f"{ENV_CONFIG}: {exc}") from None
    bucket = _variable(environ, ENV_BUCKET)
    if bucket is not None:
        check_bucket_name(bucket, ENV_BUCKET, ENV_PREFIX)
    prefix = _variable(environ, ENV_PREFIX)
    if prefix is not None:
        check_prefix(prefix, ENV_PREFIX, ENV_BUCKET)
    regions_text = _variable(environ, ENV_REGIONS)
    regions = None if regions_text is None else parse_regions(regions_text, ENV_REGIONS)
    tag_key = _variable(environ, ENV_TAG_KEY)
    if tag_key is not None:
        check_tag_key(tag_key, ENV_TAG_KEY)
    zone = _variable(environ, ENV_ZONE)
    if zone is not None:
        check_zone_text(zone, ENV_ZONE)
    publish_section = override(
        config.publish, bucket=bucket, prefix=prefix, regions=regions, tag_key=tag_key
    )
    view = override(config.view, zone=zone)
    if not publish_section.bucket:
        raise ConfigError(f"no bucket: set {ENV_BUCKET} (or [publish] bucket in {ENV_CONFIG})")
    merged = dataclasses.replace(config, publish=publish_section, view=view)
    validate_config(
        merged,
        path or "environment",
        flagged=flagged_keys(config, merged),
        flagged_origin="environment",
    )
    return merged


def _variable(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    return environ.get(name) or None


def result_summary(result: PublishResult) -> dict[str, Any]:
    """JSON-able: counts, the diff and the keys written (or, in a dry run, the keys a real
    run would write, kept apart so nobody reads them as written); tag values stay out."""
    summary = result.plan.summary
    return {
        "serial": summary.serial,
        "previous_serial": summary.previous_serial,
        "changed": summary.changed,
        "instances": summary.instances,
        "names": summary.names,
        "regions": [scan.region for scan in result.plan.scans],
        "rejected": len(summary.rejected),
        "added": list(summary.added),
        "removed": list(summary.removed),
        "regions_added": list(summary.regions_added),
        "regions_dropped": list(summary.regions_dropped),
        "written": list(result.written),
        "would_write": list(result.would_write),
        "seconds": round(result.seconds, 3),
    }


def handler(event: object, context: object) -> dict[str, Any]:
    """Publish once; an event ``{"dry_run": true}`` scans and summarises without writing.

    The event is checked first (resolver.core.lambda_event): a mistyped test event
    such as ``{"dry_run": "true"}`` is refused rather than read as a real run.
    There is deliberately no way to pass ``force`` in an event: overriding the
    shrink and region guards is an operator's decision, made with ``tagdns publish --force``.
    """
    dry_run = event_dry_run(event)
    options = PublishOptions.from_config(
        config_from_env(os.environ), dry_run=dry_run, force_at_hand=False
    )
    result = publish(options, on_plan=_log_summary)
    return result_summary(result)


def _log_summary(plan: PublishPlan) -> None:
    """The summary goes to the invocation log before the guards and the writes, so
    a refused or half-written run shows what it found, as the CLI does."""
    for line in render_summary(plan.summary):
        print(line)
