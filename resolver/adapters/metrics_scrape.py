"""Reading a running agent's metrics endpoint, for ``tagdns status``.

The endpoint is on the node itself, so the request goes straight to the address
given: through no proxy (a node behind a corporate proxy has ``http_proxy`` set
for everything, and the proxy cannot reach the node's loopback), and following
no redirect (what answers at that address is what is reported). The whole
exchange has a deadline, not only each read: an endpoint that sends a byte a
second would otherwise hold the command for as long as it liked.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading

from resolver.core.endpoints import Endpoint
from resolver.errors import TagdnsError

MAX_BODY = 16 * 1024 * 1024
"""More than any agent's metrics (a few KiB); a larger body is cut there."""


def metrics_url(endpoint: Endpoint) -> str:
    return f"http://{endpoint}/metrics"


def read_metrics_text(endpoint: Endpoint, timeout: float) -> str:
    """The body of ``GET /metrics``; TagdnsError in one line for anything else."""
    url = metrics_url(endpoint)
    connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        if connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)  # ends a read under way

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        connection.request("GET", "/metrics", headers={"Connection": "close"})
        reply = connection.getresponse()
        if reply.status != http.HTTPStatus.OK:
            raise TagdnsError(f"{url}: HTTP {reply.status} {reply.reason}")
        body = reply.read(MAX_BODY)
    except (http.client.HTTPException, OSError, ValueError) as exc:
        if expired.is_set():
            raise TagdnsError(f"{url}: no complete answer within {timeout:g} s") from None
        reason = " ".join(str(getattr(exc, "strerror", None) or exc).split())[:100]
        reason = reason or type(exc).__name__
        if isinstance(exc, http.client.HTTPException):
            raise TagdnsError(f"{url}: not an HTTP answer ({reason})") from None
        raise TagdnsError(f"no agent answering at {url}: {reason}") from None
    finally:
        timer.cancel()
        connection.close()
    return body.decode("utf-8", errors="replace")
