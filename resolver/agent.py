"""The per-node agent: wires a source, the reload pipeline and the DNS server.

All decisions live in resolver.core (pipeline, responder) and all I/O in
resolver.adapters; this module only connects them and handles signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

from resolver.adapters.dns_server import DnsServer, Network
from resolver.adapters.file_source import read_document_file
from resolver.adapters.forwarder import Forwarder
from resolver.core.cache import AnswerCache
from resolver.core.endpoints import Endpoint
from resolver.core.pipeline import LoadedZone, ZoneSettings, load_document
from resolver.core.responder import Responder
from resolver.core.source_url import FileLocation, SourceLocation
from resolver.errors import ConfigError, TagdnsError

log = logging.getLogger("tagdns.agent")


@dataclass(frozen=True)
class AgentPlan:
    """What ``tagdns serve`` resolved from config and flags, ready to run."""

    source: SourceLocation
    settings: ZoneSettings
    listen: tuple[Endpoint, ...]
    allow: tuple[Network, ...]
    upstreams: tuple[Endpoint, ...] = ()
    """Empty: forwarding is off and names not owned are REFUSED."""


def fetch(source: SourceLocation) -> bytes:
    if isinstance(source, FileLocation):
        return read_document_file(source.path)
    raise ConfigError(f"source {source}: S3 sources are not supported by this agent yet")


class Agent:
    """Serves the last accepted zone; ``reload`` swaps in a new one or keeps the old."""

    def __init__(self, plan: AgentPlan) -> None:
        self.plan = plan
        self.loaded: LoadedZone | None = None
        self.server: DnsServer | None = None
        self.bound: list[Endpoint] = []
        self.last_error: str | None = None
        self.cache = AnswerCache()
        self.forwarder: Forwarder | None = None
        self._stop = asyncio.Event()

    def _install(self, loaded: LoadedZone) -> None:
        self.loaded = loaded
        # Names the view now owns must not be answered from forwarded data any more.
        self.cache.flush_names(loaded.zone.nodata)
        if self.server is not None:
            # One attribute assignment: a query sees the old zone or the new, never a mix.
            self.server.responder = Responder(loaded.zone, forwarding=self.plan.settings.forwarding)
        for omission in loaded.view.omitted:
            log.warning(
                "left out of view %s: %s (%s): %s",
                loaded.view.label,
                omission.name,
                omission.instance_id,
                omission.reason,
            )
        log.info(
            "serving serial %d: %d names in view %s",
            loaded.zone.serial,
            loaded.zone.names,
            loaded.view.label,
        )

    async def reload(self) -> bool:
        """Fetch and install; on any failure keep serving the old zone and say why once."""
        current = self.loaded.document if self.loaded else None
        try:
            data = await asyncio.to_thread(fetch, self.plan.source)
            loaded = await asyncio.to_thread(load_document, data, self.plan.settings, current)
        except TagdnsError as exc:
            message = f"{self.plan.source}: {exc}"
            if message != self.last_error:
                log.error("keeping serial %s: %s", current.serial if current else "none", message)
            self.last_error = message
            return False
        self.last_error = None
        if current is not None and loaded.document == current:
            return True
        self._install(loaded)
        return True

    async def start(self) -> list[Endpoint]:
        """Load the first document (failing hard if there is none) and bind the listeners."""
        if not await self.reload():
            raise TagdnsError(self.last_error or "no document to serve")
        assert self.loaded is not None
        responder = Responder(self.loaded.zone, forwarding=self.plan.settings.forwarding)
        forward = None
        if self.plan.upstreams:
            self.forwarder = Forwarder(self.plan.upstreams, self.cache)
            forward = self.forwarder.forward
            log.info("forwarding to %s", ", ".join(str(u) for u in self.plan.upstreams))
        self.server = DnsServer(responder, allow=self.plan.allow, forward=forward)
        try:
            for endpoint in self.plan.listen:
                self.bound.append(await self.server.listen(endpoint))
        except OSError as exc:
            await self.server.close()
            raise TagdnsError(f"cannot listen on {endpoint}: {exc.strerror or exc}") from None
        for endpoint in self.bound:
            log.info("listening on %s (UDP and TCP)", endpoint)
        return self.bound

    def stop(self) -> None:
        self._stop.set()

    async def run(self, on_ready: Callable[[list[Endpoint]], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT; SIGHUP reloads now."""
        bound = await self.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        if on_ready is not None:
            on_ready(bound)
        try:
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if self.server is not None:
                await self.server.close()
            log.info("stopped")


def run_event_loop(main: Callable[[], object]) -> None:
    """Run a coroutine function on uvloop when it is installed, else on asyncio's loop."""
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional speed-up

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())  # type: ignore[arg-type]
