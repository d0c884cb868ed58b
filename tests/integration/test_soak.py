"""A short soak in the suite: the same harness as ``scripts/soak``, for 12 seconds.

The real agent under dnsperf and checked queries, document rewrites every
1.5 s (renames, in-place writes, SIGHUPs), a hostile upstream and hostile
packets. Every checked answer must match the document in force, owned names
must never go unanswered, and file descriptors must come back to their baseline.
The 10-minute run and its recorded figures are ``scripts/soak``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_short_soak_has_no_wrong_answers_and_flat_resources(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    qps = "300" if shutil.which("dnsperf") else "0"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--duration", "12",
        "--warmup", "3", "--reload-interval", "1.5", "--qps", qps, "--check-qps", "150",
        "--hostile-pps", "40", "--sample-interval", "1", "--json", str(out), "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert out.exists(), done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["failures"] == [], done.stdout + done.stderr
    tally = result["checker"]
    assert tally["wrong"] == 0 and tally["stale"] == 0 and tally["unanswered_owned"] == 0
    assert tally["checked"] > 900 and tally["tcp"] > 50
    assert result["reloads"] >= 5 and result["hostile_packets"] > 100
    assert result["fds_end"] <= result["fds_baseline"] + 1
    assert result["alive"] and result["tracebacks"] == 0
    assert done.returncode == 0, done.stdout + done.stderr
