"""Prometheus metrics for the agent, read from its plain counters at scrape time.

Nothing here runs per query: the DNS server, the responder, the forwarder and
the cache keep plain integers, and ``AgentCollector.collect`` reads them when
Prometheus (or ``tagdns status``) asks. The HTTP endpoint
(``resolver.adapters.metrics_http``) runs on the agent's event loop, so a scrape
reads the counters from the thread that changes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from resolver.adapters.listen_sockets import Network
from resolver.adapters.metrics_http import LOOPBACK, HttpEndpoint, HttpLimits
from resolver.adapters.metrics_scrape import metrics_url
from resolver.core.endpoints import Endpoint
from resolver.core.query_stats import QueryStats, rcode_name, type_name

if TYPE_CHECKING:
    from resolver.agent import Agent

PREFIX = "tagdns"


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _health(
    name: str, documentation: str, info: str, info_documentation: str, error: str | None
) -> Iterator[Metric]:
    """A 1/0 gauge, and while ``error`` stands an info metric holding it."""
    yield _gauge(name, documentation, 0 if error else 1)
    if error:
        family = InfoMetricFamily(f"{PREFIX}_{info}", info_documentation)
        family.add_metric([], {"error": error})
        yield family


class AgentCollector:
    """A prometheus_client collector over one Agent's state."""

    def __init__(self, agent: Agent, clock: Callable[[], float] = time.time) -> None:
        self.agent = agent
        self.clock = clock

    def describe(self) -> list[Metric]:
        # Registration must not read a half-started agent; names are not checked.
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._source()
        yield from self._queries()
        yield from self._forwarding()
        yield from self._server()
        yield from self._endpoint()

    def _endpoint(self) -> Iterator[Metric]:
        """This endpoint's own refusals: scrapers outside [metrics] allow, and
        unfinished requests reset to make room (connections held open against it)."""
        metrics = self.agent.metrics
        if metrics is None:
            return
        http = metrics.http
        yield _counter(
            "metrics_refused", "Metrics connections reset: not in [metrics] allow", http.refused
        )
        yield _counter(
            "metrics_evicted",
            "Unfinished metrics requests reset to make room for a new connection",
            http.evicted,
        )

    def _source(self) -> Iterator[Metric]:
        status = self.agent.status()
        info = InfoMetricFamily(
            PREFIX, "The agent's source, view and where the data in force came from"
        )
        info.add_metric(
            [],
            {
                "source": status.source,
                "view": status.view,
                "loaded_from": status.loaded_from or "",
            },
        )
        yield info
        if status.serial is not None:  # both absent until a document is served
            yield _gauge("serving_serial", "Serial of the mapping document served", status.serial)
            yield _gauge("names", "Names in the view served", status.names)
        if status.generated_at is not None:
            yield _gauge(
                "data_generated_timestamp_seconds",
                "When the scan behind the data in force ran (Unix time)",
                datetime.fromisoformat(status.generated_at).timestamp(),
            )
            yield _gauge(
                "data_age_seconds",
                "Seconds since the scan behind the data in force",
                status.data_age(self.clock()) or 0.0,
            )
        if status.last_fetch_ok is not None:
            yield _gauge(
                "last_fetch_success_timestamp_seconds",
                "Last time the source answered (changed or not), Unix time",
                status.last_fetch_ok,
            )
        if status.last_change is not None:
            yield _gauge(
                "last_change_timestamp_seconds",
                "Last time a new document was installed, Unix time",
                status.last_change,
            )
        yield from _health(
            "source_healthy",
            "1 when the last fetch and its document were fine, 0 while an error stands",
            "last_error",
            "The problem that keeps the agent on its old data",
            status.last_error,
        )
        if status.fetch_started is not None:
            yield _gauge(
                "fetch_started_timestamp_seconds",
                "When the fetch under way began, Unix time (absent between fetches)",
                status.fetch_started,
            )
        yield from _health(
            "files_healthy",
            "1 when the [hosts] files and the last-known-good copy were written as they "
            "should be, 0 while a write fails",
            "files_error",
            "Why a file this node keeps is not in line",
            status.files_error,
        )
        yield _counter("source_fetches", "Fetches of the source", status.fetches)
        yield _counter(
            "source_not_modified", "Fetches answered 'not modified' (304)", status.not_modified
        )
        yield _counter("source_errors", "Fetches that failed", status.fetch_errors)
        yield _counter(
            "source_downloaded_bytes", "Bytes of documents downloaded", status.bytes_downloaded
        )
        reloads = CounterMetricFamily(
            f"{PREFIX}_reloads", "Documents considered, by result", labels=["result"]
        )
        reloads.add_metric(["accepted"], status.accepted)
        reloads.add_metric(["rejected"], status.rejected)
        yield reloads
        yield _counter(
            "rebuilds",
            "Accepted documents installed by rebuilding only the names whose entries changed",
            status.rebuilds,
        )
        if status.last_load_seconds is not None:
            yield _gauge(
                "last_load_seconds",
                "Seconds the last accepted document took off the serving path "
                "(parse, validate, compile)",
                status.last_load_seconds,
            )

    def _queries(self) -> Iterator[Metric]:
        agent = self.agent
        server = agent.server
        stats: QueryStats = agent.stats
        counts = stats.snapshot()
        queries = CounterMetricFamily(
            f"{PREFIX}_queries", "Queries received, by transport", labels=["transport"]
        )
        queries.add_metric(["udp"], server.counters.udp_queries if server else 0)
        queries.add_metric(["tcp"], server.counters.tcp_queries if server else 0)
        yield queries
        yield _counter(
            "udp_batches",
            "UDP reads that got at least one datagram (queries per read: queries / batches)",
            server.counters.udp_batches if server else 0,
        )
        by_type = CounterMetricFamily(f"{PREFIX}_query_types", "Queries by QTYPE", labels=["type"])
        for qtype, total in sorted(counts.by_type.items()):
            by_type.add_metric([type_name(qtype)], total)
        if counts.other_types:
            by_type.add_metric(["other"], counts.other_types)
        yield by_type
        by_rcode = CounterMetricFamily(
            f"{PREFIX}_responses", "Replies sent, by RCODE", labels=["rcode"]
        )
        for rcode, total in sorted(counts.by_rcode.items()):
            by_rcode.add_metric([rcode_name(rcode)], total)
        yield by_rcode
        forwarder = agent.forwarder
        forwarded = forwarder.counters.answered if forwarder is not None else 0
        answers = CounterMetricFamily(
            f"{PREFIX}_answers",
            "Replies by where the answer came from: the view (owned), the answer cache "
            "(cached), or an upstream resolver (forwarded)",
            labels=["source"],
        )
        answers.add_metric(["owned"], counts.owned)
        answers.add_metric(["cached"], agent.cache.hits)
        answers.add_metric(["forwarded"], forwarded)
        yield answers

    def _forwarding(self) -> Iterator[Metric]:
        agent = self.agent
        cache = agent.cache
        yield _gauge("cache_entries", "Forwarded answers in the cache", len(cache))
        yield _gauge("cache_bytes", "Record bytes held by the answer cache", cache.stored_bytes)
        forwarder = agent.forwarder
        if forwarder is None:
            return
        counters = forwarder.counters
        errors = CounterMetricFamily(
            f"{PREFIX}_upstream_errors",
            "Upstream failures (timeouts, error RCODEs, unreachable), by upstream",
            labels=["upstream"],
        )
        by_upstream = dict.fromkeys((str(u) for u in forwarder.upstreams), 0)
        by_upstream.update(counters.by_upstream_error.copy())
        for upstream, total in by_upstream.items():
            errors.add_metric([upstream], total)
        yield errors
        in_a_row = GaugeMetricFamily(
            f"{PREFIX}_upstream_timeouts_in_a_row",
            "Timeouts since the upstream last answered; above 0 it is asked after the others "
            "for a while (5 s, doubling up to 60 s)",
            labels=["upstream"],
        )
        standings = forwarder.ranking.standings.copy()
        for endpoint in forwarder.upstreams:
            standing = standings.get(endpoint)
            in_a_row.add_metric([str(endpoint)], 0 if standing is None else standing.timeouts)
        yield in_a_row
        yield _counter("upstream_queries", "Questions sent upstream", counters.forwarded)
        yield _counter("upstream_timeouts", "Upstream attempts that timed out", counters.timeouts)
        yield _counter(
            "upstream_tcp_retries",
            "Truncated upstream replies retried over TCP",
            counters.tcp_retries,
        )
        yield _counter(
            "upstream_ignored_replies",
            "Upstream replies ignored (wrong source, ID or question)",
            counters.ignored_replies,
        )
        yield _counter(
            "forward_coalesced", "Questions that joined one already in flight", counters.coalesced
        )
        yield _counter(
            "forward_servfail", "Forwarded questions answered SERVFAIL", counters.servfail
        )
        yield _counter(
            "forward_completed",
            "Forwarded answers whose CNAME chain ended at an owned name, completed from the view",
            counters.completed,
        )

    def _server(self) -> Iterator[Metric]:
        server = self.agent.server
        if server is None:
            return
        counters = server.counters
        yield _counter(
            "refused_clients",
            "Queries from clients outside the allow-list",
            counters.refused_clients,
        )
        yield _counter("dropped_queries", "Messages dropped unanswered", counters.dropped)
        forwarder = self.agent.forwarder
        yield _counter(
            "internal_errors",
            "Internal errors (answered SERVFAIL): in the server, the responder or the forwarder",
            counters.internal_errors
            + self.agent.stats.internal_errors
            + (forwarder.counters.internal_errors if forwarder is not None else 0),
        )
        yield _counter(
            "forward_overflow",
            "UDP questions dropped because too many forwards were pending, or too many "
            "clients already waited for the same question "
            "(a TCP client is not read from until one is answered)",
            counters.forward_overflow,
        )
        yield _gauge("tcp_connections", "Open TCP connections", server.tcp_connections)
        yield _counter(
            "tcp_evictions", "TCP connections closed to make room", counters.tcp_evictions
        )
        yield _counter("tcp_idle_closes", "TCP connections closed idle", counters.tcp_idle_closes)


@dataclass
class MetricsServer:
    """The running HTTP endpoint (``resolver.adapters.metrics_http``); ``close`` stops it."""

    endpoint: Endpoint
    http: HttpEndpoint

    @property
    def url(self) -> str:
        return metrics_url(self.endpoint)

    async def close(self) -> None:
        await self.http.close()


async def start_metrics_server(
    agent: Agent,
    endpoint: Endpoint,
    allow: Sequence[Network] = LOOPBACK,
    limits: HttpLimits | None = None,
) -> MetricsServer:
    """Serve the agent's metrics at ``endpoint`` (port 0: any free port) to the client
    networks ``allow``; OSError if the address is taken."""
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))
    ProcessCollector(registry=registry)
    http = HttpEndpoint(
        lambda: generate_latest(registry),
        CONTENT_TYPE_LATEST,
        limits or HttpLimits(),
        allow=tuple(allow),
    )
    return MetricsServer(await http.listen(endpoint), http)
