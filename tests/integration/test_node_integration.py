"""Node integration end to end: the real ``tagdns serve`` process, its metrics, readiness
and logs, and ``tagdns status`` / ``tagdns check`` as the console scripts an operator runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import DNSRecord

import resolver
from devsupport.net import free_port
from resolver.cli_node import check_address
from resolver.core.endpoints import Endpoint

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "conf" / "example-mapping.json"
TAGDNS = str(Path(sys.executable).with_name("tagdns"))
TIMEOUT = 15.0

HOLD_PORT = """
import socket, sys, time
if len(sys.argv) > 2:
    with open("/proc/self/comm", "w") as comm:
        comm.write(sys.argv[2])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", int(sys.argv[1])))
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", int(sys.argv[1])))
tcp.listen()
print("holding", flush=True)
time.sleep(60)
"""


def wait_for(predicate: object, timeout: float = TIMEOUT) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class NodeAgent:
    """``tagdns serve`` with JSON logs, metrics on a free port and a notify socket."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.dns_port = free_port()
        self.log_path = workdir / "agent.log"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(workdir / "notify"))
        self.notify.settimeout(TIMEOUT)
        self.command = [
            TAGDNS, "serve", "--source", str(EXAMPLE), "--view", "us-east-1",
            "--listen", f"127.0.0.1:{self.dns_port}", "--upstream", "none", "--cache", "none",
            "--metrics", "127.0.0.1:0", "--log-format", "json", *extra,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["NOTIFY_SOCKET"] = str(workdir / "notify")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.DEVNULL, stderr=log, env=env
            )
        self.metrics = ""
        assert wait_for(self._metrics_logged), self.log_path.read_text()

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def _metrics_logged(self) -> bool:
        for event in self.events():
            message = str(event["message"])
            if message.startswith("metrics at http://"):
                self.metrics = message.removeprefix("metrics at http://").removesuffix("/metrics")
                return True
        return self.process.poll() is not None

    def notified(self) -> dict[str, str]:
        message = self.notify.recv(4096).decode()
        return dict(line.split("=", 1) for line in message.split("\n"))

    def ask(self, name: str, qtype: str = "A") -> DNSRecord:
        reply = DNSRecord.question(name, qtype).send("127.0.0.1", self.dns_port, timeout=3)
        return DNSRecord.parse(reply)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(TIMEOUT)
        finally:
            self.notify.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[NodeAgent]:
    running = NodeAgent(tmp_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(5)
        running.notify.close()


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAGDNS, *argv], capture_output=True, text=True, timeout=60, check=False)


def test_agent_notifies_serves_metrics_and_status_summarises(agent: NodeAgent) -> None:
    statuses = [agent.notified()]
    while "READY" not in statuses[-1]:
        statuses.append(agent.notified())
    assert statuses[-1] == {
        "READY": "1",
        "STATUS": "serving serial 1764076800 (5 names, view us-east-1)",
    }
    assert agent.ask("web1.internal").short() == "10.0.1.10"
    assert agent.ask("db").short() == "34.240.0.5"
    agent.ask("nothing.example")

    with urllib.request.urlopen(f"http://{agent.metrics}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert "tagdns_serving_serial 1.7640768e+09" in text
    assert 'tagdns_queries_total{transport="udp"} 3.0' in text
    assert 'tagdns_responses_total{rcode="REFUSED"} 1.0' in text
    assert 'tagdns_answers_total{source="owned"} 2.0' in text

    result = run("status", "--metrics", agent.metrics)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"tagdns agent at {agent.metrics}"
    assert lines[1] == "  serving:    serial 1764076800, 5 names, view us-east-1"
    assert "  queries:    3 (UDP 3, TCP 0): owned 2, cached 0, forwarded 0" in lines
    assert "  last error: none" in lines

    assert agent.stop() == 0
    assert agent.process.returncode == 0
    stopped = run("status", "--metrics", agent.metrics)
    assert stopped.returncode == 1
    assert stopped.stdout == ""
    assert stopped.stderr.startswith(f"tagdns: no agent answering at http://{agent.metrics}/")
    assert len(stopped.stderr.splitlines()) == 1


def test_agent_says_stopping_on_sigterm(agent: NodeAgent) -> None:
    while "READY" not in agent.notified():
        pass
    agent.process.send_signal(signal.SIGTERM)
    assert agent.notified() == {"STOPPING": "1", "STATUS": "stopping"}
    assert agent.process.wait(TIMEOUT) == 0


def test_sigusr1_toggles_query_logging_as_json_lines(agent: NodeAgent) -> None:
    agent.ask("web1")
    agent.process.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: any("query logging on" in str(e["message"]) for e in agent.events()))
    agent.ask("api", "AAAA")
    assert wait_for(lambda: any(e["logger"] == "tagdns.query" for e in agent.events()))
    queries = [e for e in agent.events() if e["logger"] == "tagdns.query"]
    assert len(queries) == 1
    assert queries[0]["name"] == "api."
    assert queries[0]["type"] == "AAAA"
    assert queries[0]["rcode"] == "NOERROR"
    assert queries[0]["transport"] == "udp"
    assert str(queries[0]["client"]).startswith("127.0.0.1:")


def test_check_accepts_the_running_agents_own_addresses(agent: NodeAgent) -> None:
    result = run(
        "check", "--source", str(EXAMPLE), "--view", "us-east-1",
        "--listen", f"127.0.0.1:{agent.dns_port}", "--upstream", "none", "--cache", "none",
        "--metrics", agent.metrics,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    pid = agent.process.pid
    assert (
        f"ok: listen 127.0.0.1:{agent.dns_port}: held by the running tagdns agent (pid {pid})"
        in result.stdout.splitlines()
    )
    assert f"ok: metrics {agent.metrics}: held by the running tagdns agent (pid {pid})" in (
        result.stdout.splitlines()
    )


@pytest.fixture
def held_port() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_PORT, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        yield port, holder
    finally:
        holder.kill()
        holder.wait(5)


def _check_on(port: int) -> subprocess.CompletedProcess[str]:
    return run(
        "check", "--source", str(EXAMPLE), "--view", "us-east-1",
        "--listen", f"127.0.0.1:{port}", "--upstream", "none", "--cache", "none",
        "--metrics", "none",
    )  # fmt: skip


def test_check_on_a_taken_listen_address_exits_1_with_one_line(
    held_port: tuple[int, subprocess.Popen[str]],
) -> None:
    port, holder = held_port
    result = _check_on(port)
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL:")]
    assert len(fails) == 1
    comm = Path(f"/proc/{holder.pid}/comm").read_text().strip()
    assert fails[0] == (
        f"FAIL: listen 127.0.0.1:{port}: UDP and TCP port in use by {comm} (pid {holder.pid})"
    )


def test_check_names_the_fix_when_systemd_resolved_holds_the_address() -> None:
    port = free_port()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_PORT, str(port), "systemd-resolve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        result = _check_on(port)
    finally:
        holder.kill()
        holder.wait(5)
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL:")]
    assert line.startswith(f"FAIL: listen 127.0.0.1:{port}: UDP and TCP port in use: ")
    assert "systemd-resolved's stub listener" in line
    assert "DNSStubListener=no (conf/resolved/tagdns-takeover.conf)" in line
    assert "conf/resolved/tagdns-internal.conf" in line
    for name in ("tagdns-takeover.conf", "tagdns-internal.conf"):
        assert (REPO / "conf" / "resolved" / name).is_file()


def test_check_passes_a_resolved_that_lets_the_address_go_on_its_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Set-up A is checked with the takeover drop-in installed, before resolved restarts:
    the node still resolves then, so the document check can fetch from S3."""
    port = free_port()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_PORT, str(port), "systemd-resolve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    monkeypatch.setattr(
        "resolver.cli_node.read_resolved_configs",
        lambda: ["[Resolve]\nDNSStubListener=no\n"],  # the takeover drop-in, on disk
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        result = check_address(Endpoint("127.0.0.1", port), "listen", ("udp", "tcp"))
    finally:
        holder.kill()
        holder.wait(5)
    assert result.line() == (
        f"ok: listen 127.0.0.1:{port}: held by systemd-resolved until it restarts: its "
        "configuration turns the stub listener off (DNSStubListener=no)"
    )


def test_shipped_units_and_drop_ins_hold_what_the_docs_promise() -> None:
    unit = (REPO / "conf" / "systemd" / "tagdns.service").read_text()
    for setting in (
        "Type=notify",
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=tagdns",
    ):
        assert f"\n{setting}\n" in unit, setting
    hosts = (REPO / "conf" / "systemd" / "tagdns-hosts.service").read_text()
    assert "\nReadWritePaths=/etc\n" in hosts
    assert "\nProtectSystem=strict\n" in hosts
    path_unit = (REPO / "conf" / "systemd" / "tagdns-hosts.path").read_text()
    assert "\nPathChanged=/var/lib/tagdns/mapping.json\n" in path_unit
    takeover = (REPO / "conf" / "resolved" / "tagdns-takeover.conf").read_text()
    assert takeover.endswith("[Resolve]\nDNSStubListener=no\n")
    routing = (REPO / "conf" / "resolved" / "tagdns-internal.conf").read_text()
    assert routing.endswith("[Resolve]\nDNS=127.0.0.153\nDomains=~internal\n")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_shipped_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    for name in ("tagdns.service", "tagdns-hosts.service", "tagdns-hosts.path"):
        text = (REPO / "conf" / "systemd" / name).read_text()
        # The units name /opt/tagdns/bin/tagdns; verify wants an executable that exists.
        (tmp_path / name).write_text(text.replace("/opt/tagdns/bin/tagdns", TAGDNS))
    for name in ("tagdns.service", "tagdns-hosts.service", "tagdns-hosts.path"):
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        problems = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
        assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.4, 1.0])
def test_ctrl_c_at_any_moment_of_start_up_ends_without_a_traceback(delay: float) -> None:
    """``scripts/run`` then Ctrl-C at once: while the command's modules still load, as
    well as once the agent runs, SIGINT ends it quietly (130, or 0 via "stopped")."""
    # A terminal's Ctrl-C reaches a program whose SIGINT is not ignored. A suite
    # started as a background job without job control runs with SIGINT ignored, and
    # the agent would inherit that until it installs its own handler: the first
    # tenths of a second would lose the signal. Start it as a terminal would.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [TAGDNS, "serve", "--source", str(EXAMPLE), "--view", "us-east-1",
             "--listen", "127.0.0.1:0", "--upstream", "none", "--cache", "none",
             "--metrics", "none"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    try:
        _out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired as expired:
        so_far = expired.stderr.decode() if isinstance(expired.stderr, bytes) else ""
        if _SWALLOWED not in so_far:
            raise
        # Python's start-up printed the interrupt and ran the program all the same:
        # the user sees the agent start and presses Ctrl-C again.
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=TIMEOUT)
        err = err.split(_SWALLOWED, 1)[1].split("KeyboardInterrupt\n", 1)[1]
    if _before_our_first_line(err):
        return  # Python's own start-up: no program can catch a Ctrl-C there
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert process.returncode in (0, 130, -signal.SIGINT), (process.returncode, err)


_SWALLOWED = "Failed checking if argv[0] is an import path entry"
"""What CPython prints when a Ctrl-C lands while it works out ``sys.path[0]``, before
running the program: it reports the interrupt and then runs the program anyway."""


def _before_our_first_line(err: str) -> bool:
    """The Ctrl-C came while Python itself was starting, before any of our code ran:
    the interpreter's import of its site module failed (the site module, .pth lines
    and the importer: none of it ours), or the console script's import of its entry
    point was under way, in the import machinery (importlib, the editable install's
    finder, pathlib) and not yet in our module."""
    frames = [line for line in err.splitlines() if line.lstrip().startswith("File ")]
    ours = str(Path(resolver.__file__).parent)
    if not err.rstrip().endswith("KeyboardInterrupt") or any(ours in f for f in frames):
        return False
    if err.startswith("Fatal Python error: init_import_site"):
        return True
    return (
        bool(frames)
        and frames[0].rstrip().endswith(", in <module>")
        and "from resolver.console import main" in err
    )
