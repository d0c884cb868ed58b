"""Fault injection against the running agent: each fault with its pass criterion.

Short forms run in ``scripts/test``; ``scripts/soak`` runs them again in long form
(``TAGDNS_FAULT_ROUNDS`` multiplies the kill loops). Every test holds the agent
to the same three criteria, made concrete per fault: known names keep resolving,
nothing on disk is ever half-written, and the agent recovers by itself.

- cache directory read-only (a read-only mount): answers continue and follow new
  documents; one warning per failed write; written once the mount is writable.
- disk full on the cache write (a 64 KiB tmpfs): answers follow the new document;
  the old copy stays whole and no temp file is left; written once space is back.
- 200 SIGHUPs in a burst, the source changed mid-burst: no query unanswered or
  wrong, none slower than 1 s; the agent ends on the new document.
- SIGHUPs while the first S3 fetch is still running: the agent survives, serves
  the document and stops cleanly.
- ``kill -9`` of the agent while it writes its cache and hosts file: each file is
  the old or the new content, byte for byte; a restart converges.
- ``kill -9`` of the agent's own writers, in a loop: the same over many kills,
  nearly all within a write; the temp files they leave are removed.
- upstream slow, garbage, forging, refusing, silent and lying about owned names:
  owned names answer correctly within 0.5 s throughout; no forged address passes.
- upstream disappears, then comes back: SERVFAIL at once (never NXDOMAIN), owned
  names unaffected; forwarding resumes by itself.
- S3 body trickles, or stops halfway: a partial document is never served nor
  cached; the trickled one is served once complete.
- SIGTERM during a first fetch that trickles for 20 s: exit 0 within 3 s.

S3 returning 500/403, a missing object, a held request and moto killed are in
``tests/integration/test_live_mapping.py``; bad documents too.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from resolver.adapters.last_known_good import LastKnownGood
from resolver.config import HostsConfig
from resolver.core.document import parse_document
from resolver.core.hosts_merge import merge_hosts
from resolver.core.views import View, build_view
from resolver.hosts_sync import HostsSync
from tests.documents import one_region_document
from tests.integration.conftest import MotoServer
from tests.integration.dns_helpers import REPO, TAGDNS
from tests.integration.hostile_upstream import POISON_V4, HostileUpstream, Mode
from tests.mounts import remount, tmpfs

pytestmark = pytest.mark.integration

REGION = "us-east-1"
LONG = max(1, int(os.environ.get("TAGDNS_FAULT_ROUNDS", "1") or "1"))
"""1 in scripts/test; scripts/soak sets it higher for the long forms."""
AGENT_KILLS = 4 * LONG
WRITER_KILLS = 60 * LONG
USER_HOSTS = b"127.0.0.1 localhost\n# my own line\n10.9.9.9 keepme\n"
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


# -- documents ------------------------------------------------------------------------------


def address(variant: int, index: int) -> str:
    return f"10.{variant % 250}.{index // 250}.{index % 250 + 1}"


def document(serial: int, variant: int, filler: int = 0) -> bytes:
    """web1, api, db, then ``filler`` more names; addresses depend on ``variant``."""
    names = ["web1", "api", "db", *(f"n{i:05d}" for i in range(filler))]
    return one_region_document(serial, names, lambda index: address(variant, index))


def hosts_for(data: bytes) -> bytes:
    """The hosts file the agent must write for a document, from USER_HOSTS."""
    view = build_view(parse_document(data), REGION, "internal")
    return merge_hosts(USER_HOSTS, view, "hosts")


def replace_file(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def temp_files(*directories: Path) -> set[str]:
    return {
        f"{d.name}/{n}"
        for d in directories
        for n in os.listdir(d)
        if n.startswith(".") and n.endswith(".tmp")
    }


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


# -- the agent --------------------------------------------------------------------------------


class Agent:
    """``tagdns serve`` in a subprocess; ready as soon as it listens (before any fetch)."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = workdir / f"agent-{time.monotonic_ns()}.log"
        command = [
            str(TAGDNS), "serve", "--view", REGION, "--listen", "127.0.0.1:0", *args,
        ]  # fmt: skip
        if "--upstream" not in args:
            command += ["--upstream", "none"]
        if env is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
        self.port = 0
        if not wait_for(lambda: self.exited or bool(_LISTENING.search(self.log)), 20.0):
            self.kill()
        match = _LISTENING.search(self.log)
        if match is None:
            self.kill()
            raise AssertionError(f"agent did not start: {command}\n{self.log}")
        self.port = int(match.group(1))

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def exited(self) -> bool:
        return self.process.poll() is not None

    def wait_log(self, text: str, timeout: float = 5.0) -> bool:
        return wait_for(lambda: text in self.log, timeout)

    def query(self, name: str, timeout: float = 2.0) -> DNSRecord | None:
        query = DNSRecord.question(name, "A")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(query.pack(), ("127.0.0.1", self.port))
            try:
                while True:
                    reply = DNSRecord.parse(sock.recv(65535))
                    if reply.header.id == query.header.id:
                        return reply
            except TimeoutError:
                return None

    def ask(self, name: str) -> list[str] | None:
        """Sorted A addresses; [] for an empty or error answer; None for no reply."""
        reply = self.query(name)
        if reply is None:
            return None
        if RCODE.get(reply.header.rcode) != "NOERROR":
            return []
        return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)

    def serves(self, name: str, expected: list[str], timeout: float = 5.0) -> bool:
        return wait_for(lambda: self.ask(name) == expected, timeout)

    def stop(self) -> int:
        """SIGTERM once the agent is past start-up ("ready:"); its exit code."""
        self.wait_log("ready:", 10.0)
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.kill()


# -- mounts -----------------------------------------------------------------------------------


# -- the cache directory ----------------------------------------------------------------------


def test_read_only_cache_directory_keeps_serving_warns_and_recovers(
    tmp_path: Path, agents: list[Agent]
) -> None:
    source = tmp_path / "mapping.json"
    source.write_bytes(document(1, 1))
    with tmpfs(tmp_path / "state", "size=1m,mode=0755") as state:
        cache = state / "mapping.json"
        remount(state, "ro")
        agent = Agent(tmp_path, "--source", str(source), "--cache", str(cache), "--poll", "1")
        agents.append(agent)
        assert agent.serves("web1", [address(1, 0)])
        warning = f"cache {cache}: cannot write: Read-only file system"
        assert agent.wait_log(warning), agent.log

        replace_file(source, document(2, 2))
        assert agent.serves("web1", [address(2, 0)]), agent.log
        assert agent.ask("api") == [address(2, 1)]
        time.sleep(2.5)  # two more polls of the unchanged source, each saving again
        assert agent.log.count(warning) == 1  # told once, not once a document or a poll
        assert not cache.exists()

        remount(state, "rw")
        # Saved at the next poll, without waiting for a new document.
        assert wait_for(lambda: cache.exists() and cache.read_bytes() == document(2, 2))
        assert agent.wait_log("last-known-good copy saved again"), agent.log
        replace_file(source, document(3, 3))
        assert agent.serves("web1", [address(3, 0)]), agent.log
        assert wait_for(lambda: cache.exists() and cache.read_bytes() == document(3, 3))
        assert not agent.exited
        assert "Traceback" not in agent.log
        assert agent.stop() == 0


def test_disk_full_on_the_cache_write_keeps_the_old_copy_whole(
    tmp_path: Path, agents: list[Agent]
) -> None:
    source = tmp_path / "mapping.json"
    first = document(1, 1)
    source.write_bytes(first)
    with tmpfs(tmp_path / "state", "size=64k,mode=0755") as state:
        cache = state / "mapping.json"
        agent = Agent(tmp_path, "--source", str(source), "--cache", str(cache), "--poll", "1")
        agents.append(agent)
        assert agent.serves("web1", [address(1, 0)])
        assert wait_for(lambda: cache.exists() and cache.read_bytes() == first)

        filler = state / "filler"
        with contextlib.suppress(OSError), filler.open("wb", buffering=0) as handle:
            while True:
                handle.write(b"\0" * 4096)  # until ENOSPC: the tmpfs is full
        second = document(2, 2, filler=400)  # about 80 KiB: cannot fit
        replace_file(source, second)
        assert agent.serves("web1", [address(2, 0)]), agent.log
        assert agent.ask("n00399") == [address(2, 402)]
        assert agent.wait_log(f"cache {cache}: cannot write: No space left on device"), agent.log
        assert cache.read_bytes() == first  # the old copy, whole
        assert temp_files(state) == set()  # the failed write cleaned up after itself
        assert (state / "mapping.json.source").read_text() == f"{source}\n"

        filler.unlink()
        third = document(3, 3, filler=200)
        replace_file(source, third)
        assert agent.serves("web1", [address(3, 0)]), agent.log
        assert wait_for(lambda: cache.read_bytes() == third), "the cache never caught up"
        assert "Traceback" not in agent.log
        assert agent.stop() == 0


# -- SIGHUP storm -----------------------------------------------------------------------------


def test_sighup_storm_loses_no_query_and_ends_on_the_new_document(
    tmp_path: Path, agents: list[Agent]
) -> None:
    source = tmp_path / "mapping.json"
    source.write_bytes(document(1, 1, filler=50))
    cache = tmp_path / "state" / "mapping.json"
    agent = Agent(tmp_path, "--source", str(source), "--cache", str(cache), "--poll", "3600")
    agents.append(agent)
    assert agent.serves("web1", [address(1, 0)])

    allowed = ([address(1, 0)], [address(2, 0)])
    problems: list[str] = []
    latencies: list[float] = []
    stop = threading.Event()

    def ask_all_the_time() -> None:
        while not stop.is_set():
            started = time.monotonic()
            answer = agent.ask("web1")
            latencies.append(time.monotonic() - started)
            if answer not in allowed:
                problems.append(f"web1 -> {answer}")

    asker = threading.Thread(target=ask_all_the_time)
    asker.start()
    try:
        for sent in range(200):
            os.kill(agent.process.pid, signal.SIGHUP)
            if sent == 100:
                replace_file(source, document(2, 2, filler=50))
        assert agent.serves("web1", [address(2, 0)], timeout=10.0), agent.log
        time.sleep(0.5)
    finally:
        stop.set()
        asker.join(10)
    assert not agent.exited, agent.log
    assert problems == []
    assert len(latencies) > 50 and max(latencies) < 1.0, max(latencies)
    assert wait_for(lambda: cache.read_bytes() == document(2, 2, filler=50))
    assert "Traceback" not in agent.log and "ERROR" not in agent.log
    assert agent.stop() == 0


# -- kill -9 while writing --------------------------------------------------------------------


def _hosts_config(tmp_path: Path, hosts: Path) -> Path:
    config = tmp_path / "tagdns.toml"
    config.write_text(f'[hosts]\npath = "{hosts}"\n')
    return config


def test_kill_9_during_the_agents_cache_and_hosts_writes_never_leaves_a_partial_file(
    tmp_path: Path, agents: list[Agent]
) -> None:
    """Each round: restart the agent, publish a new document, and kill -9 the agent the
    moment one of its temp files appears (i.e. while it writes). After each kill the
    cache and the hosts file must each be a document's bytes or a view's file, whole."""
    state, etc = tmp_path / "state", tmp_path / "etc"
    state.mkdir()
    etc.mkdir()
    cache, hosts, source = state / "mapping.json", etc / "hosts", tmp_path / "mapping.json"
    hosts.write_bytes(USER_HOSTS)
    config = _hosts_config(tmp_path, hosts)
    written = [document(1, 1, filler=1500)]
    source.write_bytes(written[0])
    valid_hosts = {USER_HOSTS, hosts_for(written[0])}
    args = ("--config", str(config), "--source", str(source), "--cache", str(cache))
    mid_write = 0
    for round_ in range(AGENT_KILLS):
        agent = Agent(tmp_path, *args, "--poll", "3600")
        agents.append(agent)
        serial = len(written)
        assert agent.serves("web1", [address(serial, 0)], timeout=10.0), agent.log
        before = temp_files(state, etc)
        written.append(document(serial + 1, serial + 1, filler=1500))
        valid_hosts.add(hosts_for(written[-1]))
        replace_file(source, written[-1])
        deadline = time.monotonic() + 5.0 + random.random()
        while time.monotonic() < deadline and not temp_files(state, etc) - before:
            pass  # spin: the kill must land within a write, which takes milliseconds
        landed = bool(temp_files(state, etc) - before)
        agent.process.kill()
        agent.process.wait(10)
        mid_write += landed
        if cache.exists():
            assert cache.read_bytes() in written, f"round {round_}: partial cache file"
        assert hosts.read_bytes() in valid_hosts, f"round {round_}: partial hosts file"
        assert hosts.read_bytes().startswith(USER_HOSTS)
    assert mid_write >= AGENT_KILLS // 2, f"only {mid_write} kills landed within a write"

    agent = Agent(tmp_path, *args, "--poll", "3600")
    agents.append(agent)
    serial = len(written)
    assert agent.serves("web1", [address(serial, 0)], timeout=10.0), agent.log
    assert wait_for(lambda: cache.read_bytes() == written[-1], 10.0)
    assert wait_for(lambda: hosts.read_bytes() == hosts_for(written[-1]), 10.0)
    assert agent.stop() == 0


_WRITER_DOCS = (document(1, 1, filler=800), document(2, 2, filler=800))


def _writer_loop(
    cache: Path, hosts: Path, views: list[View]
) -> None:  # pragma: no cover - runs in a fork
    """What the agent does after accepting a document, forever: hosts file, then cache."""
    copy = LastKnownGood(cache, "s3://fleet-config/dns/mapping.json")
    sync = HostsSync(HostsConfig(path=str(hosts)), "internal")
    index = 0
    while True:
        index ^= 1
        sync.apply(views[index])
        copy.save(_WRITER_DOCS[index])


def test_kill_9_of_the_agents_writers_in_a_loop_never_leaves_a_partial_file(
    tmp_path: Path,
) -> None:
    """The agent's own write path (HostsSync.apply, LastKnownGood.save) in a forked
    process, killed WRITER_KILLS times at random moments: far more kills than
    restarting the agent allows, nearly all of them within a write."""
    state, etc = tmp_path / "state", tmp_path / "etc"
    state.mkdir()
    etc.mkdir()
    cache, hosts = state / "mapping.json", etc / "hosts"
    hosts.write_bytes(USER_HOSTS)
    valid_hosts = {USER_HOSTS, *(hosts_for(d) for d in _WRITER_DOCS)}
    views = [build_view(parse_document(d), REGION, "internal") for d in _WRITER_DOCS]
    rng = random.Random(7)
    stale_seen = 0
    for kill in range(WRITER_KILLS):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                _writer_loop(cache, hosts, views)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.005, 0.08))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if cache.exists():
            assert cache.read_bytes() in _WRITER_DOCS, f"kill {kill}: partial cache file"
            sidecar = state / "mapping.json.source"  # absent only if killed before labelling
            assert not sidecar.exists() or sidecar.read_text().startswith("s3://")
        assert hosts.read_bytes() in valid_hosts, f"kill {kill}: partial hosts file"
        stale_seen = max(stale_seen, len(temp_files(state, etc)))
    assert cache.exists() and stale_seen > 0  # kills did land within writes
    # Temp files a killed writer leaves are removed by the next write to the same file.
    assert len(temp_files(state, etc)) <= 2, sorted(temp_files(state, etc))
    # The next write of each file (the hosts writer writes only on a change) cleans up.
    LastKnownGood(cache, "s3://fleet-config/dns/mapping.json").save(_WRITER_DOCS[0])
    sync = HostsSync(HostsConfig(path=str(hosts)), "internal")
    for view in views:
        sync.apply(view)
    assert temp_files(state, etc) == set()


# -- the upstream -----------------------------------------------------------------------------


class UpstreamOnPort(HostileUpstream):
    """A HostileUpstream that can come back on the port it had (to play 'disappears')."""

    def start(self) -> HostileUpstream:
        if not self.port:
            return super().start()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", self.port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("127.0.0.1", self.port))
        tcp.listen(64)
        udp.settimeout(0.1)
        tcp.settimeout(0.1)
        self._udp, self._tcp = udp, tcp
        self._spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._spoofer.bind(("127.0.0.1", 0))
        for target in (self._serve_udp, self._accept_tcp):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self


_HOSTILE = {
    "slow.example.test": (Mode.SLOW, True),
    "forged-id.example.test": (Mode.WRONG_ID_FIRST, True),
    "forged-question.example.test": (Mode.WRONG_QUESTION_FIRST, True),
    "forged-port.example.test": (Mode.SPOOF_OTHER_PORT, True),
    "garbage.example.test": (Mode.GARBAGE, False),
    "refused.example.test": (Mode.REFUSED, False),
    "servfail.example.test": (Mode.SERVFAIL, False),
    "silent.example.test": (Mode.SILENT, False),
}
"""name: (mode, whether the true answer gets through; otherwise SERVFAIL)."""


def test_misbehaving_upstream_never_slows_or_poisons_owned_names_and_is_rejoined(
    tmp_path: Path, agents: list[Agent]
) -> None:
    source = tmp_path / "mapping.json"
    source.write_bytes(document(1, 1))
    upstream = UpstreamOnPort(delay=0.8)
    upstream.start()
    try:
        # A lying upstream: it claims the owned names for itself. It is never asked.
        for claimed in ("web1", "web1.internal", "api"):
            upstream.add(claimed, "A", POISON_V4)
        for index, (name, (mode, _)) in enumerate(_HOSTILE.items()):
            upstream.add(name, "A", f"192.0.2.{index + 1}")
            upstream.script(name, mode)
        agent = Agent(
            tmp_path, "--source", str(source), "--cache", "none", "--upstream", upstream.address
        )
        agents.append(agent)
        # Before its first document a fresh agent (no cached copy) forwards every name, the
        # future owned ones too: by design, so the node keeps DNS (docs/reliability.md).
        assert agent.wait_log("serving serial 1 "), agent.log

        results: dict[str, tuple[str, list[str]] | None] = {}

        def forwarded(name: str) -> None:
            reply = agent.query(name, timeout=8.0)  # SERVFAIL comes after the 4.5 s deadline
            results[name] = None
            if reply is not None:
                addresses = sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)
                results[name] = (RCODE.get(reply.header.rcode), addresses)

        askers = [threading.Thread(target=forwarded, args=(name,)) for name in _HOSTILE]
        for thread in askers:
            thread.start()
        slowest, wrong = 0.0, []
        owned = {"web1": [address(1, 0)], "web1.internal": [address(1, 0)], "api": [address(1, 1)]}
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for name, expected in owned.items():
                started = time.monotonic()
                got = agent.ask(name)
                slowest = max(slowest, time.monotonic() - started)
                if got != expected:
                    wrong.append(f"{name} -> {got}")
        for thread in askers:
            thread.join(10)
        assert wrong == [] and slowest < 0.5, (wrong[:5], slowest)
        for index, (name, (_, answered)) in enumerate(_HOSTILE.items()):
            outcome = ("NOERROR", [f"192.0.2.{index + 1}"]) if answered else ("SERVFAIL", [])
            assert results[name] == outcome, (name, results[name])
        assert all(q.name not in owned for q in upstream.queries())

        # The upstream disappears: SERVFAIL at once (ICMP), owned names unaffected.
        port = upstream.port
        upstream.stop()
        started = time.monotonic()
        reply = agent.query("gone.example.test", timeout=8.0)
        assert reply is not None and RCODE.get(reply.header.rcode) == "SERVFAIL"
        assert time.monotonic() - started < 5.0
        assert agent.ask("web1") == [address(1, 0)]

        # It comes back on the same address: forwarding resumes without a restart.
        upstream = UpstreamOnPort(port=port)
        upstream.add("gone.example.test", "A", "192.0.2.99")
        upstream.start()
        assert agent.serves("gone.example.test", ["192.0.2.99"], timeout=5.0), agent.log
        assert "Traceback" not in agent.log
        assert agent.stop() == 0
    finally:
        upstream.stop()


# -- S3 bodies --------------------------------------------------------------------------------

KEY = "dns/mapping.json"


class BodyProxy:
    """HTTP proxy to moto that can trickle a GET's body or stop it halfway.

    ``mode``: "relay"; "trickle" (the body in 256-byte pieces, 50 ms apart);
    "cut" (headers with the full Content-Length, half the body, then the
    connection closes). Only GETs of KEY are touched.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.mode = "relay"
        self.touched = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.handle(self)

            do_PUT = do_HEAD = do_POST = do_DELETE = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            skip = {"connection", "keep-alive", "transfer-encoding", "host"}
            headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
            connection.request(request.command, request.path, body=body, headers=headers)
            reply = connection.getresponse()
            payload = reply.read()
            kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in skip]
        finally:
            connection.close()
        mode = self.mode if request.command == "GET" and KEY in request.path else "relay"
        if mode != "relay" and reply.status == 200:
            self.touched += 1
        else:
            mode = "relay"
        request.send_response(reply.status)
        for name, value in kept:
            if name.lower() != "content-length":
                request.send_header(name, value)
        if reply.status not in (204, 304):
            request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if request.command == "HEAD" or reply.status in (204, 304):
            return
        if mode == "cut":
            request.wfile.write(payload[: len(payload) // 2])
            request.wfile.flush()
            request.close_connection = True
            with contextlib.suppress(OSError):
                request.connection.shutdown(socket.SHUT_RDWR)
        elif mode == "trickle":
            for start in range(0, len(payload), 256):
                request.wfile.write(payload[start : start + 256])
                request.wfile.flush()
                time.sleep(0.05)
        else:
            request.wfile.write(payload)


def test_s3_bodies_that_trickle_or_stop_halfway(
    tmp_path: Path, aws: MotoServer, aws_env: dict[str, str], bucket: str, agents: list[Agent]
) -> None:
    client = boto3.client("s3", region_name=REGION)
    client.put_object(Bucket=bucket, Key=KEY, Body=document(10, 1))
    proxy = BodyProxy(aws.url)
    try:
        env = dict(aws_env, AWS_ENDPOINT_URL=proxy.url)
        cache = tmp_path / "state" / "mapping.json"
        agent = Agent(
            tmp_path, "--source", f"s3://{bucket}/{KEY}", "--cache", str(cache),
            "--poll", "1", env=env,
        )  # fmt: skip
        agents.append(agent)
        assert agent.serves("web1", [address(1, 0)])
        assert wait_for(lambda: cache.exists() and cache.read_bytes() == document(10, 1))

        # Half a body, then the connection closes: never served, never cached.
        proxy.mode = "cut"
        client.put_object(Bucket=bucket, Key=KEY, Body=document(11, 2, filler=40))
        assert wait_for(lambda: proxy.touched >= 3, 10.0), agent.log
        assert agent.ask("web1") == [address(1, 0)]
        assert cache.read_bytes() == document(10, 1)
        assert "keeping serial 10: s3://" in agent.log
        assert "refused" not in agent.log  # nothing half-read ever reached the parser

        # The body trickles in over a second or two: old answers meanwhile, then the new.
        proxy.mode = "trickle"
        assert agent.ask("web1") == [address(1, 0)]
        assert agent.serves("web1", [address(2, 0)], timeout=15.0), agent.log
        assert wait_for(lambda: cache.read_bytes() == document(11, 2, filler=40))
        assert wait_for(lambda: "recovered: s3://" in agent.log), agent.log  # after the write
        assert "Traceback" not in agent.log
        assert agent.stop() == 0
    finally:
        proxy.close()


@contextlib.contextmanager
def inside_a_trickled_first_fetch(
    tmp_path: Path,
    aws: MotoServer,
    aws_env: dict[str, str],
    bucket: str,
    agents: list[Agent],
    *,
    filler: int,
) -> Iterator[Agent]:
    """An agent whose first S3 fetch is still trickling in (256 bytes per 50 ms)."""
    client = boto3.client("s3", region_name=REGION)
    client.put_object(Bucket=bucket, Key=KEY, Body=document(10, 1, filler=filler))
    proxy = BodyProxy(aws.url)
    proxy.mode = "trickle"
    try:
        env = dict(aws_env, AWS_ENDPOINT_URL=proxy.url)
        agent = Agent(
            tmp_path, "--source", f"s3://{bucket}/{KEY}", "--cache", "none", "--poll", "60",
            env=env,
        )  # fmt: skip
        agents.append(agent)
        assert wait_for(lambda: proxy.touched >= 1, 5.0)
        assert "ready:" not in agent.log  # still inside the first fetch
        yield agent
    finally:
        proxy.close()


def test_sighup_while_the_first_fetch_is_still_running_does_not_kill_the_agent(
    tmp_path: Path, aws: MotoServer, aws_env: dict[str, str], bucket: str, agents: list[Agent]
) -> None:
    """The listeners answer before the first fetch returns (it can take minutes against
    S3), and READY=1 may be sent meanwhile: a reload then must fetch, not kill. SIGHUP's
    handler used to be installed only after the first fetch, leaving its default action."""
    # About 2 s for this document.
    with inside_a_trickled_first_fetch(tmp_path, aws, aws_env, bucket, agents, filler=40) as agent:
        for _ in range(5):
            os.kill(agent.process.pid, signal.SIGHUP)
            time.sleep(0.05)
        assert agent.serves("web1", [address(1, 0)], timeout=15.0), agent.log
        assert not agent.exited
        assert agent.wait_log("ready:"), agent.log
        assert agent.stop() == 0


def _blocked_signals(pid: int) -> int:
    """The SigBlk mask of the process's main thread (bit n-1 for signal n); 0 once gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^SigBlk:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return int(match.group(1), 16) if match else 0


def test_a_reload_sent_before_the_agent_has_loaded_its_modules_is_handled_later(
    tmp_path: Path,
) -> None:
    """SIGHUP and SIGUSR1 end a process by default, and the agent takes them over only
    once its modules are loaded and its loop runs, some tenths of a second after exec.
    Sent in that window they used to kill it; they are now held pending from the
    console script's first line and handled once the handlers are in."""
    held = 1 << (signal.SIGHUP - 1) | 1 << (signal.SIGUSR1 - 1)
    log_path = tmp_path / "agent.log"
    command = [
        str(TAGDNS), "serve", "--source", str(REPO / "conf" / "example-mapping.json"),
        "--view", REGION, "--listen", "127.0.0.1:0", "--upstream", "none",
        "--cache", "none", "--metrics", "none",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert wait_for(lambda: _blocked_signals(process.pid) & held == held, 10.0)
        assert "listening on" not in log_path.read_text()  # still starting
        process.send_signal(signal.SIGHUP)
        process.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: "query logging on" in log_path.read_text(), 20.0), (
            process.poll(),
            log_path.read_text(),
        )
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_sigterm_during_a_slow_first_fetch_stops_at_once(
    tmp_path: Path, aws: MotoServer, aws_env: dict[str, str], bucket: str, agents: list[Agent]
) -> None:
    """A stop must not wait for a first fetch that hangs: systemd's TimeoutStopSec would
    run out and the agent be killed. The fetch is abandoned, the agent exits 0."""
    # About 20 s for this document.
    with inside_a_trickled_first_fetch(tmp_path, aws, aws_env, bucket, agents, filler=400) as agent:
        time.sleep(0.5)
        assert "ready:" not in agent.log  # still inside the first fetch
        started = time.monotonic()
        agent.process.send_signal(signal.SIGTERM)
        assert agent.process.wait(10) == 0, agent.log
        assert time.monotonic() - started < 3.0, agent.log
        assert "stop requested during start-up" in agent.log
