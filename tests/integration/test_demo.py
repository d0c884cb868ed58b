"""``scripts/demo`` keeps working: the documented end-to-end loop, run as a user would run it.

The demo starts its own moto_server, dnsmasq and agent, checks every answer
itself and exits 0 only when all checks passed; this test runs the script and
reads its verdict. The demo cleans up after itself, so the test also checks
that nothing it started is left running.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo"
DNSMASQ = Path("/usr/sbin/dnsmasq")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("dig") is None or not (shutil.which("dnsmasq") or DNSMASQ.exists()),
        reason="scripts/demo needs dig and dnsmasq (scripts/test installs them)",
    ),
]


def _command_lines() -> list[str]:
    """Every running process's command line, arguments joined by spaces, with a trailing one."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue  # it exited while we looked
    return lines


def test_demo_runs_the_whole_loop_and_every_check_passes() -> None:
    completed = subprocess.run(
        ["bash", str(DEMO)], capture_output=True, text=True, timeout=90, check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "demo: PASS" in output, output
    assert not re.search(r"^FAIL ", output, re.MULTILINE), output
    passed = re.findall(r"^PASS  (.+?):", output, re.MULTILINE)
    # Every kind of answer the demo promises, before and after the tag change.
    for expected in (
        "web1.internal",
        "api",
        "db (only in eu-west-1",
        "db.internal (remote",
        "ip-10-0-0-99.ec2.internal",
        "db (moved",
        "db.internal (now local",
        "agent stops on SIGTERM",
    ):
        assert any(label.startswith(expected) for label in passed), (expected, output)

    # Nothing it started is still running. Its ports are in the transcript and make the
    # command lines unique (other tests may run agents and dnsmasqs of their own).
    moto_port = re.search(r"moto_server -H 127\.0\.0\.1 -p (\d+)", output)
    dnsmasq_port = re.search(r"--port=(\d+)", output)
    assert moto_port and dnsmasq_port, output
    started_here = (
        f"moto_server -H 127.0.0.1 -p {moto_port.group(1)} ",
        f"--port={dnsmasq_port.group(1)} ",
        f"--upstream 127.0.0.1:{dnsmasq_port.group(1)} ",
    )
    leftovers = [line for line in _command_lines() if any(p in line for p in started_here)]
    assert not leftovers, leftovers
