"""The metrics endpoint's HTTP server: GET /metrics, and bounds no client can exceed."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from resolver.adapters.metrics_http import HttpEndpoint, HttpLimits
from resolver.core.endpoints import Endpoint

T = TypeVar("T")
BODY = b"# HELP up\nup 1\n"
LIMITS = HttpLimits(max_connections=4, max_request_bytes=1024, request_timeout=0.5)


class Running:
    def __init__(self, limits: HttpLimits) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.http = HttpEndpoint(lambda: BODY, "text/plain; version=0.0.4", limits)
        self.port = 0

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(5)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=3)


@pytest.fixture
def http() -> Iterator[Running]:
    running = Running(LIMITS)
    running.thread.start()
    running.port = running.call(running.http.listen(Endpoint("127.0.0.1", 0))).port
    try:
        yield running
    finally:
        running.call(running.http.close())
        running.loop.call_soon_threadsafe(running.loop.stop)
        running.thread.join(5)
        running.loop.close()


def exchange(http: Running, request: bytes) -> bytes:
    with http.connect() as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_get_metrics_is_answered(http: Running) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{http.port}/metrics", timeout=3) as reply:
        assert reply.status == 200 and reply.read() == BODY
        assert reply.headers["Content-Type"] == "text/plain; version=0.0.4"


@pytest.mark.parametrize(
    ("request_bytes", "status_line", "body"),
    [
        (b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK", b""),
        (b"GET /metrics?name=up HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 OK", BODY),
        (b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK", BODY),  # as prometheus_client did
        (b"GET http://node:9153/metrics HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK", BODY),
        (b"GET /metrics HTTP/1.0\n\n", b"HTTP/1.1 200 OK", BODY),  # bare LF (RFC 9112 2.2)
        (b"POST /metrics HTTP/1.1\r\n\r\n", b"HTTP/1.1 405 Method Not Allowed", None),
        (b"\x16\x03\x01\x00\xa5\r\n\r\n", b"HTTP/1.1 400 Bad Request", None),  # TLS hello
        (b"GET /metrics\r\n\r\n", b"HTTP/1.1 400 Bad Request", None),  # HTTP/0.9
    ],
    ids=[
        "head",
        "query-string",
        "other-path",
        "absolute-form",
        "bare-lf",
        "post",
        "tls",
        "http-0.9",
    ],
)
def test_requests_get_the_right_status(
    http: Running, request_bytes: bytes, status_line: bytes, body: bytes | None
) -> None:
    reply = exchange(http, request_bytes)
    head, _, content = reply.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == status_line
    if body is not None:
        assert content == body


def test_oversized_headers_are_refused_at_once(http: Running) -> None:
    """Megabytes of headers would be parsed while DNS waits for the GIL: 1 KiB here."""
    started = time.monotonic()
    with http.connect() as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 4096 + b"\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert time.monotonic() - started < LIMITS.request_timeout


def test_a_request_that_never_ends_times_out(http: Running) -> None:
    started = time.monotonic()
    with http.connect() as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line, ever
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert LIMITS.request_timeout * 0.9 <= time.monotonic() - started < 3


def test_a_new_connection_resets_the_oldest_held_and_needs_no_thread(http: Running) -> None:
    """Connections held open by a local user cannot keep a scraper out."""
    threads = threading.active_count()
    held = [http.connect() for _ in range(LIMITS.max_connections)]
    try:
        time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{http.port}/metrics", timeout=3) as reply:
            assert reply.read() == BODY
        assert http.http.evicted >= 1
        held[0].settimeout(2)
        with contextlib.suppress(ConnectionResetError):
            assert held[0].recv(1) == b""  # the oldest was let go
        assert threading.active_count() == threads
    finally:
        for sock in held:
            sock.close()


def test_clients_outside_the_allowed_networks_are_reset() -> None:
    running = Running(LIMITS)
    running.http.allow = (ipaddress.ip_network("10.0.0.0/8"),)  # not loopback
    running.thread.start()
    try:
        running.port = running.call(running.http.listen(Endpoint("127.0.0.1", 0))).port
        with running.connect() as sock:
            sock.settimeout(2)
            with contextlib.suppress(ConnectionResetError):
                sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
                assert sock.recv(4096) == b""
        assert running.http.refused == 1
    finally:
        running.call(running.http.close())
        running.loop.call_soon_threadsafe(running.loop.stop)
        running.thread.join(5)
        running.loop.close()


def test_a_taken_port_is_an_oserror() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        async def listen() -> None:
            await HttpEndpoint(lambda: BODY, "text/plain").listen(Endpoint("127.0.0.1", port))

        with pytest.raises(OSError):
            asyncio.run(listen())


def test_a_request_split_into_single_bytes_is_answered(http: Running) -> None:
    with http.connect() as sock:
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n":
            sock.send(bytes((byte,)))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(BODY)


def test_a_metric_that_cannot_be_rendered_is_an_error_status_logged_once(
    http: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A value the exposition cannot hold (a serial too large for a float, before
    documents were bounded) used to close every scrape unanswered, with a traceback
    logged per scrape. Now it is HTTP 500, one log line, and 200 again once it renders."""
    broken = True

    def render() -> bytes:
        if broken:
            raise OverflowError("int too large to convert to float")
        return BODY

    http.http.render = render
    with caplog.at_level("ERROR", logger="tagdns.metrics"):
        for _ in range(3):
            head = exchange(http, b"GET /metrics HTTP/1.1\r\n\r\n").split(b"\r\n")[0]
            assert head == b"HTTP/1.1 500 Internal Server Error"
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: cannot render (HTTP 500 until it can): "
        "OverflowError: int too large to convert to float"
    ]
    broken = False
    assert exchange(http, b"GET /metrics HTTP/1.1\r\n\r\n").endswith(BODY)
