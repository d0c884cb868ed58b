"""CLI wiring for the agent's commands: ``serve`` and ``lookup``.

Turns config plus flags into an AgentPlan (flags win), then hands over to
resolver.agent. Kept apart from cli.py so the publisher's and the agent's
commands each stay short.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RCODE, DNSLabel, DNSRecord

from resolver.adapters.logging_setup import FORMATS, LEVELS, setup_logging
from resolver.agent import Agent, AgentPlan, fetch, run_event_loop
from resolver.config import (
    AUTO,
    NONE,
    Config,
    allowed_networks,
    config_origin,
    flagged_keys,
    listen_endpoints,
    load_config,
    override,
    validate_config,
)
from resolver.core.endpoints import Endpoint, parse_endpoint
from resolver.core.pipeline import LoadedZone, ZoneSettings, load_document
from resolver.core.query_names import lookup_address, lookup_labels
from resolver.core.responder import Question, Responder
from resolver.core.source_url import SourceLocation, parse_source
from resolver.core.upstreams import choose_upstreams
from resolver.core.views import PUBLIC, CrossRegion
from resolver.errors import ConfigError, DocumentError

log = logging.getLogger("tagdns.cli")


def add_source_and_view(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--source", help="s3://bucket/key, file:///path or a path")
    parser.add_argument("--view", help="a region, 'public' or 'auto' (instance metadata)")


def add_serving_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``serve`` that decide where it listens and forwards (shared with check)."""
    parser.add_argument(
        "--listen", action="append", metavar="ADDR:PORT", help="listen address (repeatable)"
    )
    parser.add_argument(
        "--upstream",
        action="append",
        metavar="ADDR[:PORT]|auto|none",
        help="upstream resolver (repeatable); 'none' refuses names not owned",
    )
    parser.add_argument("--cache", metavar="PATH|none", help="last-known-good copy of the document")


def add_serve(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the agent: answer the view's names over DNS",
        description="Serve the view's names over DNS (UDP and TCP) and forward the rest. "
        "SIGHUP fetches the source now, SIGUSR1 toggles query logging, SIGTERM stops.",
    )
    add_source_and_view(parser)
    add_serving_flags(parser)
    parser.add_argument(
        "--poll", type=float, metavar="SECONDS", help="source poll interval, 1 to 86400"
    )
    parser.add_argument(
        "--metrics",
        metavar="ADDR:PORT|none",
        help="Prometheus metrics address (default: [metrics] listen, 127.0.0.1:9153)",
    )
    parser.add_argument("--log-level", default="info", choices=LEVELS, help="default: info")
    parser.add_argument(
        "--log-format", default="text", choices=FORMATS, help="text, or one JSON object per line"
    )
    parser.add_argument(
        "--log-queries",
        action="store_true",
        help="log every query (client, name, type, rcode); off by default",
    )
    # The agent releases SIGHUP and SIGUSR1 once its handlers are in (held_signals).
    parser.set_defaults(handler=cmd_serve, takes_held_signals=True)


def add_lookup(commands: Any) -> None:
    parser = commands.add_parser(
        "lookup",
        help="show what the agent would answer for a name, without DNS",
        description="Load the document, build the view and print the answers the agent "
        "would give for NAME (A and AAAA, or PTR for an address). A non-ASCII name is asked "
        "in its IDNA (punycode) form, as DNS clients send it. Exit 0 whenever the answer is "
        "known, whether the view owns the name or the agent would forward it upstream; 1 "
        "when the document cannot be read, holds no such view region, or instance metadata "
        "does not answer --view auto; 2 for a name that cannot be a DNS name or an "
        "invalid configuration.",
    )
    parser.add_argument("name", help="a name, or an IPv4/IPv6 address for its PTR")
    add_source_and_view(parser)
    parser.set_defaults(handler=cmd_lookup)


def config_with_flags(args: argparse.Namespace) -> Config:
    """The file's settings with the flags over them, validated as a whole."""
    config = load_config(args.config, validate=False)
    source = override(config.source, url=args.source)
    view = override(config.view, region=args.view)
    dns = config.dns
    if getattr(args, "listen", None):
        dns = override(dns, listen=tuple(args.listen))
    if getattr(args, "upstream", None):
        dns = override(dns, upstream=tuple(args.upstream))
    if getattr(args, "cache", None) is not None:
        source = override(source, cache_path=args.cache)
    if getattr(args, "poll", None) is not None:
        source = override(source, poll_interval=args.poll)
    metrics = config.metrics
    if getattr(args, "metrics", None) is not None:
        metrics = override(metrics, listen=args.metrics)
    merged = dataclasses.replace(config, source=source, view=view, dns=dns, metrics=metrics)
    origin = config_origin(args.config)
    validate_config(merged, origin, flagged=flagged_keys(config, merged))
    return merged


def view_label(config: Config) -> str:
    if config.view.region != AUTO:
        return config.view.region
    from resolver.adapters.imds import region_from_instance_metadata  # noqa: PLC0415

    return region_from_instance_metadata()


def metrics_endpoint(config: Config) -> Endpoint | None:
    """[metrics] listen as an endpoint; None when it is "" or "none"."""
    if config.metrics.listen in ("", NONE):
        return None
    return parse_endpoint(config.metrics.listen, what="[metrics] listen")


def upstreams_for(config: Config) -> list[Endpoint]:
    """The upstreams ``serve`` would use (``auto`` reads resolv.conf); ConfigError on a loop."""
    from resolver.adapters.system_resolvers import read_resolv_confs, running_on_ec2  # noqa: PLC0415

    return choose_upstreams(
        config.dns.upstream,
        listen_endpoints(config.dns),
        read_resolv_confs() if AUTO in config.dns.upstream else [],
        on_ec2=running_on_ec2,
    )


def load_once(source: SourceLocation, settings: ZoneSettings) -> LoadedZone:
    """Fetch and load the document once, for the one-shot commands; errors name the
    source, as ``serve`` logs them.

    A view region the document does not hold is a runtime failure (DocumentError, exit
    1) here as in ``check`` and ``serve`` (which keeps waiting for a document that has
    it): the region is a valid one, and the next publish may bring it.
    """
    data = fetch(source)
    try:
        return load_document(data, settings)
    except (DocumentError, ConfigError) as exc:
        raise DocumentError(f"{source}: {exc}") from None


def zone_settings(config: Config, label: str, *, forwarding: bool) -> ZoneSettings:
    return ZoneSettings(
        view=label,
        zone=config.view.zone,
        cross_region=CrossRegion(config.view.cross_region),
        ttl=config.dns.ttl,
        negative_ttl=config.dns.negative_ttl,
        authoritative=config.view.authoritative,
        forwarding=forwarding,
        max_shrink=config.source.max_shrink,
    )


def build_plan(config: Config) -> AgentPlan:
    upstreams = upstreams_for(config)
    cache = config.source.cache_path
    return AgentPlan(
        source=parse_source(config.source.url),
        settings=zone_settings(config, view_label(config), forwarding=bool(upstreams)),
        listen=tuple(listen_endpoints(config.dns)),
        allow=tuple(allowed_networks(config.dns)),
        upstreams=tuple(upstreams),
        rechoose_upstreams=(
            (lambda: upstreams_for(config)) if upstreams and AUTO in config.dns.upstream else None
        ),
        cache_path=None if cache in ("", NONE) else Path(cache),
        poll_interval=config.source.poll_interval,
        hosts=config.hosts,
        metrics=metrics_endpoint(config),
        metrics_allow=tuple(allowed_networks(config.metrics)),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    plan = dataclasses.replace(build_plan(config_with_flags(args)), log_queries=args.log_queries)
    agent = Agent(plan)

    def ready(bound: list[Any]) -> None:
        if agent.loaded is None:
            # As for systemd (no READY=1): it answers nothing of its own until a
            # document is accepted, so the log must not call it ready either. The
            # agent logs "ready:" itself once one is (and at once when it was).
            addresses = ", ".join(str(endpoint) for endpoint in bound)
            log.info("listening without data: %s (no document accepted yet; not ready)", addresses)

    async def main() -> None:
        await agent.run(ready)

    run_event_loop(main)
    return 0


_REVERSE_ZONES = (".in-addr.arpa", ".ip6.arpa")


def _lookup_questions(name: str) -> list[tuple[str, DNSLabel, str]]:
    """(name as shown, name as asked, type) for each question ``lookup`` asks the view."""
    address = lookup_address(name)
    if address is None:
        qname = DNSLabel(lookup_labels(name))
        # Presentation form, as dig shows it: any octet may travel in a label, and a
        # space or a newline printed raw would break the one-line answers.
        shown = str(qname).removesuffix(".") or "."
        if shown.lower().endswith(_REVERSE_ZONES):  # a reverse name is asked for its PTR
            return [(shown, qname, "PTR")]
        return [(shown, qname, "A"), (shown, qname, "AAAA")]
    pointer = address.reverse_pointer
    return [(pointer, DNSLabel(pointer), "PTR")]


def cmd_lookup(args: argparse.Namespace) -> int:
    """Print the view's answers; exit 0 whenever the answer is known.

    A name the view does not own is forwarded upstream by the agent: that is an
    answer about the name, not a failure of the command, so it exits 0 like an
    owned one (DESIGN.md keeps 1 for runtime failures). Only a query the agent
    would drop unanswered (which a well-formed question never is) exits 1.
    """
    questions = _lookup_questions(args.name)  # a bad name is a usage error: exit 2 at once
    config = config_with_flags(args)
    label = PUBLIC if config.view.region == PUBLIC else view_label(config)
    settings = zone_settings(config, label, forwarding=NONE not in config.dns.upstream)
    loaded = load_once(parse_source(config.source.url), settings)
    responder = Responder(loaded.zone, forwarding=settings.forwarding)
    print(f"view {loaded.view.label}, zone {loaded.zone.zone}, serial {loaded.zone.serial}")
    if not args.name.isascii():
        print(f"{args.name}: asked as {questions[0][0]} (IDNA)")
    answered = True
    for shown, qname, qtype in questions:
        query = bytes(DNSRecord.question(qname, qtype).pack())
        reply = responder.respond(query, udp=False)
        if isinstance(reply, Question):
            print(f"{shown} {qtype}: not owned: forwarded upstream")
            continue
        if reply is None:
            answered = False
            print(f"{shown} {qtype}: no reply (the agent would drop this query)")
            continue
        record = DNSRecord.parse(reply)
        rcode = RCODE.get(record.header.rcode)
        if not record.rr:
            kind = "NODATA" if rcode == "NOERROR" and record.auth else rcode
            print(f"{shown} {qtype}: {kind}")
        for rr in record.rr:
            print(f"{rr.rname} {rr.ttl} {QTYPE.get(rr.rtype)} {rr.rdata}")
    return 0 if answered else 1
