"""The ``tagdns`` console script: argparse subcommands, one function each.

``main`` owns the contract with the shell: one line on stderr and exit code 1
for runtime failures, 2 for usage or configuration mistakes, 130 on Ctrl-C, and
never a traceback. A subcommand is an ``add_*`` function listed in ``COMMANDS``:
it adds its parser and sets ``handler``, which prints its own output and
returns the exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from resolver.adapters.held_signals import release as release_held_signals
from resolver.cli_agent import add_lookup, add_serve
from resolver.cli_hosts import add_hosts
from resolver.cli_node import add_check, add_status
from resolver.config import (
    Config,
    PublishConfig,
    config_origin,
    flagged_keys,
    load_config,
    override,
    validate_config,
)
from resolver.core.buckets import check_bucket_name, check_prefix
from resolver.core.publish_settings import parse_regions
from resolver.core.summary import render_summary
from resolver.errors import ConfigError, TagdnsError, UsageError

if TYPE_CHECKING:
    from resolver.publisher import PublishPlan

PROG = "tagdns"
_MAX_OMISSIONS_SHOWN = 5

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a UsageError: one line and exit 2, like any other."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        hint = f" (see {self.prog} --help)"
        raise UsageError(f"{command}: {message}{hint}" if command else f"{message}{hint}")


def _out(line: str = "", stream: TextIO | None = None) -> None:
    print(line, file=stream or sys.stdout)


# --- publish -----------------------------------------------------------------------------


def _regions_flag(text: str) -> tuple[str, ...]:
    """``all`` or ``r1,r2``: checked here so the error names the flag."""
    return parse_regions(text, "--regions")


def _add_publish(commands: argparse._SubParsersAction[_Parser]) -> None:
    parser = commands.add_parser(
        "publish",
        help="scan EC2 and publish the mapping document to S3",
        description="Scan EC2 in every requested region, print a summary and diff, and write "
        "the mapping document and hosts files to S3 unless --dry-run or unchanged.",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--bucket", help="S3 bucket (overrides [publish] bucket)")
    parser.add_argument("--prefix", help="key prefix (overrides [publish] prefix)")
    parser.add_argument("--regions", help="'all' or r1,r2 (overrides [publish] regions)")
    parser.add_argument("--tag-key", help="tag holding the names (overrides [publish] tag_key)")
    parser.add_argument("--dry-run", action="store_true", help="scan and summarise, write nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="pass the shrink and region guards, and write even an unchanged fleet under a new "
        "serial (e.g. after an old version of mapping.json was restored)",
    )
    parser.set_defaults(handler=cmd_publish)


def _publish_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config, validate=False)  # validated once the flags are in
    regions = None if args.regions is None else _regions_flag(args.regions)
    if args.bucket is not None:
        # Before any AWS call: botocore would reject it only after building a client,
        # as a runtime failure with a long regular expression.
        check_bucket_name(args.bucket, "--bucket", "--prefix")
    if args.prefix is not None:
        # Here too, so the error names the flag rather than [publish] prefix.
        check_prefix(args.prefix, "--prefix", "--bucket")
    if args.tag_key is not None and not args.tag_key.strip():
        raise ConfigError("--tag-key: must not be empty")
    publish: PublishConfig = override(
        config.publish,
        bucket=args.bucket,
        prefix=args.prefix,
        regions=regions,
        tag_key=args.tag_key,
    )
    merged = dataclasses.replace(config, publish=publish)
    origin = config_origin(args.config)
    validate_config(merged, origin, flagged=flagged_keys(config, merged))
    return merged


def cmd_publish(args: argparse.Namespace) -> int:
    # Imported here so `tagdns --help` and other commands do not pay for boto3.
    from resolver.adapters.s3_store import WriteError  # noqa: PLC0415
    from resolver.publisher import PublishOptions, publish  # noqa: PLC0415

    started = time.monotonic()
    options = PublishOptions.from_config(
        _publish_config(args), dry_run=args.dry_run, force=args.force
    )
    try:
        # The summary and diff come out before the guards and the writes, so a
        # refused run (or a dry run that a real run would see refused) shows what it
        # found, and a failed write shows what it was writing.
        result = publish(options, on_plan=_print_plan)
    except WriteError as exc:
        _print_written(options.bucket, exc.written)
        raise
    if result.plan.dry_run:
        # What the same run without --dry-run would write: compared with S3 as it does.
        for key in result.would_write:
            _out(f"would write s3://{options.bucket}/{key}")
        _out("dry run: nothing written" if result.would_write else "dry run: nothing to write")
    elif not result.written:
        _out("unchanged: nothing written")
    else:
        _print_written(options.bucket, result.written)
        for key in result.plan.left_as_is:
            _out(f"left s3://{options.bucket}/{key} as it was: its region is no longer published")
    _out(f"done in {time.monotonic() - started:.2f} s")
    return 0


def _print_plan(plan: PublishPlan) -> None:
    """What the scan found and how it differs from S3: printed before anything is decided."""
    if plan.replaced_invalid is not None:
        _out(f"replacing invalid {plan.mapping_url} (--force): {plan.replaced_invalid}")
    pages = sum(scan.pages for scan in plan.scans)
    _out(
        f"scanned {len(plan.scans)} regions in {plan.scan_seconds:.2f} s "
        f"({pages} DescribeInstances pages)"
    )
    for line in render_summary(plan.summary):
        _out(line)
    for label, omissions in plan.omitted:
        shown = ", ".join(f"{o.name} ({o.instance_id})" for o in omissions[:_MAX_OMISSIONS_SHOWN])
        more = len(omissions) - _MAX_OMISSIONS_SHOWN
        suffix = f" and {more} more" if more > 0 else ""
        _out(f"  view {label}: {len(omissions)} left out: {shown}{suffix}")


def _print_written(bucket: str, keys: Sequence[str]) -> None:
    for key in keys:
        _out(f"wrote s3://{bucket}/{key}")


# --- main --------------------------------------------------------------------------------

COMMANDS: tuple[Callable[[argparse._SubParsersAction[_Parser]], None], ...] = (
    _add_publish,
    add_serve,
    add_lookup,
    add_hosts,
    add_check,
    add_status,
)


def _version() -> str:
    """The installed distribution's version ("unknown" when run from an uninstalled tree)."""
    try:
        return importlib.metadata.version("tagdns")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Names for an AWS fleet from EC2 tags, served by a small local DNS agent.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=_Parser, required=True
    )
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        if not getattr(args, "takes_held_signals", False):
            release_held_signals()
        return handler(args)
    except TagdnsError as exc:
        _out(f"{PROG}: {exc}", sys.stderr)
        return exc.exit_code
    except SystemExit as exc:
        # argparse's --help: it printed what was asked; keep main() returning a code.
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        _out(f"{PROG}: interrupted", sys.stderr)
        return 130
    except BrokenPipeError:
        # `tagdns publish | head`: the reader left; nothing useful to say.
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
