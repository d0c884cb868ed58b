"""Live mapping as a user meets it: real ``tagdns serve`` processes, real files, moto as S3.

File source: edits in place and by rename are served within 5 s; truncated, wrong
schema, older and shrinking documents are refused once each while the old answers
continue; SIGHUP fetches now and never kills the agent; the last-known-good copy
is written and served after a restart.

S3 source (moto_server, seen through a small counting proxy written for these
tests): unchanged polls are 304s carrying If-None-Match, with no body; a new
object is served within 5 s; a refused object polled 5 times is logged once;
500s (retried first), 403, a missing object and a slow reply keep the old answers
and are each logged once; an agent restarted while S3 (its own moto_server,
killed for the test) is down serves the last-known-good copy at once.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from devsupport.net import free_port
from tests.documents import one_region_document
from tests.integration.conftest import (
    MOTO_SERVER,
    MotoServer,
    _wait_until_answering,
)
from tests.integration.dns_helpers import TAGDNS

pytestmark = pytest.mark.integration

REGION = "us-east-1"
NAMES = ("api", "db", "web1", "web2")
KEY = "dns/mapping.json"
SERVED_WITHIN = 5.0  # the promised bound for a changed file or object to be served
_READY = re.compile(r"(?:ready|listening without data): 127\.0\.0\.1:(\d+)")


def address(variant: int, index: int) -> str:
    return f"10.{variant}.0.{index + 1}"


def document(serial: int, names: tuple[str, ...] = NAMES, *, variant: int = 1) -> bytes:
    return one_region_document(serial, names, lambda index: address(variant, index))


WEB1 = NAMES.index("web1")


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def replace_by_rename(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_in_place(path: Path, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.write(data)
        handle.truncate()


class LiveAgent:
    """``tagdns serve`` as a subprocess on a free port; its stderr in a file."""

    def __init__(
        self, workdir: Path, *args: str, env: dict[str, str] | None = None, poll: str = "1"
    ) -> None:
        self.log_path = workdir / f"agent-{time.monotonic_ns()}.log"
        self.command = [
            str(TAGDNS), "serve", "--view", REGION, "--listen", "127.0.0.1:0",
            "--upstream", "none", "--poll", poll, *args,
        ]  # fmt: skip
        if env is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=self._log, env=env
        )
        self.port = 0
        match = None
        if wait_for(lambda: self.exited or bool(_READY.search(self.stderr)), 20.0):
            match = _READY.search(self.stderr)
        if match is None:
            self.kill()
            raise AssertionError(f"agent did not start: {self.command}\n{self.stderr}")
        self.port = int(match.group(1))

    @property
    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def exited(self) -> bool:
        return self.process.poll() is not None

    def count(self, text: str) -> int:
        return self.stderr.count(text)

    def wait_log(self, text: str, timeout: float = SERVED_WITHIN) -> bool:
        return wait_for(lambda: text in self.stderr, timeout)

    def ask(self, name: str) -> list[str] | None:
        """The A addresses for ``name`` (sorted), [] for NODATA/REFUSED, None on no reply."""
        query = DNSRecord.question(name, "A")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.sendto(query.pack(), ("127.0.0.1", self.port))
            try:
                reply = DNSRecord.parse(sock.recv(65535))
            except TimeoutError:
                return None
        if RCODE.get(reply.header.rcode) != "NOERROR":
            return []
        return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)

    def served_within(self, name: str, expected: list[str]) -> bool:
        return wait_for(lambda: self.ask(name) == expected, SERVED_WITHIN)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(10)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def agents() -> Iterator[list[LiveAgent]]:
    """Every agent a test starts is killed at the end, whatever happened."""
    started: list[LiveAgent] = []
    yield started
    for agent in started:
        agent.kill()


# -- file source ------------------------------------------------------------------------------


def test_file_edits_in_place_and_by_rename_are_served_within_5s(
    tmp_path: Path, agents: list[LiveAgent]
) -> None:
    source = tmp_path / "mapping.json"
    source.write_bytes(document(1, variant=1))
    # Polling once an hour: only the watch can notice these edits in time.
    agent = LiveAgent(tmp_path, "--source", f"file://{source}", "--cache", "none", poll="3600")
    agents.append(agent)
    assert agent.ask("web1") == [address(1, WEB1)]

    write_in_place(source, document(2, variant=2))
    assert agent.served_within("web1", [address(2, WEB1)]), agent.stderr

    replace_by_rename(source, document(3, variant=3))
    assert agent.served_within("web1", [address(3, WEB1)]), agent.stderr

    # A same-sized rewrite in place right after the last one (same size, maybe the
    # same timestamp tick) is seen too.
    write_in_place(source, document(4, variant=4))
    assert agent.served_within("web1", [address(4, WEB1)]), agent.stderr
    assert agent.stop() == 0
    assert "stopped" in agent.stderr


def test_bad_documents_are_refused_once_each_and_old_answers_continue(
    tmp_path: Path, agents: list[LiveAgent]
) -> None:
    source = tmp_path / "mapping.json"
    source.write_bytes(document(10))
    agent = LiveAgent(tmp_path, "--source", str(source), "--cache", "none", poll="1")
    agents.append(agent)
    old = [address(1, WEB1)]
    assert agent.ask("web1") == old

    wrong_schema = json.loads(document(11, variant=2))
    wrong_schema["schema"] = 2
    bad = [
        (document(11, variant=2)[:300], "refused: document is not valid JSON"),
        (json.dumps(wrong_schema).encode(), "refused: schema: expected 1, got 2"),
        (document(9, variant=2), "refused: serial 9 is older than the serial 10 in force"),
        (
            document(12, ("web1",), variant=2),
            "refused: new document loses 3 of 4 names (75%), more than the 50% allowed",
        ),
    ]
    for data, reason in bad:
        replace_by_rename(source, data)
        assert agent.wait_log(reason), agent.stderr
        assert agent.ask("web1") == old
        assert agent.ask("db") == [address(1, NAMES.index("db"))]
    time.sleep(2.5)  # at least two more polls of the last refused document
    for _, reason in bad:
        assert agent.count(reason) == 1, agent.stderr
    assert agent.ask("web1") == old

    replace_by_rename(source, document(13, variant=3))
    assert agent.served_within("web1", [address(3, WEB1)]), agent.stderr
    assert agent.wait_log(f"recovered: {source}")
    assert not agent.exited


def test_sighup_fetches_now_and_keeps_the_agent_alive(
    tmp_path: Path, agents: list[LiveAgent]
) -> None:
    """The source is a hard link to a file elsewhere: writing that file in place raises
    no event in the watched directory (the kernel reports a write to the directory it
    was opened through), and polling is hourly, so only the SIGHUP can make the agent
    read it."""
    real = tmp_path / "real" / "mapping.json"
    real.parent.mkdir()
    real.write_bytes(document(1))
    link = tmp_path / "etc" / "mapping.json"
    link.parent.mkdir()
    link.hardlink_to(real)
    agent = LiveAgent(tmp_path, "--source", str(link), "--cache", "none", poll="3600")
    agents.append(agent)
    assert agent.ask("web1") == [address(1, WEB1)]

    write_in_place(real, document(2, variant=2))
    time.sleep(1.0)
    assert agent.ask("web1") == [address(1, WEB1)]  # not noticed on its own
    agent.process.send_signal(signal.SIGHUP)
    assert agent.served_within("web1", [address(2, WEB1)]), agent.stderr

    for _ in range(5):
        agent.process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert not agent.exited
    assert agent.ask("web1") == [address(2, WEB1)]
    assert agent.stop() == 0
    assert "Traceback" not in agent.stderr
    # A reload leaves a line, so the journal shows it was taken even when nothing changed
    # (signals sent in a burst may arrive as one: at least the first and one of the rest).
    assert agent.stderr.count(f"reload requested (SIGHUP): fetching {link}") >= 2


def test_file_source_last_known_good_is_written_and_served_after_restart(
    tmp_path: Path, agents: list[LiveAgent]
) -> None:
    source = tmp_path / "mapping.json"
    source.write_bytes(document(7))
    cache = tmp_path / "state" / "mapping.json"
    first = LiveAgent(tmp_path, "--source", str(source), "--cache", str(cache))
    agents.append(first)
    assert first.ask("web1") == [address(1, WEB1)]
    assert wait_for(cache.exists, SERVED_WITHIN)
    assert first.stop() == 0
    assert cache.read_bytes() == document(7)
    assert (tmp_path / "state" / "mapping.json.source").read_text() == f"{source}\n"
    assert sorted(os.listdir(cache.parent)) == ["mapping.json", "mapping.json.source"]

    source.unlink()  # the source is gone when the node comes back
    second = LiveAgent(tmp_path, "--source", str(source), "--cache", str(cache))
    agents.append(second)
    assert second.ask("web1") == [address(1, WEB1)]
    assert f"loaded serial 7 (was none) from cache {cache}" in second.stderr
    assert second.count(f"keeping serial 7: {source}: no such file") == 1


def test_an_agent_without_data_does_not_say_ready(tmp_path: Path) -> None:
    """READY=1 is not sent without a document; the log line must not say "ready" either."""
    source = tmp_path / "mapping.json"
    agent = LiveAgent(tmp_path, "--source", str(source), "--cache", "none")
    try:
        assert f"listening without data: 127.0.0.1:{agent.port} (no document accepted yet" in (
            agent.stderr
        )
        assert "ready: " not in agent.stderr
        replace_by_rename(source, document(1))
        assert agent.wait_log("serving serial 1")
        assert agent.ask("web1") == [address(1, WEB1)]
        # Ready now, as READY=1 says to systemd: the log says so too.
        assert agent.wait_log(f"ready: 127.0.0.1:{agent.port}")
    finally:
        agent.stop()
    started = LiveAgent(tmp_path, "--source", str(source), "--cache", "none")
    try:
        assert f"ready: 127.0.0.1:{started.port}" in started.stderr
    finally:
        started.stop()


def test_view_auto_off_ec2_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "mapping.json"
    source.write_bytes(document(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    result = subprocess.run(
        [str(TAGDNS), "serve", "--source", str(source), "--view", "auto",
         "--listen", "127.0.0.1:0", "--upstream", "none", "--cache", "none"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1  # a runtime failure: the metadata service may answer later
    assert result.stderr.count("\n") == 1
    assert "instance metadata did not answer" in result.stderr


# -- an S3 endpoint that counts and misbehaves on request ---------------------------------------


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    body_bytes: int
    if_none_match: str | None


_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)
_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "403": (403, "AccessDenied", "Access Denied"),
}


class S3Proxy:
    """A loopback HTTP proxy in front of moto_server that logs every exchange.

    ``fault``: None relays; "500" or "403" answers that S3 error itself; "slow"
    holds each request until ``release`` is set, then relays. ``fail_next`` answers
    that many requests with a 500 before relaying again (to see botocore retry).
    """

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.exchanges: list[Exchange] = []
        self.fault: str | None = None
        self.fail_next = 0
        self.pending = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.handle(self)

            do_PUT = do_HEAD = do_DELETE = do_POST = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def gets(self, key: str = KEY) -> list[Exchange]:
        with self.lock:
            return [e for e in self.exchanges if e.method == "GET" and e.path.endswith(key)]

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        with self.lock:
            fault = self.fault
            if self.fail_next:
                self.fail_next -= 1
                fault = "500"
        if fault in _ERRORS:
            status, code, message = _ERRORS[fault]
            payload = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
            self._send(request, status, [("Content-Type", "application/xml")], payload)
            return
        if fault == "slow":
            with self.lock:
                self.pending += 1
            self.release.wait(30)
            with self.lock:
                self.pending -= 1
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(request.command, request.path, body=body, headers=headers)
            reply = connection.getresponse()
            payload = reply.read()
            kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in _HOP_BY_HOP]
            self._send(request, reply.status, kept, payload)
        finally:
            connection.close()

    def _send(
        self,
        request: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: list[tuple[str, str]],
        payload: bytes,
    ) -> None:
        with self.lock:
            self.exchanges.append(
                Exchange(
                    request.command,
                    urllib.parse.urlsplit(request.path).path,
                    status,
                    len(payload),
                    request.headers.get("If-None-Match"),
                )
            )
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        if status not in (204, 304):
            request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if request.command != "HEAD" and status not in (204, 304):
            request.wfile.write(payload)


@pytest.fixture
def proxy(aws: MotoServer) -> Iterator[S3Proxy]:
    server = S3Proxy(aws.url)
    try:
        yield server
    finally:
        server.close()


def agent_env(aws_env: dict[str, str], endpoint: str) -> dict[str, str]:
    env = dict(aws_env)
    env["AWS_ENDPOINT_URL"] = endpoint
    return env


def test_s3_unchanged_polls_are_304s_and_new_objects_are_served(
    tmp_path: Path,
    aws_env: dict[str, str],
    s3: object,
    bucket: str,
    proxy: S3Proxy,
    agents: list[LiveAgent],
) -> None:
    client = boto3.client("s3", region_name=REGION)
    client.put_object(Bucket=bucket, Key=KEY, Body=document(10))
    etag = client.head_object(Bucket=bucket, Key=KEY)["ETag"]
    cache = tmp_path / "cache" / "mapping.json"
    agent = LiveAgent(
        tmp_path, "--source", f"s3://{bucket}/{KEY}", "--cache", str(cache),
        env=agent_env(aws_env, proxy.url), poll="1",
    )  # fmt: skip
    agents.append(agent)
    assert agent.ask("web1") == [address(1, WEB1)]

    assert wait_for(lambda: len(proxy.gets()) >= 3, 10.0)
    first, *polls = proxy.gets()
    assert (first.status, first.body_bytes, first.if_none_match) == (200, len(document(10)), None)
    assert polls
    for poll in polls:
        assert (poll.status, poll.body_bytes, poll.if_none_match) == (304, 0, etag)

    # A refused object is fetched once, then costs 304s and is logged once.
    client.put_object(Bucket=bucket, Key=KEY, Body=document(9, variant=2))
    stale_etag = client.head_object(Bucket=bucket, Key=KEY)["ETag"]
    reason = "refused: serial 9 is older than the serial 10 in force"
    assert agent.wait_log(reason), agent.stderr
    seen = len(proxy.gets())
    assert wait_for(lambda: len(proxy.gets()) >= seen + 5, 10.0)  # five more polls
    for poll in proxy.gets()[seen:]:
        assert (poll.status, poll.body_bytes, poll.if_none_match) == (304, 0, stale_etag)
    assert agent.count(reason) == 1, agent.stderr
    assert agent.ask("web1") == [address(1, WEB1)]

    client.put_object(Bucket=bucket, Key=KEY, Body=document(11, variant=2))
    assert agent.served_within("web1", [address(2, WEB1)]), agent.stderr
    assert agent.wait_log(f"recovered: s3://{bucket}/{KEY}")
    assert wait_for(lambda: cache.exists() and cache.read_bytes() == document(11, variant=2), 5)
    assert agent.stop() == 0


def test_s3_failures_keep_old_answers_and_are_logged_once(
    tmp_path: Path,
    aws_env: dict[str, str],
    s3: object,
    bucket: str,
    proxy: S3Proxy,
    agents: list[LiveAgent],
) -> None:
    client = boto3.client("s3", region_name=REGION)
    client.put_object(Bucket=bucket, Key=KEY, Body=document(10))
    proxy.fail_next = 1  # the first GET fails: botocore's retry (AWS_MAX_ATTEMPTS=2) gets it
    agent = LiveAgent(
        tmp_path, "--source", f"s3://{bucket}/{KEY}", "--cache", "none",
        env=agent_env(aws_env, proxy.url), poll="1",
    )  # fmt: skip
    agents.append(agent)
    old = [address(1, WEB1)]
    assert agent.ask("web1") == old
    assert [e.status for e in proxy.gets()[:2]] == [500, 200]
    assert "keeping serial" not in agent.stderr, agent.stderr

    def phase(statuses: set[int], message: str) -> None:
        seen = len(proxy.gets())
        assert wait_for(
            lambda: sum(e.status in statuses for e in proxy.gets()[seen:]) >= 4, 10.0
        ), proxy.gets()[seen:]
        assert agent.ask("web1") == old
        assert agent.count(message) == 1, (agent.stderr, proxy.gets()[seen:])

    proxy.fault = "500"
    phase({500}, "InternalError: We encountered an internal error. Please try again.")
    proxy.fault = "403"
    phase({403}, "access denied (check the node's IAM policy: s3:GetObject on this key)")
    proxy.fault = None
    client.delete_object(Bucket=bucket, Key=KEY)
    phase({404}, f"keeping serial 10: s3://{bucket}/{KEY}: no such object")

    # The same object back: a 304 for the object in force, and the agent says it recovered.
    client.put_object(Bucket=bucket, Key=KEY, Body=document(10))
    assert agent.wait_log(f"recovered: s3://{bucket}/{KEY}"), agent.stderr
    assert proxy.gets()[-1].status == 304

    # Slow: a fetch hangs in the proxy; answers do not wait for it. The new object is
    # put only once a poll is held, so no poll can fetch it before that one.
    proxy.fault = "slow"
    assert wait_for(lambda: proxy.pending > 0, 5.0)
    client.put_object(Bucket=bucket, Key=KEY, Body=document(11, variant=2))
    assert agent.ask("web1") == old
    proxy.fault = None
    proxy.release.set()
    assert agent.served_within("web1", [address(2, WEB1)]), agent.stderr
    assert "Traceback" not in agent.stderr
    assert agent.stop() == 0


# -- S3 going away --------------------------------------------------------------------------


@pytest.fixture
def own_moto(tmp_path: Path, aws: MotoServer) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A moto_server of this test alone, so the test may kill it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "own-moto.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_answering(url, process, log)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_answers_survive_s3_going_away_and_a_restart_during_the_outage(
    tmp_path: Path,
    aws_env: dict[str, str],
    own_moto: tuple[str, subprocess.Popen[bytes]],
    agents: list[LiveAgent],
) -> None:
    url, moto_process = own_moto
    client = boto3.client("s3", region_name=REGION, endpoint_url=url)
    client.create_bucket(Bucket="fleet-config")
    client.put_object(Bucket="fleet-config", Key=KEY, Body=document(10))
    cache = tmp_path / "var" / "mapping.json"
    source = f"s3://fleet-config/{KEY}"
    args = ("--source", source, "--cache", str(cache))
    env = agent_env(aws_env, url)
    first = LiveAgent(tmp_path, *args, env=env, poll="1")
    agents.append(first)
    old = [address(1, WEB1)]
    assert first.ask("web1") == old
    assert wait_for(cache.exists, SERVED_WITHIN)

    moto_process.kill()
    moto_process.wait(10)
    down = f"keeping serial 10: {source}: cannot connect to {url}"
    assert first.wait_log(down), first.stderr
    time.sleep(2.5)  # more failed polls
    assert first.ask("web1") == old
    assert first.ask("api") == [address(1, NAMES.index("api"))]
    assert first.count(down) == 1, first.stderr
    assert first.stop() == 0

    second = LiveAgent(tmp_path, *args, env=env, poll="1")
    agents.append(second)
    assert second.ask("web1") == old
    assert second.ask("db") == [address(1, NAMES.index("db"))]
    assert f"loaded serial 10 (was none) from cache {cache}" in second.stderr
    assert second.wait_log(down)
