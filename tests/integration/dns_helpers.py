"""Real DNS servers for the integration tests, and clients that talk to them.

- ``AgentProcess``: the real ``tagdns serve`` console script as a subprocess.
- ``ThreadedServer``: a ``DnsServer`` in this process, on its own event loop in a
  thread, for limits the command line does not expose (idle timeout, connection
  cap, allow-list).
- ``dnsmasq``: Debian's dnsmasq on a free loopback port, started again on another
  port if the one picked was taken before it could bind it.
- ``udp_exchange``/``tcp_exchange``: raw sockets; ``run_dig``/``run_kdig``: the
  real tools, their text output parsed into a ``ToolAnswer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from devsupport.net import free_port
from resolver.adapters.dns_server import DnsServer, ServerLimits
from resolver.adapters.listen_sockets import Network
from resolver.core.document import parse_document
from resolver.core.endpoints import Endpoint
from resolver.core.pipeline import ZoneSettings, compile_document
from resolver.core.responder import Responder

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_MAPPING = REPO / "conf" / "example-mapping.json"
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
EXAMPLE_SERVE_ARGS = (
    *("--source", str(EXAMPLE_MAPPING), "--view", "us-east-1"),
    *("--upstream", "none", "--cache", "none"),
)
TAGDNS = Path(sys.executable).with_name("tagdns")
DNSMASQ = Path("/usr/sbin/dnsmasq")
START_TIMEOUT = 10.0
_READY = re.compile(r"(?:ready|listening without data): (\S+)")
T = TypeVar("T")


def example_responder() -> Responder:
    """The example mapping's us-east-1 view, as an in-process server answers it."""
    document = parse_document(EXAMPLE_MAPPING.read_bytes())
    zone = compile_document(document, ZoneSettings(view="us-east-1")).zone
    return Responder(zone, forwarding=False)


def split_endpoint(text: str) -> tuple[str, int]:
    """``127.0.0.1:53`` or ``[::1]:53`` to (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class AgentProcess:
    """``tagdns serve`` on port 0; the bound port is read from its "ready:" log line."""

    def __init__(
        self,
        workdir: Path,
        *extra: str,
        listen: str = "127.0.0.1:0",
        serve_args: Sequence[str] = EXAMPLE_SERVE_ARGS,
    ) -> None:
        """``serve_args`` replace the example source, view and no-forwarding defaults."""
        self.log_path = workdir / f"agent-{time.monotonic_ns()}.log"
        self.command = [str(TAGDNS), "serve", *serve_args, "--listen", listen, *extra]
        self.host = ""
        self.port = 0
        self._log = self.log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=self._log, env=env, cwd=REPO
        )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    @property
    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = _READY.search(self.stderr)
            if match:
                self.host, self.port = split_endpoint(match.group(1).split(",")[0])
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        code = self.process.poll()
        raise AssertionError(
            f"tagdns serve did not become ready within {START_TIMEOUT}s "
            f"(exit code {code}); command {' '.join(self.command)}\n"
            f"--- stderr ---\n{self.stderr}"
        )

    def terminate(self, timeout: float = 5.0) -> int:
        """SIGTERM and wait; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self._log.close()


class ThreadedServer:
    """A DnsServer on a fresh event loop in a daemon thread; a context manager."""

    def __init__(
        self,
        responder: Responder,
        *,
        allow: Iterable[Network],
        limits: ServerLimits | None = None,
        host: str = "127.0.0.1",
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
        udp_batching: bool = True,
    ) -> None:
        self.responder = responder
        self.udp_batching = udp_batching
        self.allow = tuple(allow)
        self.limits = limits
        self.host = host
        self.port = 0
        self.loop = loop_factory()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: DnsServer | None = None

    async def _start(self) -> Endpoint:
        self.server = DnsServer(
            self.responder, allow=self.allow, limits=self.limits, udp_batching=self.udp_batching
        )
        return await self.server.listen(Endpoint(self.host, 0))

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        self.port = self.call(self._start()).port
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self.server is not None:
                self.call(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


# -- raw sockets ----------------------------------------------------------------------------


_PROBE = bytes.fromhex("abcd01000001000000000000") + b"\x05ready\x07invalid\x00\x00\x01\x00\x01"


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Dnsmasq:
    """A running dnsmasq: its port, and a way to stop it before the test ends."""

    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.process)


@contextlib.contextmanager
def dnsmasq(*options: str, pidfile: Path | None = None, attempts: int = 5) -> Iterator[Dnsmasq]:
    """Debian's dnsmasq in the foreground on 127.0.0.1, with no upstream and no
    hosts file of its own but ``options``; yields it once it answers.

    The port is picked free and only then bound by dnsmasq (UDP and TCP), so another
    process can take it in between: a dnsmasq that exits before answering is
    started again on another port. ``pidfile`` is written (and awaited) when given,
    for tests that signal dnsmasq by it.
    """
    failures: list[str] = []
    for _ in range(attempts):
        port = free_port()
        command = [str(DNSMASQ), "--keep-in-foreground", "--conf-file=/dev/null"]
        command += ["--no-resolv", "--no-hosts", "--log-facility=-", f"--port={port}"]
        command += ["--listen-address=127.0.0.1", "--bind-interfaces", "--user=root"]
        command += [f"--pid-file={pidfile or ''}", *options]
        with tempfile.TemporaryFile() as log:
            running = Dnsmasq(port, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
            try:
                if _dnsmasq_ready(running.process, port, pidfile):
                    yield running
                    return
                log.seek(0)
                failures.append(log.read().decode(errors="replace").strip())
            finally:
                running.stop()
    raise RuntimeError(f"dnsmasq did not start in {attempts} attempts: {failures}")


def _dnsmasq_ready(process: subprocess.Popen[bytes], port: int, pidfile: Path | None) -> bool:
    """Whether dnsmasq answers on ``port`` (and wrote its pidfile); False if it exited."""
    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        try:
            answered = udp_exchange("127.0.0.1", port, _PROBE, timeout=0.2) is not None
        except OSError:  # ICMP port unreachable: not bound yet
            answered = False
        if answered and (pidfile is None or _holds_pid(pidfile, process.pid)):
            return True
        time.sleep(0.05)
    if process.poll() is None:
        raise RuntimeError(f"dnsmasq on port {port} did not answer in {START_TIMEOUT:.0f} s")
    return False


def _holds_pid(pidfile: Path, pid: int) -> bool:
    return pidfile.exists() and pidfile.read_text().strip() == str(pid)


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def udp_exchange(host: str, port: int, data: bytes, timeout: float = 2.0) -> bytes | None:
    """Send one datagram; the reply, or None when nothing comes back within ``timeout``."""
    with socket.socket(family(host), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, (host, port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def tcp_connect(host: str, port: int, timeout: float = 3.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def recv_frame(sock: socket.socket) -> bytes:
    (length,) = struct.unpack("!H", recv_exactly(sock, 2))
    return recv_exactly(sock, length)


def tcp_exchange(host: str, port: int, data: bytes, timeout: float = 3.0) -> bytes:
    with tcp_connect(host, port, timeout) as sock:
        sock.sendall(frame(data))
        return recv_frame(sock)


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout``; data is read and ignored."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


@contextlib.contextmanager
def many_connections(host: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection((host, port), timeout=3.0))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


# -- dig and kdig ---------------------------------------------------------------------------


@dataclass
class Record:
    owner: str
    ttl: int
    rclass: str
    rtype: str
    rdata: str


@dataclass
class ToolAnswer:
    """The last reply a dig/kdig run printed, parsed from its text."""

    text: str
    status: str = ""
    flags: set[str] = field(default_factory=set)
    question: str = ""
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    edns: str = ""

    @property
    def rdatas(self) -> list[str]:
        return [record.rdata for record in self.answer]


_SECTION = re.compile(r";; (QUESTION|ANSWER|AUTHORITY|ADDITIONAL) SECTION:")


def parse_tool_output(text: str) -> ToolAnswer:
    """Read dig's or kdig's output (both print the reply in zone-file-like sections)."""
    result = ToolAnswer(text)
    start = text.rfind("->>HEADER<<-")
    if start < 0:
        return result
    body = text[start:]
    status = re.search(r"status: ([A-Z]+)", body)
    flags = re.search(r"[Ff]lags: ([a-z ]*);", body)
    result.status = status.group(1) if status else ""
    result.flags = set(flags.group(1).split()) if flags else set()
    edns = re.search(r"^;.*(?:EDNS: |Version: ).*$", body, re.MULTILINE)
    result.edns = edns.group(0) if edns else ""
    section = ""
    for line in body.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1)
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if section == "QUESTION" and stripped.startswith(";") and not result.question:
            result.question = stripped.lstrip(";").split()[0]
            continue
        if stripped.startswith(";"):
            if section in {"ANSWER", "AUTHORITY"} and stripped.startswith(";;"):
                section = ""
            continue
        if section in {"ANSWER", "AUTHORITY"}:
            owner, ttl, rclass, rtype, *rdata = stripped.split()
            record = Record(owner, int(ttl), rclass, rtype, " ".join(rdata))
            (result.answer if section == "ANSWER" else result.authority).append(record)
    return result


def run_tool(tool: str, host: str, port: int, *args: str) -> ToolAnswer:
    """Run dig or kdig against host:port with one try and a short timeout."""
    if tool == "dig":
        command = ["dig", f"@{host}", "-p", str(port), "+time=2", "+tries=1", *args]
    else:
        command = ["kdig", f"@{host}", "-p", str(port), "+time=2", "+retry=0", *args]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    text = completed.stdout + completed.stderr
    answer = parse_tool_output(text)
    assert answer.status, f"{' '.join(command)} printed no reply:\n{text}"
    return answer
