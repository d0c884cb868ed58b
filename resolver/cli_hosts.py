"""``tagdns hosts``: write the view once, as a hosts-file block or a dnsmasq addn-hosts file.

The document goes through the agent's own pipeline (parse, validate, build the
view, compile), so a document the agent would refuse writes nothing here
either: the file is untouched and the error is one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from resolver.cli_agent import (
    add_source_and_view,
    config_with_flags,
    load_once,
    view_label,
    zone_settings,
)
from resolver.config import Config
from resolver.core.hosts_merge import render_dnsmasq, render_hosts_block
from resolver.core.source_url import parse_source
from resolver.core.views import View
from resolver.errors import DocumentError
from resolver.hosts_sync import describe, sync_dnsmasq, write_hosts

STDOUT = "-"
_MAX_OMISSIONS_SHOWN = 5


def add_hosts(commands: Any) -> None:
    parser = commands.add_parser(
        "hosts",
        help="write the view once as hosts text (/etc/hosts block or dnsmasq file)",
        description="Load the document, build the view and write it once: as the managed "
        "block of a hosts file (between '# BEGIN tagdns' and '# END tagdns'; every other "
        "line is kept byte for byte), or as a whole dnsmasq addn-hosts file. Nothing is "
        "written when the content is unchanged.",
    )
    add_source_and_view(parser)
    parser.add_argument(
        "--output",
        metavar="PATH|-",
        help="file to update, or - for standard output (default: [hosts] path, or "
        "[hosts] dnsmasq_file with --format dnsmasq; standard output when unset)",
    )
    parser.add_argument(
        "--format",
        choices=["hosts", "dnsmasq"],
        default="hosts",
        help="hosts: merge a managed block into the file; dnsmasq: write the whole file "
        "(only one tagdns wrote, a blank one or none: any other is refused, exit 1) "
        "and SIGHUP [hosts] dnsmasq_pidfile when it is [hosts] dnsmasq_file (default: hosts)",
    )
    parser.set_defaults(handler=cmd_hosts)


def _output(args: argparse.Namespace, config: Config) -> str:
    if args.output is not None:
        return str(args.output)
    configured = config.hosts.dnsmasq_file if args.format == "dnsmasq" else config.hosts.path
    return configured or STDOUT


def _note_omissions(view: View) -> None:
    omitted = view.omitted
    if not omitted:
        return
    shown = ", ".join(
        f"{o.name} ({o.instance_id}: {o.reason})" for o in omitted[:_MAX_OMISSIONS_SHOWN]
    )
    more = len(omitted) - _MAX_OMISSIONS_SHOWN
    suffix = f" and {more} more" if more > 0 else ""
    print(f"tagdns: note: view {view.label}: left out {shown}{suffix}", file=sys.stderr)


def _same_file(first: str, second: str) -> bool:
    return bool(second) and os.path.realpath(first) == os.path.realpath(second)


def cmd_hosts(args: argparse.Namespace) -> int:
    config = config_with_flags(args)
    output = _output(args, config)
    source = parse_source(config.source.url)
    settings = zone_settings(config, view_label(config), forwarding=False)
    try:
        view = load_once(source, settings).view
    except DocumentError as exc:  # names the source already
        raise DocumentError(f"{exc}; nothing written") from None
    _note_omissions(view)
    if output == STDOUT:
        where = "standard output"
        text = (
            render_dnsmasq(view, where)
            if args.format == "dnsmasq"
            else render_hosts_block(view, where)
        )
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
        return 0
    path = Path(output)
    names = len(view.records)
    summary = f"view {view.label}, zone {view.zone}, serial {view.serial}: {names} names"
    if args.format == "dnsmasq":
        pidfile = config.hosts.dnsmasq_pidfile
        signalled = pidfile and _same_file(output, config.hosts.dnsmasq_file)
        done = sync_dnsmasq(path, view, Path(pidfile) if signalled else None)
        if not done:
            print(f"{path}: dnsmasq hosts file unchanged; {summary}")
        for index, line in enumerate(done):
            print(f"{line}; {summary}" if index == 0 else line)
    else:
        update = write_hosts(path, view)
        print(f"{describe(update, 'managed block')}; {summary}")
    return 0
