"""Every input the fuzzers ever flagged, every seed, and a short fuzz run, in the suite.

``fuzz/crashers/TARGET/`` keeps each input that once failed a target (see its
README for what each found); they must all pass now. The seed corpus must pass
too (a seed that fails means a target or the code regressed), and a short
deterministic run of the pure-Python engine keeps the harnesses themselves
working. The long runs are ``scripts/fuzz``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from dnslib import DNSRecord

from fuzz.make_corpus import opt_first_reply
from fuzz.run import run_python
from fuzz.targets import CORPUS_DIR, CRASHERS_DIR, TARGETS
from resolver.core.cache import render_answer
from resolver.core.upstream_reply import parse_reply

CRASHERS = sorted(p for p in CRASHERS_DIR.glob("*/*") if p.is_file() and p.name != "README.md")
SMOKE_RUNS = 1500


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name[:18]}"


@pytest.mark.parametrize("path", CRASHERS, ids=_label)
def test_crasher_stays_fixed(path: Path) -> None:
    TARGETS[path.parent.name].check(path.read_bytes())


def test_every_target_has_a_crashers_directory_or_none_found() -> None:
    for directory in CRASHERS_DIR.iterdir():
        if directory.is_dir():
            assert directory.name in TARGETS, f"crashers for an unknown target: {directory}"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seed_corpus_passes(name: str) -> None:
    seeds = sorted((CORPUS_DIR / name).iterdir())
    assert len(seeds) >= 10, f"the {name} corpus is nearly empty: run python -m fuzz.make_corpus"
    for seed in seeds:
        TARGETS[name].check(seed.read_bytes())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_short_fuzz_run_finds_nothing(name: str, tmp_path: Path) -> None:
    stats = run_python(name, SMOKE_RUNS, max_time=0, seed=20261125)
    assert stats.executions == SMOKE_RUNS
    assert stats.crashes == [], f"new crasher(s) saved: {stats.crashes}"


def test_upstream_opt_before_glue_reaches_the_client_well_formed() -> None:
    """The first crasher of the reply target, as a real reply: OPT first, then glue.

    The second glue record's owner is a pointer to the first's; cutting the OPT out
    from between them used to aim it 11 bytes too far, and the client got a message
    it could not parse. Now the records after the upstream's OPT are dropped.
    """
    reply = opt_first_reply()
    assert len(DNSRecord.parse(reply).ar) == 3  # OPT, A, AAAA: fine as the upstream sent it
    end = reply.index(b"\x00", 12) + 5
    question = reply[12:end]
    answer = parse_reply(reply, reply[:2], question[:-4].lower() + question[-4:])
    assert answer is not None
    assert (answer.an, answer.ns, answer.ar) == (1, 0, 0)
    for variant in (0, 1, 2):
        out = render_answer(
            answer,
            answer.sections,
            qid=b"\x00\x07",
            client_flags=0x0100,
            question=question,
            variant=variant,
            limit=None,
        )
        parsed = DNSRecord.parse(out)
        assert [str(rr.rdata) for rr in parsed.rr] == ["ns.other.org."]
        assert struct.unpack("!H", out[10:12])[0] == (1 if variant else 0)
