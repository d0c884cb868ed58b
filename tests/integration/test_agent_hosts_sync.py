"""The agent keeps [hosts] files in sync with each accepted document."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.dns_helpers import header, question
from tests.integration.dns_helpers import AgentProcess, udp_exchange

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "conf" / "example-mapping.json"
TAGDNS = str(Path(sys.executable).with_name("tagdns"))


def _wait_for(predicate: object, timeout: float = 10.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def agent_with_hosts(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"127.0.0.1 localhost\n# my own line\n10.9.9.9 keepme\n")
    os.chmod(hosts, 0o640)
    source = tmp_path / "mapping.json"
    source.write_bytes(EXAMPLE.read_bytes())
    dnsmasq_file = tmp_path / "dnsmasq.hosts"
    config = tmp_path / "tagdns.toml"
    config.write_text(f'[hosts]\npath = "{hosts}"\ndnsmasq_file = "{dnsmasq_file}"\n')
    process = subprocess.Popen(
        [
            TAGDNS, "serve", "--config", str(config), "--source", str(source),
            "--view", "us-east-1", "--listen", "127.0.0.1:0", "--upstream", "none",
            "--cache", "none",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        yield hosts, dnsmasq_file, source
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_agent_writes_block_and_dnsmasq_file_and_follows_new_documents(
    agent_with_hosts: tuple[Path, Path, Path],
) -> None:
    hosts, dnsmasq_file, source = agent_with_hosts
    assert _wait_for(lambda: b"# BEGIN tagdns" in hosts.read_bytes())
    text = hosts.read_text()
    assert text.startswith("127.0.0.1 localhost\n# my own line\n10.9.9.9 keepme\n")
    assert "10.0.1.10 web1.internal web1\n" in text
    assert "34.240.0.5 db\n" in text  # remote: bare name, public address
    assert oct(hosts.stat().st_mode & 0o777) == oct(0o640)
    assert _wait_for(dnsmasq_file.exists)
    assert "10.0.1.10 web1.internal web1" in dnsmasq_file.read_text()

    document = json.loads(source.read_text())
    document["serial"] += 1
    for host in document["hosts"]:
        if host["name"] == "web1":
            host["private_ipv4"] = "10.0.1.77"
    temporary = source.with_suffix(".tmp")
    temporary.write_text(json.dumps(document))
    temporary.rename(source)
    assert _wait_for(lambda: "10.0.1.77 web1.internal web1\n" in hosts.read_text())
    assert "10.0.1.10 web1.internal web1\n" not in hosts.read_text()
    assert hosts.read_text().startswith("127.0.0.1 localhost\n# my own line\n10.9.9.9 keepme\n")


def test_sigterm_while_a_hosts_write_waits_for_its_lock_stops_at_once(tmp_path: Path) -> None:
    """Another writer holds the hosts directory's lock (up to 10 s may be waited): a
    SIGTERM meanwhile must end the wait, not leave the agent running after "stopped"."""
    etc = tmp_path / "etc"
    etc.mkdir()
    hosts = etc / "hosts"
    source = tmp_path / "mapping.json"
    source.write_bytes(EXAMPLE.read_bytes())
    config = tmp_path / "tagdns.toml"
    config.write_text(f'[hosts]\npath = "{hosts}"\n')
    agent = AgentProcess(
        tmp_path,
        "--config",
        str(config),
        serve_args=("--source", str(source), "--view", "us-east-1", "--upstream", "none"),
    )
    try:
        assert _wait_for(lambda: b"web1" in hosts.read_bytes() if hosts.exists() else False)
        lock = os.open(etc, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            document = json.loads(source.read_text())
            document["serial"] += 1
            for host in document["hosts"]:
                if host["name"] == "web1":
                    host["private_ipv4"] = "10.0.1.77"
            source.with_suffix(".tmp").write_text(json.dumps(document))
            source.with_suffix(".tmp").rename(source)
            query = header(0x7777, flags=0) + question("web1")
            assert _wait_for(
                lambda: (
                    socket.inet_aton("10.0.1.77")
                    in (udp_exchange(agent.host, agent.port, query) or b"")
                )
            ), "the new document is served before its hosts write"
            time.sleep(0.3)  # the hosts write is now waiting for the lock
            started = time.monotonic()
            agent.process.send_signal(signal.SIGTERM)
            code = agent.process.wait(timeout=15)
            took = time.monotonic() - started
        finally:
            os.close(lock)
    finally:
        agent.kill()
    assert code == 0
    assert took < 3, f"stopped {took:.1f} s after SIGTERM"
    log = agent.stderr
    assert "Traceback" not in log
    assert "10.0.1.77" not in hosts.read_text()
