"""The metrics endpoint: a small, bounded HTTP server on the agent's event loop.

prometheus_client's own server (wsgiref, one thread per connection) has no limit on
connections, no timeout and no bound on a request's size. On a node, any local user
could hold thousands of threads open against it, or send megabytes of headers
parsed while the GIL is taken from the DNS service. A scraper needs one thing: a
GET. So this serves that, within bounds (``HttpLimits``): a few connections at once
(a new one resets the oldest unfinished), a request line and headers of a few KiB
that must arrive within seconds, one request per connection, and clients from the
networks allowed only (loopback unless ``[metrics] allow`` says more). As
prometheus_client's server did, any path answers with the metrics. The body is
built on the event loop when asked for, so it reads the agent's state from the
thread that changes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from resolver.adapters.listen_sockets import Network, client_allowed, listening_socket
from resolver.core.endpoints import Endpoint

log = logging.getLogger("tagdns.metrics")

LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

_REASONS = {
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 16
    """A scraper uses one; ``tagdns status`` another."""
    max_request_bytes: int = 8192
    """The request line and headers together."""
    request_timeout: float = 5.0
    """Seconds for the whole request to arrive, and again for the reply to be taken."""


@dataclass
class HttpEndpoint:
    """``GET /metrics`` (and ``HEAD``) answered with ``render()``; ``close`` stops it."""

    render: Callable[[], bytes]
    content_type: str
    limits: HttpLimits = field(default_factory=HttpLimits)
    allow: tuple[Network, ...] = LOOPBACK
    """Client networks answered; others are reset on arrival."""
    endpoint: Endpoint | None = None
    refused: int = 0
    """Connections reset on arrival, from outside ``allow``."""
    evicted: int = 0
    """Unfinished requests reset to make room for a new connection."""
    _server: asyncio.Server | None = None
    _writers: dict[asyncio.StreamWriter, None] = field(default_factory=dict)
    """Connections being served, oldest first."""
    _last_render_error: str = ""

    async def listen(self, endpoint: Endpoint) -> Endpoint:
        """Listen on ``endpoint`` (port 0: any free port); OSError if it is taken."""
        self._server = await asyncio.start_server(
            self._serve,
            sock=listening_socket(endpoint, socket.SOCK_STREAM),
            limit=self.limits.max_request_bytes,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.endpoint = Endpoint(endpoint.host, int(port))
        return self.endpoint

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if not peer or not client_allowed(peer[0], self.allow):
            self.refused += 1
            writer.transport.abort()
            return
        while len(self._writers) >= self.limits.max_connections:
            # The oldest unfinished request goes, not the newcomer: a scrape takes a
            # millisecond, so connections held open cannot keep Prometheus out.
            oldest = next(iter(self._writers))
            del self._writers[oldest]
            self.evicted += 1
            oldest.transport.abort()
        self._writers[writer] = None
        try:
            status, body, head_only = await self._read_request(reader)
            await self._reply(writer, status, body, head_only)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._writers.pop(writer, None)
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # a client that does not read is not waited for
            else:
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        """The status and body to answer with, and whether the request was a HEAD."""
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                request_line = await self._read_head(reader)
        except TimeoutError:
            return 408, b"", False
        except (asyncio.LimitOverrunError, ValueError):  # a line longer than the limit
            return 431, b"", False
        if request_line is None:
            return 431, b"", False
        method = _method(request_line)
        if method is None:
            return 400, b"", False
        if method not in ("GET", "HEAD"):
            return 405, b"", False
        try:
            body = self.render()
        except Exception as exc:  # one bad value must not close every scrape
            self._render_failed(exc)
            return 500, b"", False
        return 200, body, method == "HEAD"

    def _render_failed(self, exc: Exception) -> None:
        """Log why the metrics could not be rendered: once, until the reason changes."""
        reason = f"{type(exc).__name__}: {exc}"
        if reason != self._last_render_error:
            self._last_render_error = reason
            log.error("metrics: cannot render (HTTP 500 until it can): %s", reason)

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes | None:
        """The request line, once the headers after it have ended; None when the whole
        head is larger than the limit. Lines may end in CRLF or, as RFC 9112 2.2
        allows a server to accept, a bare LF."""
        budget = self.limits.max_request_bytes
        request_line = b""
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):  # closed before the request ended
                raise ConnectionError
            budget -= len(line)
            if budget < 0:
                return None
            if line in (b"\r\n", b"\n"):
                return request_line
            if not request_line:
                request_line = line.rstrip(b"\r\n")

    async def _reply(
        self, writer: asyncio.StreamWriter, status: int, body: bytes, head_only: bool
    ) -> None:
        content_type = self.content_type if status == 200 else "text/plain; charset=utf-8"
        if status != 200:
            body = f"{status} {_REASONS[status]}\n".encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        writer.write(head if head_only else head + body)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.limits.request_timeout):
                await writer.drain()


def _method(request_line: bytes) -> str | None:
    """The method of an HTTP/1.x request line; None when it is not one. The target,
    in origin or absolute form (RFC 9112 3.2), does not matter: every path answers."""
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0].isalpha():
        return None
    return parts[0].decode("ascii")
