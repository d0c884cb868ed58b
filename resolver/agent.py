"""The per-node agent: wires a source, the reload pipeline and the DNS server.

All decisions live in resolver.core (pipeline, responder, cache) and all I/O in
resolver.adapters; this module connects them and owns the lifecycle of
DESIGN.md: serve the last-known-good copy at once, then fetch; poll with
jitter; validate and compile off the serving path; swap whole zones; keep the
old data, and say why once, when anything goes wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import random
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resolver.adapters.daemon_thread import in_daemon_thread
from resolver.adapters.dns_server import DnsServer
from resolver.adapters.file_source import read_document_file
from resolver.adapters.forwarder import Forwarder
from resolver.adapters.held_signals import release as release_held_signals
from resolver.adapters.last_known_good import LastKnownGood
from resolver.adapters.listen_sockets import Network
from resolver.adapters.logging_setup import set_query_logging
from resolver.adapters.memory import collector_paused, release_free_memory
from resolver.adapters.sources import DocumentSource, open_source
from resolver.adapters.systemd_notify import SystemdNotifier
from resolver.config import HostsConfig
from resolver.core.cache import AnswerCache
from resolver.core.endpoints import Endpoint
from resolver.core.pipeline import (
    LoadedZone,
    ZoneSettings,
    load_document,
    view_of,
    with_entries_kept,
)
from resolver.core.query_stats import QueryStats
from resolver.core.responder import Responder
from resolver.core.source_url import FileLocation, SourceLocation
from resolver.core.status import AgentStatus
from resolver.core.views import View
from resolver.core.zone import CompiledZone, OwnedNames, compile_zone
from resolver.errors import HostsFileError, TagdnsError
from resolver.hosts_sync import HostsSync

if TYPE_CHECKING:
    from resolver.adapters.file_watch import FileWatcher
    from resolver.adapters.metrics import MetricsServer

log = logging.getLogger("tagdns.agent")

WATCH_DEBOUNCE = 0.2
"""Seconds of quiet awaited after a write that may still be going on."""
WATCH_SETTLE = 0.02
"""Seconds after a rename onto the file or the close of a write: just enough to merge
the events one replacement raises."""
JITTER = 0.1


def load_in_worker(
    data: bytes,
    settings: ZoneSettings,
    previous: LoadedZone | None,
    *,
    force: bool = False,
    keep_records: bool = False,
    keep_entries_later: bool = False,
) -> LoadedZone:
    """What the agent runs off the event loop for each document: the pure pipeline,
    with the cyclic collector paused (see ``collector_paused``).

    The view keeps its records only when ``[hosts]`` files are to be written from
    them; otherwise they go before the zone is built, so their memory comes back,
    and only the names whose entries changed since ``previous`` are rebuilt.
    ``keep_entries_later``: see ``load_document``.
    """
    current = previous.facts if previous is not None else None
    with collector_paused():
        return load_document(
            data,
            settings,
            current,
            force=force,
            keep_records=keep_records,
            previous=previous,
            keep_entries_later=keep_entries_later,
        )


@dataclass(frozen=True)
class AgentPlan:
    """What ``tagdns serve`` resolved from config and flags, ready to run."""

    source: SourceLocation
    settings: ZoneSettings
    listen: tuple[Endpoint, ...]
    allow: tuple[Network, ...]
    upstreams: tuple[Endpoint, ...] = ()
    """Empty: forwarding is off and names not owned are REFUSED."""
    rechoose_upstreams: Callable[[], Sequence[Endpoint]] | None = None
    """Chooses the upstreams again (``auto``: resolv.conf may have changed), on SIGHUP;
    None when they are fixed. Raises ConfigError when it finds none."""
    cache_path: Path | None = None
    poll_interval: float = 30.0
    watch: bool = True
    """Watch a file source for changes (besides polling it)."""
    hosts: HostsConfig = field(default_factory=HostsConfig)
    """Files to keep in sync with the view ([hosts]); all empty: none."""
    metrics: Endpoint | None = None
    """Where to serve Prometheus metrics; None: nowhere."""
    metrics_allow: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    """Client networks the metrics endpoint answers."""
    log_queries: bool = False
    """Log every reply (client, name, type, rcode); SIGUSR1 toggles it while running."""


def fetch(source: SourceLocation) -> bytes:
    """One unconditional read of a source (for one-shot commands such as lookup)."""
    if isinstance(source, FileLocation):
        return read_document_file(source.path, pipes=True)
    fetched = open_source(source).fetch(None)
    assert fetched is not None  # an unconditional GET is never "not modified"
    return fetched.data


class Agent:
    """Serves the last accepted zone; every refresh swaps in a new one or keeps the old."""

    def __init__(
        self,
        plan: AgentPlan,
        source: DocumentSource | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.plan = plan
        self.notifier = notifier or SystemdNotifier()
        self._ready_sent = False
        self._announced_ready = False
        self.stats = QueryStats()
        """Queries by type and replies by RCODE, shared by every Responder installed."""
        self.metrics: MetricsServer | None = None
        self.source = source or open_source(plan.source)
        self.last_known_good = (
            LastKnownGood(plan.cache_path, str(plan.source)) if plan.cache_path else None
        )
        self.hosts_sync = HostsSync(plan.hosts, plan.settings.zone)
        self.hosts_error: str | None = None
        """Why the last [hosts] write failed; None when the files are in line."""
        self.cache_error: str | None = None
        """Why the last save of the last-known-good copy failed; None after a good one."""
        self.fetch_started: float | None = None
        self._cache_read = False
        """The last-known-good copy was considered (once, before any fetch is)."""
        self.loaded: LoadedZone | None = None
        self.loaded_from: str | None = None
        self.server: DnsServer | None = None
        self.bound: list[Endpoint] = []
        self.cache = AnswerCache()
        self.forwarder: Forwarder | None = None
        self.marker: str | None = None
        self.marker_refused = False
        """The object at ``marker`` was refused: a 304 for it is no recovery."""
        self.refusal: str | None = None
        """Why the object at ``marker`` was refused (already logged once)."""
        self.last_error: str | None = None
        self.last_fetch_ok: float | None = None
        self.last_change: float | None = None
        self.counts = {"fetches": 0, "not_modified": 0, "accepted": 0, "rejected": 0, "errors": 0}
        self.rebuilds = 0
        self.last_load_seconds: float | None = None
        self._refresh_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._pending_watch: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: FileWatcher | None = None
        """Watches a file source (``run``); polls re-arm it and skip a file mid-write."""

    # -- state ---------------------------------------------------------------------------

    def status(self) -> AgentStatus:
        facts = self.loaded.facts if self.loaded else None
        return AgentStatus(
            source=str(self.plan.source),
            view=self.plan.settings.view,
            serial=facts.serial if facts else None,
            generated_at=facts.generated_at if facts else None,
            names=self.loaded.zone.names if self.loaded else 0,
            loaded_from=self.loaded_from,
            last_fetch_ok=self.last_fetch_ok,
            last_change=self.last_change,
            last_error=self.last_error,
            files_error="; ".join(filter(None, (self.hosts_error, self.cache_error))) or None,
            fetch_started=self.fetch_started,
            fetches=self.counts["fetches"],
            not_modified=self.counts["not_modified"],
            accepted=self.counts["accepted"],
            rejected=self.counts["rejected"],
            fetch_errors=self.counts["errors"],
            bytes_downloaded=self.source.bytes_downloaded,
            rebuilds=self.rebuilds,
            last_load_seconds=self.last_load_seconds,
        )

    def _responder(self, zone: CompiledZone) -> Responder:
        return Responder(
            zone, forwarding=bool(self.plan.upstreams), cache=self.cache, stats=self.stats
        )

    def _served_zone(self) -> CompiledZone:
        """The zone queries are answered from now: a forwarded CNAME ending at one of
        its names is completed from it (``owned_target``)."""
        assert self.server is not None  # forwarded answers only arrive once serving
        return self.server.responder.zone

    def _empty_zone(self) -> CompiledZone:
        settings = self.plan.settings
        view = View(settings.view, settings.zone, 0, ())
        return compile_zone(
            view,
            ttl=settings.ttl,
            negative_ttl=settings.negative_ttl,
            authoritative=settings.authoritative,
            recursion_available=settings.forwarding,
        )

    def _report(self, message: str) -> None:
        """Log a problem once, not on every poll that meets it again."""
        if message != self.last_error:
            serial = self.loaded.facts.serial if self.loaded else "none"
            log.error("keeping serial %s: %s", serial, message)
        self.last_error = message
        self._notify_systemd()

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.info("recovered: %s", self.plan.source)
        self.last_error = None
        self._notify_systemd()

    def _announce_ready(self) -> None:
        """The log's "ready:" line, once: when listening with names to serve, the moment
        READY=1 goes to systemd, whether that is at start or at the first document."""
        if self._announced_ready or not self.bound or self.loaded is None:
            return
        self._announced_ready = True
        log.info("ready: %s", ", ".join(map(str, self.bound)))

    def _notify_systemd(self) -> None:
        """READY=1 once listening with a zone to serve, then STATUS on every change.

        Called once listening, and after each fetch (``_report``/``_recovered``), so a
        new document is announced with the error it cleared already gone.
        """
        if not self.notifier.enabled or not self.bound:
            return
        if self.loaded is None:
            self.notifier.status(f"listening, no mapping yet: {self.last_error or 'fetching'}")
            return
        zone = self.loaded.zone
        status = f"serving serial {zone.serial} ({zone.names} names, view {self.loaded.view.label})"
        if self.last_error:
            status += f"; keeping it: {self.last_error}"
        if self._ready_sent:
            self.notifier.status(status)
        else:
            self._ready_sent = self.notifier.ready(status)

    # -- loading -------------------------------------------------------------------------

    def _install(self, loaded: LoadedZone, origin: str, seconds: float = 0.0) -> None:
        previous = self.loaded.facts.serial if self.loaded else None
        self.loaded = loaded
        self.loaded_from = origin
        self.last_change = time.time()
        # Names the view now owns must not be answered from forwarded data any more.
        self.cache.flush_names(OwnedNames(loaded.zone))
        if self.server is not None:
            # One attribute assignment: a query sees the old zone or the new, never a mix.
            self.server.responder = self._responder(loaded.zone)
        omitted = loaded.view.omitted
        if omitted:
            # One line, not one per instance: a large fleet would flood the log each reload.
            shown = "; ".join(f"{o.name} ({o.instance_id}): {o.reason}" for o in omitted[:3])
            more = f"; and {len(omitted) - 3} more" if len(omitted) > 3 else ""
            log.warning(
                "left out of view %s: %d instances: %s%s",
                loaded.view.label,
                len(omitted),
                shown,
                more,
            )
        rebuilt = loaded.rebuilt
        how = "full load" if rebuilt is None else f"rebuilt {rebuilt} changed name"
        how += "s" if rebuilt is not None and rebuilt != 1 else ""
        # Before the listeners are bound (the last-known-good copy at start) nothing is
        # served yet, and a port in use may still end the start: "loaded", not "serving".
        log.info(
            "%s serial %d (was %s) from %s: %d names in view %s (loaded in %.3f s: %s)",
            "serving" if self.server is not None else "loaded",
            loaded.zone.serial,
            previous if previous is not None else "none",
            origin,
            loaded.zone.names,
            loaded.view.label,
            seconds,
            how,
        )

    async def _consider(
        self, data: bytes, origin: str, *, from_cache: bool = False, rewrite_files: bool = False
    ) -> bool:
        """Validate and compile off the serving path, then install; False if refused.

        ``rewrite_files``: bring the ``[hosts]`` files in line even when the document is
        the one in force (SIGHUP: another tool may have rewritten them). They are also
        brought in line while their last write failed, so they follow a fix at once.
        """
        previous = self.loaded
        started = time.perf_counter()
        try:
            loaded = await asyncio.to_thread(
                load_in_worker,
                data,
                self.plan.settings,
                previous,
                force=from_cache,
                keep_records=self.hosts_sync.enabled,
                keep_entries_later=True,
            )
        except TagdnsError as exc:
            self.counts["rejected"] += 1
            self._report(f"{origin}: refused: {exc}")
            return False
        if loaded is previous:  # the very bytes in force
            if not from_cache:
                self.loaded_from = origin  # the source confirms the cached copy
                if self.cache_error is not None:  # its last save failed: try again
                    await self._save_last_known_good(data)
            if self.hosts_sync.enabled and (rewrite_files or self.hosts_failing):
                # The view's records were released once written: build it again.
                view = await asyncio.to_thread(view_of, data, self.plan.settings)
                await self._sync_files(view)
            return True
        self.counts["accepted"] += 1
        self.rebuilds += loaded.rebuilt is not None
        self.last_load_seconds = time.perf_counter() - started
        self._install(loaded, origin, self.last_load_seconds)
        if not self._ready_sent:
            # READY=1 as soon as names are served: units ordered after nss-lookup.target
            # must not wait for a [hosts] write held by another writer's lock (10 s).
            self._notify_systemd()
        self._announce_ready()
        # The last-known-good copy before the [hosts] files: a write waiting on a hosts
        # file's lock (up to 10 s) must not leave a restart without the data served.
        if not from_cache:
            await self._save_last_known_good(data)
        await self._sync_files(loaded.view)
        # Serving already: what the next load compares with is kept now.
        kept = await asyncio.to_thread(with_entries_kept, loaded, data)
        if self.loaded is loaded:
            self.loaded = kept
        del kept
        del loaded
        self._release_view_records()
        return True

    async def _save_last_known_good(self, data: bytes) -> None:
        """Save the document in force for the next start; a failure never stops serving.

        A failed save is retried with the next fetch of the same document (the poll
        fetches it whole meanwhile, see ``refresh``), not only when a new one comes: a
        quiet fleet may publish nothing for days, and a restart in between would
        find an old copy, or none.
        """
        if self.last_known_good is None:
            return
        try:
            await asyncio.to_thread(self.last_known_good.save, data)
        except TagdnsError as exc:
            error = f"last-known-good copy not saved: {exc}"
            if error != self.cache_error:  # once per distinct error, not once a poll
                log.warning("%s", exc)
            self.cache_error = error
        else:
            if self.cache_error is not None:
                log.info("last-known-good copy saved again")
            self.cache_error = None

    async def _sync_files(self, view: View) -> None:
        """Bring the [hosts] files in line with the view; a failure never stops serving.

        A failure is retried at every poll (``hosts_failing`` makes the poll fetch the
        document in full, as the 304 of a conditional one carries nothing to write).
        """
        if not self.hosts_sync.enabled:
            return
        try:
            for line in await asyncio.to_thread(self.hosts_sync.apply, view):
                log.info("%s", line)
        except HostsFileError as exc:
            if str(exc) != self.hosts_error:
                log.error("%s; retried at every poll", exc)
            self.hosts_error = str(exc)
            return
        if self.hosts_error is not None:
            log.info("[hosts] files in line with the view again")
        self.hosts_error = None

    @property
    def hosts_failing(self) -> bool:
        return self.hosts_error is not None

    def _release_view_records(self) -> None:
        """Keep the view's label and omissions, not its records: the zone holds the answers.

        The records are only needed to compile and to write [hosts] files, both done
        by now; at 100,000 names they are megabytes better given back.
        """
        if self.loaded is not None and self.loaded.view.records:
            view = dataclasses.replace(self.loaded.view, records=())
            self.loaded = dataclasses.replace(self.loaded, view=view)

    async def load_cached(self) -> None:
        """Serve the last-known-good copy, if any, before the source answers."""
        async with self._refresh_lock:
            await self._read_cache_once()

    async def _read_cache_once(self) -> None:
        """``load_cached`` under the refresh lock, done by whichever comes first: start-up
        or a refresh (a SIGHUP or a file change during start-up).

        The cached copy is installed without the guards (it is what the node served
        last), so it must come first: a document fetched before it would itself be
        installed unguarded (nothing in force to compare with), saved over the cached
        copy, then replaced by it in memory, and the next start would serve it.
        """
        if self._cache_read:
            return
        self._cache_read = True
        if self.last_known_good is None:
            return
        try:
            data = await asyncio.to_thread(self.last_known_good.load)
        except TagdnsError as exc:
            log.warning("not using the cached copy: %s", exc)
            return
        if data is not None:
            await self._consider(data, f"cache {self.plan.cache_path}", from_cache=True)
            del data
            await asyncio.to_thread(release_free_memory)

    async def refresh(self, *, force: bool = False, rewrite_files: bool = False) -> None:
        """Fetch the source (conditionally unless ``force``) and consider what came."""
        async with self._refresh_lock:
            await self._read_cache_once()
            self.counts["fetches"] += 1
            try:
                # Whole while a file write failed: a 304 carries nothing to write again.
                whole = force or rewrite_files or self.hosts_failing or self.cache_error is not None
                marker = None if whole else self.marker
                self.fetch_started = time.time()
                try:
                    fetched = await in_daemon_thread(
                        lambda: self.source.fetch(marker), "tagdns-fetch"
                    )
                finally:
                    self.fetch_started = None
            except TagdnsError as exc:
                self.counts["errors"] += 1
                self._report(str(exc))
                return
            self.last_fetch_ok = time.time()
            if fetched is None:
                self.counts["not_modified"] += 1
                if self.marker_refused and self.refusal is not None:
                    # Still the refused document: logged again (and STATUS= sent) only if
                    # another error, a failed fetch, stood in between.
                    self._report(self.refusal)
                    return
                self._recovered()
                return
            self.marker = fetched.marker
            data = fetched.data
            del fetched
            accepted = await self._consider(
                data, str(self.plan.source), rewrite_files=rewrite_files
            )
            del data  # so the trim below can give the document's bytes back too
            self.marker_refused = not accepted
            self.refusal = None if accepted else self.last_error
            if accepted:
                self._recovered()
                await asyncio.to_thread(release_free_memory)

    # -- serving -------------------------------------------------------------------------

    async def start(self) -> list[Endpoint]:
        """Serve the cached copy at once, bind the listeners, then fetch the source."""
        await self.load_cached()
        zone = self.loaded.zone if self.loaded else self._empty_zone()
        if self.plan.upstreams:
            self.forwarder = Forwarder(self.plan.upstreams, self.cache, zone=self._served_zone)
            log.info("forwarding to %s", _listed(self.plan.upstreams))
        self.server = DnsServer(
            self._responder(zone), allow=self.plan.allow, forwarder=self.forwarder
        )
        self.set_query_logging(self.plan.log_queries)
        try:
            for endpoint in self.plan.listen:
                self.bound.append(await self.server.listen(endpoint))
        except OSError as exc:
            await self.server.close()
            raise TagdnsError(f"cannot listen on {endpoint}: {exc.strerror or exc}") from None
        for endpoint in self.bound:
            log.info("listening on %s (UDP and TCP)", endpoint)
        await self._start_metrics()
        self._notify_systemd()
        self._announce_ready()  # serving the last-known-good copy
        await self.refresh(force=True)
        if self.loaded is None:
            log.error(
                "no mapping yet: names are not answered until %s holds a document this agent "
                "accepts",
                self.plan.source,
            )
        return self.bound

    def stop(self) -> None:
        self._stop.set()

    def _reload(self) -> None:
        """SIGHUP: fetch now, write the [hosts] files again, choose the upstreams again."""
        # Logged: when nothing changed, nothing else would show the reload was taken.
        log.info("reload requested (SIGHUP): fetching %s", self.plan.source)
        self._spawn(self.refresh(force=True, rewrite_files=True))
        if self.plan.rechoose_upstreams is not None:
            self._spawn(self.rechoose_upstreams())

    async def rechoose_upstreams(self) -> None:
        """Follow resolv.conf (``auto``) after a DHCP renewal, a VPN or resolved changed
        it; when it names no usable resolver now, the upstreams in use are kept."""
        rechoose = self.plan.rechoose_upstreams
        if rechoose is None or self.forwarder is None:
            return
        try:
            chosen = tuple(await asyncio.to_thread(rechoose))
        except TagdnsError as exc:
            log.warning("upstreams kept (%s): %s", _listed(self.forwarder.upstreams), exc)
            return
        if chosen != self.forwarder.upstreams:
            self.forwarder.use_upstreams(chosen)
            log.info("forwarding to %s", _listed(chosen))

    async def _start_metrics(self) -> None:
        """Serve metrics if asked; a taken port costs the metrics, never the DNS service."""
        if self.plan.metrics is None:
            return
        # Imported here: commands that never serve metrics do not load prometheus_client.
        from resolver.adapters.metrics import start_metrics_server  # noqa: PLC0415

        try:
            self.metrics = await start_metrics_server(
                self, self.plan.metrics, self.plan.metrics_allow
            )
        except OSError as exc:
            log.warning(
                "no metrics: cannot listen on %s: %s (DNS is served all the same)",
                self.plan.metrics,
                exc.strerror or exc,
            )
            return
        log.info("metrics at %s", self.metrics.url)

    def set_query_logging(self, enabled: bool) -> None:
        set_query_logging(enabled)
        if self.server is not None:
            self.server.set_query_logging(enabled)

    def _toggle_query_logging(self) -> None:
        enabled = not (self.server is not None and self.server.log_queries)
        self.set_query_logging(enabled)
        log.warning("query logging %s (SIGUSR1 toggles it)", "on" if enabled else "off")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll(self) -> None:
        while True:
            interval = self.plan.poll_interval
            await asyncio.sleep(interval * random.uniform(1 - JITTER, 1 + JITTER))  # noqa: S311
            try:
                watcher = self._watcher
                if watcher is not None:
                    # A watch lost with its directory (renamed away: no event says so) or
                    # never set up (directory missing at start) is armed again here.
                    await asyncio.to_thread(watcher.ensure)
                    if watcher.settling():
                        # Written in place a moment ago: its close is reported and read
                        # then; read now, it would be refused half written.
                        continue
                await self.refresh()
            except Exception as exc:  # a bug in one refresh must not end polling for good
                self._report(f"refresh failed: {type(exc).__name__}: {exc}")

    def _file_changed(self, finished: bool) -> None:
        """From watchdog's thread: debounce bursts of events into one refresh."""
        loop = self._loop
        if loop is None:
            return
        delay = WATCH_SETTLE if finished else WATCH_DEBOUNCE

        def schedule() -> None:
            if self._pending_watch is not None:
                self._pending_watch.cancel()
            self._pending_watch = loop.call_later(delay, lambda: self._spawn(self.refresh()))

        loop.call_soon_threadsafe(schedule)

    async def run(self, on_ready: Callable[[list[Endpoint]], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT; SIGHUP fetches now."""
        self._loop = loop = asyncio.get_running_loop()
        # Every handler goes in before start(): the listeners answer, and READY=1 may be
        # sent, before the first fetch returns (minutes, against a failing S3). Until then
        # SIGHUP's and SIGTERM's default actions would end the process without a clean stop.
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGUSR1, self._toggle_query_logging)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
        release_held_signals()  # one sent since exec is handled now
        watcher = None
        if self.plan.watch and isinstance(self.plan.source, FileLocation):
            from resolver.adapters.file_watch import FileWatcher  # noqa: PLC0415

            # Watch before the first fetch, so a change made meanwhile is not missed.
            watcher = FileWatcher(self.plan.source.path, self._file_changed)
            try:
                watcher.start()
            except OSError as exc:
                log.warning("not watching %s (%s): polling only", self.plan.source, exc)
                watcher = None
            self._watcher = watcher
        ended_cleanly = False
        try:
            bound = await self._start_unless_stopped()
            if bound is not None:
                self._spawn(self._poll())
                if on_ready is not None:
                    on_ready(bound)
                await self._stop.wait()
            ended_cleanly = True
        finally:
            self.notifier.stopping()
            self.hosts_sync.abandon_waits()
            for sig in handled:
                loop.remove_signal_handler(sig)
            if watcher is not None:
                self._watcher = None
                watcher.stop()
            for task in list(self._tasks):
                task.cancel()
            if self.server is not None:
                await self.server.close()
            if self.metrics is not None:
                await self.metrics.close()
            if ended_cleanly:  # a start that failed is told by its one error line
                log.info("stopped")

    async def _start_unless_stopped(self) -> list[Endpoint] | None:
        """``start()``, abandoned when a stop comes first (then None).

        Start-up ends with a first fetch, which against an unreachable S3 can take
        minutes: SIGTERM must not wait for it, or systemd kills the agent when
        ``TimeoutStopSec`` runs out.
        """
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            starting.cancel()
            raise
        finally:
            stopping.cancel()
        if starting.done():
            return starting.result()
        starting.cancel()
        await asyncio.wait({starting})  # its CancelledError stays in the task, not raised here
        log.info("stop requested during start-up")
        return None


def _listed(upstreams: Sequence[Endpoint]) -> str:
    return ", ".join(str(u) for u in upstreams)


def run_event_loop(main: Callable[[], object]) -> None:
    """Run a coroutine function on uvloop when it is installed, else on asyncio's loop."""
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional speed-up

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())  # type: ignore[arg-type]
