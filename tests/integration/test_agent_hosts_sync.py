"""The agent keeps [hosts] files in sync with each accepted document."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
