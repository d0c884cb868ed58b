"""``tagdns check`` and ``tagdns status``: is this node ready, and how is its agent doing.

``check`` reads the same configuration and flags as ``serve`` (the same code
builds them) and prints one ``ok:`` or ``FAIL:`` line per check: the document
from the source, the cache directory, the ``[hosts]`` files and dnsmasq's pidfile,
each listen address (and who holds it: systemd-resolved gets the fix to apply),
the upstreams (loops through ourselves, and one question to each: a silent or
refusing resolver turns every name not owned into SERVFAIL) and the metrics address. It exits 0 only
when every check passed, 1 otherwise, 2 when the configuration itself is invalid.

``status`` scrapes a running agent's metrics endpoint and prints a short summary.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from resolver.adapters.hosts_file import read_existing
from resolver.adapters.metrics_scrape import metrics_url, read_metrics_text
from resolver.adapters.preflight import (
    ask_upstream,
    directory_problem,
    dnsmasq_process,
    hosts_file_problem,
    port_holders,
    read_resolved_configs,
    try_bind,
)
from resolver.agent import fetch
from resolver.cli_agent import (
    add_serving_flags,
    add_source_and_view,
    config_with_flags,
    metrics_endpoint,
    upstreams_for,
    view_label,
    zone_settings,
)
from resolver.config import DEFAULT_CONFIG_PATH, NONE, Config, load_config
from resolver.core.document import parse_document
from resolver.core.endpoints import Endpoint, parse_endpoint
from resolver.core.hosts_merge import dnsmasq_refusal, merge_hosts
from resolver.core.pipeline import load_document
from resolver.core.preflight import (
    RESOLVED_STUBS,
    CheckResult,
    dnsmasq_verdict,
    fail,
    is_systemd_resolved,
    listen_verdict,
    ok,
    resolved_dns_servers,
    resolved_stub_listener_off,
    upstream_probe_verdict,
    upstream_verdicts,
)
from resolver.core.source_url import parse_source
from resolver.core.status_text import Samples, is_tagdns, render_status, serving
from resolver.core.views import View
from resolver.errors import ConfigError, HostsFileError, TagdnsError

DEFAULT_METRICS = "127.0.0.1:9153"
SCRAPE_TIMEOUT = 5.0


# --- check -------------------------------------------------------------------------------


def add_check(commands: Any) -> None:
    parser = commands.add_parser(
        "check",
        help="validate the configuration and document; preflight this node",
        description="Validate the configuration and the current document, then check this "
        "node: cache directory writable, [hosts] files writable and dnsmasq's pidfile "
        "sound, listen addresses free (or held by the running "
        "agent), no upstream leading back to the agent and each one answering a question, "
        "metrics address free. One ok:/FAIL: "
        "line per check; exit 0 only when all pass, 1 when one fails, 2 for an invalid "
        "configuration.",
    )
    add_source_and_view(parser)
    add_serving_flags(parser)
    parser.add_argument("--metrics", metavar="ADDR:PORT|none", help="metrics address to check")
    parser.set_defaults(handler=cmd_check)


def _config_origin(args: argparse.Namespace) -> str:
    if args.config is not None:
        return str(args.config)
    return str(DEFAULT_CONFIG_PATH) if DEFAULT_CONFIG_PATH.exists() else "defaults (no file)"


def _check_document(config: Config, label: str | None) -> tuple[CheckResult, View | None]:
    """The document's verdict, and its view when one could be built."""
    source = parse_source(config.source.url)
    try:
        data = fetch(source)
    except TagdnsError as exc:
        return fail(f"source {source}: {exc}"), None
    try:
        if label is None:
            document = parse_document(data)
            return ok(
                f"document from {source}: serial {document.serial}, "
                f"{len(document.hosts)} entries (view not checked)"
            ), None
        settings = zone_settings(config, label, forwarding=NONE not in config.dns.upstream)
        loaded = load_document(data, settings)
    except TagdnsError as exc:
        return fail(f"document from {source}: {exc}"), None
    left_out = f", {len(loaded.view.omitted)} left out" if loaded.view.omitted else ""
    return ok(
        f"document from {source}: serial {loaded.zone.serial} generated "
        f"{loaded.facts.generated_at}, {loaded.zone.names} names in view "
        f"{loaded.view.label}{left_out}"
    ), loaded.view


def _check_cache(config: Config) -> CheckResult:
    cache = config.source.cache_path
    if cache in ("", NONE):
        return ok("cache: disabled (no last-known-good copy across restarts)")
    problem = directory_problem(Path(cache))
    if problem is not None:
        return fail(f"cache {cache}: {problem}")
    return ok(f"cache {cache}: directory writable")


def _check_hosts(config: Config, view: View | None) -> list[CheckResult]:
    """The ``[hosts]`` files the agent keeps after each accepted document, and dnsmasq.

    ``serve`` only meets a bad path when it first writes, and then logs an error on
    every accepted document while DNS keeps working, so nothing stops the rollout;
    ``check`` is where the operator looks before enabling the unit.
    """
    hosts = config.hosts
    results: list[CheckResult] = []
    for key, value in (("path", hosts.path), ("dnsmasq_file", hosts.dnsmasq_file)):
        if not value:
            continue
        problem = hosts_file_problem(Path(value))
        if problem is None and key == "path" and view is not None:
            problem = _merge_problem(Path(value), view)
        if problem is None and key == "dnsmasq_file":
            problem = _dnsmasq_problem(Path(value))
        if problem is not None:
            results.append(fail(f"hosts {key} {value}: {problem}"))
        else:
            results.append(ok(f"hosts {key} {value}: writable"))
    if hosts.dnsmasq_pidfile:
        try:
            pid, comm, alive = dnsmasq_process(Path(hosts.dnsmasq_pidfile))
        except HostsFileError as exc:  # names the pidfile already
            results.append(fail(f"hosts dnsmasq_pidfile {exc}"))
        else:
            results.append(dnsmasq_verdict(hosts.dnsmasq_pidfile, pid, comm, alive=alive))
    return results


def _merge_problem(path: Path, view: View) -> str | None:
    """Why the view cannot be merged into the hosts file as it is (damaged markers, a
    line that looks like one), which ``serve`` would meet on every document; else None."""
    try:
        merge_hosts(read_existing(path, path), view, str(path))
    except HostsFileError as exc:
        return str(exc).removeprefix(f"{path}: ")
    return None


def _dnsmasq_problem(path: Path) -> str | None:
    """Why the feeder would refuse to replace the dnsmasq file (one tagdns did not
    write, such as /etc/hosts named by mistake); else None."""
    try:
        return dnsmasq_refusal(read_existing(path, path))
    except HostsFileError as exc:
        return str(exc).removeprefix(f"{path}: ")


def check_address(endpoint: Endpoint, what: str, protocols: tuple[str, ...]) -> CheckResult:
    if endpoint.port == 0:
        return ok(f"{what} {endpoint}: any free port")
    errors = try_bind(endpoint)
    errors = {protocol: errors[protocol] for protocol in protocols}
    in_use = any(e is not None and e[0] == errno.EADDRINUSE for e in errors.values())
    holders = port_holders(endpoint, protocols=protocols) if in_use else []
    stub_off = any(map(is_systemd_resolved, holders)) and resolved_stub_listener_off(
        read_resolved_configs()
    )
    return listen_verdict(endpoint, errors, holders, what=what, resolved_stub_off=stub_off)


def _check_upstreams(config: Config, listen: list[Endpoint]) -> list[CheckResult]:
    try:
        upstreams = upstreams_for(config)
    except ConfigError as exc:
        return [fail(str(exc))]
    if not upstreams:
        return [ok("upstream: none (names not owned are refused)")]
    stubs = {u: port_holders(u, protocols=("udp",)) for u in upstreams if u in RESOLVED_STUBS}
    servers = resolved_dns_servers(read_resolved_configs()) if stubs else []
    results = upstream_verdicts(upstreams, listen, servers, stubs)
    # An upstream that passed the loop checks is asked one question, all of them at once.
    asked = [u for u, result in zip(upstreams, results, strict=True) if result.ok]
    with ThreadPoolExecutor(max_workers=max(1, len(asked))) as pool:
        probes = dict(zip(asked, pool.map(ask_upstream, asked), strict=True))
    return [
        upstream_probe_verdict(u, probes[u]) if u in probes else result
        for u, result in zip(upstreams, results, strict=True)
    ]


def run_checks(args: argparse.Namespace) -> list[CheckResult]:
    """Every check, printed as it completes (a slow source shows where the time goes)."""
    config = config_with_flags(args)  # an invalid configuration: ConfigError, exit 2
    results: list[CheckResult] = []

    def report(result: CheckResult) -> None:
        results.append(result)
        print(result.line(), flush=True)

    report(ok(f"config {_config_origin(args)}"))
    label: str | None
    try:
        label = view_label(config)
    except TagdnsError as exc:
        label = None
        report(fail(str(exc)))
    document, view = _check_document(config, label)
    report(document)
    report(_check_cache(config))
    for result in _check_hosts(config, view):
        report(result)
    listen = [parse_endpoint(text, what="[dns] listen") for text in config.dns.listen]
    for endpoint in listen:
        report(check_address(endpoint, "listen", ("udp", "tcp")))
    for result in _check_upstreams(config, listen):
        report(result)
    metrics = metrics_endpoint(config)
    if metrics is None:
        report(ok("metrics: off (tagdns status needs them)"))
    else:
        report(check_address(metrics, "metrics", ("tcp",)))
    return results


def cmd_check(args: argparse.Namespace) -> int:
    results = run_checks(args)
    return 0 if all(result.ok for result in results) else 1


# --- status ------------------------------------------------------------------------------


def add_status(commands: Any) -> None:
    parser = commands.add_parser(
        "status",
        help="summarise a running agent: serial, data age, source, errors, counters",
        description="Read a running agent's metrics endpoint and print a short summary. "
        "Exit 0 when it serves a document, 1 when it serves none yet or does not answer, "
        "2 for an invalid configuration (read even when --metrics is given).",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file ([metrics] listen)")
    parser.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help=f"the agent's metrics address (default: [metrics] listen, {DEFAULT_METRICS})",
    )
    parser.set_defaults(handler=cmd_status)


def _metrics_address(args: argparse.Namespace) -> Endpoint:
    """--metrics, else [metrics] listen of the configuration.

    The configuration is loaded and validated even when --metrics makes its address
    moot: an invalid file is exit 2 for every command, so a broken --config is never
    silently ignored here while ``serve`` would refuse to start with it.
    """
    config = load_config(args.config)  # an invalid file: ConfigError, exit 2
    if args.metrics is not None:
        return parse_endpoint(args.metrics, what="--metrics")
    listen = config.metrics.listen
    if listen in ("", NONE):
        raise ConfigError(
            "[metrics] listen is off, so the agent has no metrics to read; pass --metrics ADDR:PORT"
        )
    return parse_endpoint(listen, what="[metrics] listen")


def scrape(endpoint: Endpoint, timeout: float | None = None) -> Samples:
    """The endpoint's samples as name -> [(labels, value)]; TagdnsError when unreachable.
    ``timeout`` bounds the whole scrape (default ``SCRAPE_TIMEOUT``)."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    url = metrics_url(endpoint)
    text = read_metrics_text(endpoint, SCRAPE_TIMEOUT if timeout is None else timeout)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    except (ValueError, TypeError, IndexError) as exc:
        raise TagdnsError(f"{url}: not Prometheus metrics ({exc})") from None
    return samples


def cmd_status(args: argparse.Namespace) -> int:
    endpoint = _metrics_address(args)
    url = metrics_url(endpoint)
    samples = scrape(endpoint)
    if not is_tagdns(samples):
        raise TagdnsError(f"{url}: not a tagdns agent (no tagdns_info metric)")
    for line in render_status(samples, str(endpoint), time.time()):
        print(line)
    sys.stdout.flush()
    return 0 if serving(samples) else 1
