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
from resolver.core.summary import render_summary
from resolver.errors import ConfigError
from resolver.publisher import PublishOptions, PublishPlan, PublishResult, publish

ENV_CONFIG = "TAGDNS_CONFIG"


def config_from_env(environ: Mapping[str, str]) -> Config:
    """TAGDNS_CONFIG (a TOML file) if set, then TAGDNS_* variables override it."""
    path = environ.get(ENV_CONFIG)
    config = load_config(Path(path), validate=False) if path else Config()
    regions_text = environ.get("TAGDNS_REGIONS")
    regions = None
    if regions_text is not None:
        regions = tuple(part.strip() for part in regions_text.split(",") if part.strip())
        if not regions:
            raise ConfigError("TAGDNS_REGIONS: expected 'all' or a comma-separated list")
    publish_section = override(
        config.publish,
        bucket=environ.get("TAGDNS_BUCKET"),
        prefix=environ.get("TAGDNS_PREFIX"),
        regions=regions,
        tag_key=environ.get("TAGDNS_TAG_KEY"),
    )
    view = override(config.view, zone=environ.get("TAGDNS_ZONE"))
    if not publish_section.bucket:
        raise ConfigError("no bucket: set TAGDNS_BUCKET (or [publish] bucket in TAGDNS_CONFIG)")
    merged = dataclasses.replace(config, publish=publish_section, view=view)
    validate_config(
        merged,
        path or "environment",
        flagged=flagged_keys(config, merged),
        flagged_origin="environment",
    )
    return merged


def result_summary(result: PublishResult) -> dict[str, Any]:
    """JSON-able: counts, the diff and the keys written; tag values stay out of it."""
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
        "seconds": round(result.seconds, 3),
    }


def handler(event: object, context: object) -> dict[str, Any]:
    """Publish once; an event ``{"dry_run": true}`` scans and summarises without writing.

    There is deliberately no way to pass ``force`` in an event: overriding the
    shrink and region guards is an operator's decision, made with ``tagdns publish --force``.
    """
    options = PublishOptions.from_config(
        config_from_env(os.environ), dry_run=_flag(event, "dry_run")
    )
    result = publish(options, on_plan=_log_summary)
    return result_summary(result)


def _log_summary(plan: PublishPlan) -> None:
    """The summary goes to the invocation log before the guards and the writes, so
    a refused or half-written run shows what it found, as the CLI does."""
    for line in render_summary(plan.summary):
        print(line)


def _flag(event: object, name: str) -> bool:
    return isinstance(event, dict) and event.get(name) is True
