"""A forwarding HTTP proxy that holds every request for a fixed delay before passing it on.

A stand-in for the round trip to a distant AWS region, so the publish benchmark
can show what a concurrent scan buys when time goes into waiting rather than
computing (moto_server on the same two cores is all computing). It runs as its
own process so it does not compete with the publisher for the GIL.

Usage: python benchmarks/latency_proxy.py TARGET_URL PORT DELAY_MS
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "expect"}
)


class _Forwarder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    target = ""
    delay = 0.0

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        time.sleep(self.delay)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        url = self.target + self.path
        request = urllib.request.Request(url, data=body, method=self.command, headers=headers)  # noqa: S310
        reply_headers: Message
        try:
            with urllib.request.urlopen(request, timeout=300) as reply:  # noqa: S310
                status, reply_headers, data = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as exc:
            status, reply_headers, data = exc.code, exc.headers, exc.read()
        self.send_response(status)
        for key, value in reply_headers.items():
            if key.lower() not in _HOP_BY_HOP | {"server", "date"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _forward

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the benchmark's output is the table."""


def main() -> int:
    target, port, delay_ms = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    _Forwarder.target = target.rstrip("/")
    _Forwarder.delay = delay_ms / 1000
    server = ThreadingHTTPServer(("127.0.0.1", port), _Forwarder)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
