"""Fuzz driver: ``python -m fuzz.run [TARGET ...] [--runs N] [--max-time S]`` (or ``scripts/fuzz``).

Each target runs in its own process under atheris (libFuzzer, coverage-guided on
``resolver``'s code, seeded from ``fuzz/corpus/TARGET``, with the target's
format-aware mutator mixed into libFuzzer's own). Without atheris, or with
``--engine python``, a pure-Python mutation loop over the same corpus runs
instead. Either way the driver prints executions, seconds and exec/s per
target, saves any input that raised to ``fuzz/crashers/TARGET/`` and exits 1
if there was one. ``--record`` writes the table into docs/reliability.md.

``python -m fuzz.run --replay TARGET FILE...`` re-runs saved inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import os
import platform
import random
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
WORK_DIR = FUZZ_DIR / "work"
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- fuzz:begin -->", "<!-- fuzz:end -->"
TARGET_NAMES = ("respond", "reply", "document", "hosts", "reload")


@dataclasses.dataclass
class Stats:
    target: str
    engine: str
    executions: int = 0
    seconds: float = 0.0
    crashes: list[str] = dataclasses.field(default_factory=list)
    peak_rss_mb: int | None = None
    corpus_seeds: int = 0

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds > 0 else 0.0


def _atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _seeds(target: str) -> list[bytes]:
    directory = FUZZ_DIR / "corpus" / target
    return [p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()]


def _save_crash(target: str, data: bytes) -> Path:
    directory = FUZZ_DIR / "crashers" / target
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"crash-{hashlib.sha1(data).hexdigest()}"  # noqa: S324 - a name
    path.write_bytes(data)
    return path


# -- the pure-Python engine ------------------------------------------------------------------


def run_python(target_name: str, runs: int, max_time: float, seed: int) -> Stats:
    """Random mutations of the seed corpus, in this process; no coverage feedback."""
    from fuzz import mutate
    from fuzz.targets import TARGETS

    target = TARGETS[target_name]
    corpus = _seeds(target_name) or [b""]
    stats = Stats(target_name, "python", corpus_seeds=len(corpus))
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + max_time if max_time > 0 else float("inf")
    inputs = iter(corpus)  # every seed once, as it is, then mutations
    for count in range(1, runs + 1):
        data = next(inputs, None)
        if data is None:
            data = rng.choice(corpus)
            for _ in range(rng.randint(1, 3)):
                if target.structural is not None and rng.random() < 0.4:
                    data = target.structural(data, rng)
                else:
                    data = mutate.havoc(
                        data, rng, tokens=target.tokens, corpus=corpus, max_len=target.max_len
                    )
            data = data[: target.max_len]
        try:
            target.check(data)
        except Exception:
            path = _save_crash(target_name, data)
            stats.crashes.append(str(path.relative_to(ROOT)))
            print(f"[{target_name}] crash saved to {path}", file=sys.stderr)
            traceback.print_exc()
        stats.executions = count
        if count % 1024 == 0 and time.monotonic() >= deadline:
            break
    stats.seconds = time.monotonic() - started
    return stats


# -- atheris, one child process per target --------------------------------------------------


def _dictionary(target_name: str, tokens: tuple[bytes, ...]) -> Path:
    path = WORK_DIR / f"{target_name}.dict"
    lines = ['"' + "".join(f"\\x{b:02x}" for b in token) + '"' for token in tokens]
    path.write_text("\n".join(lines) + "\n")
    return path


def child(target_name: str, libfuzzer_args: list[str]) -> None:
    """Run atheris on one target in this process (called by ``run_atheris``)."""
    import atheris

    with atheris.instrument_imports(include=["resolver"]):
        from fuzz.targets import TARGETS

    target = TARGETS[target_name]
    structural = target.structural

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if structural is not None and rng.random() < 0.3:
            return structural(data, rng)[:max_size]
        mutated: bytes = atheris.Mutate(data, max_size)
        return mutated

    atheris.Setup([sys.argv[0], *libfuzzer_args], target.check, custom_mutator=mutator)
    atheris.Fuzz()


_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def run_atheris(target_name: str, runs: int, max_time: float, seed: int) -> Stats:
    from fuzz.targets import TARGETS

    target = TARGETS[target_name]
    work = WORK_DIR / target_name
    work.mkdir(parents=True, exist_ok=True)
    crashers = FUZZ_DIR / "crashers" / target_name
    crashers.mkdir(parents=True, exist_ok=True)
    log = WORK_DIR / f"{target_name}.log"
    args = [
        str(work),
        str(target.corpus),
        f"-runs={runs}",
        f"-max_len={target.max_len}",
        f"-seed={seed}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-dict={_dictionary(target_name, target.tokens)}",
        f"-artifact_prefix={crashers}/",
    ]
    if max_time > 0:
        args.append(f"-max_total_time={int(max_time)}")
    stats = Stats(target_name, "atheris", corpus_seeds=len(_seeds(target_name)))
    started = time.monotonic()
    with log.open("w") as handle:
        code = subprocess.call(
            [sys.executable, "-m", "fuzz.run", "--child", target_name, "--", *args],
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    wall = time.monotonic() - started
    text = log.read_text(errors="replace")
    found = dict((k, int(v)) for k, v in _STAT.findall(text))
    done = _DONE.search(text)
    stats.executions = found.get("number_of_executed_units", int(done.group(1)) if done else 0)
    # libFuzzer's own clock, not the start-up and instrumentation before it.
    stats.seconds = float(done.group(2)) if done and int(done.group(2)) > 0 else wall
    if found.get("average_exec_per_sec") and stats.executions:
        stats.seconds = stats.executions / found["average_exec_per_sec"]
    stats.peak_rss_mb = found.get("peak_rss_mb")
    artifacts = _ARTIFACT.findall(text)
    if code != 0 or artifacts:
        stats.crashes = [str(Path(a).resolve().relative_to(ROOT)) for a in artifacts] or [
            f"exit code {code}, see {log.relative_to(ROOT)}"
        ]
        tail = text[text.find("=== Uncaught") :] if "=== Uncaught" in text else text[-3000:]
        print(f"[{target_name}] FAILED (exit {code}); log {log}\n{tail[:6000]}", file=sys.stderr)
    return stats


# -- replay and reporting --------------------------------------------------------------------


def replay(target_name: str, files: list[str]) -> int:
    from fuzz.targets import TARGETS

    failed = 0
    for name in files:
        try:
            TARGETS[target_name].check(Path(name).read_bytes())
            print(f"{name}: ok")
        except Exception:
            failed += 1
            print(f"{name}: FAILED")
            traceback.print_exc()
    return 1 if failed else 0


def table(results: list[Stats], command: str) -> str:
    rows = [
        "| target | function under test | engine | seeds | executions | seconds | exec/s "
        "| failures |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    functions = {
        "respond": "`Responder.respond` (wire in, reply out)",
        "reply": "`parse_reply`, cache, `render_answer`",
        "document": "`parse_document` and the canonical reader to view, zone, answers, hosts text",
        "hosts": "`merge_hosts` (managed block)",
        "reload": "`load_document` after a load: rebuild equals full load",
    }
    for s in results:
        rows.append(
            f"| {s.target} | {functions.get(s.target, '')} | {s.engine} | {s.corpus_seeds} "
            f"| {s.executions:,} | {s.seconds:.0f} | {s.rate:,.0f} | {len(s.crashes)} |"
        )
    total = sum(s.executions for s in results)
    crashes = sum(len(s.crashes) for s in results)
    today = datetime.date.today().isoformat()
    return (
        "\n".join(rows)
        + f"\n\nTotal: **{total:,} inputs, {crashes} failures** (a failure is an unhandled "
        + "exception or a broken oracle; each input is saved in `fuzz/crashers/`). "
        + f"Reproduce: `{command}`\n\nMeasured: {today}, {os.cpu_count()} cores (shared), "
        + f"Python {platform.python_version()}.\n"
    )


def record(text: str) -> None:
    content = DOC.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    DOC.write_text(content[:start] + "\n" + text + content[end:])
    print(f"recorded in {DOC.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets", nargs="*", help=f"any of {', '.join(TARGET_NAMES)} (default: all)"
    )
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--max-time", type=float, default=0, help="seconds per target (0: none)")
    parser.add_argument("--engine", choices=["auto", "atheris", "python"], default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="write the table to docs")
    parser.add_argument("--replay", nargs="+", metavar=("TARGET", "FILE"))
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGET_NAMES]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r} (known: {', '.join(TARGET_NAMES)})")
    if args.replay:
        return replay(args.replay[0], args.replay[1:])
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _atheris_available() else "python"
        if engine == "python":
            print("atheris not installed: using the pure-Python engine", file=sys.stderr)
    WORK_DIR.mkdir(exist_ok=True)
    results: list[Stats] = []
    for name in args.targets or TARGET_NAMES:
        print(f"== fuzz {name} ({engine}, {args.runs:,} runs)", file=sys.stderr, flush=True)
        runner = run_atheris if engine == "atheris" else run_python
        stats = runner(name, args.runs, args.max_time, args.seed)
        results.append(stats)
        print(
            f"{name}: {stats.executions:,} executions in {stats.seconds:.1f} s "
            f"({stats.rate:,.0f}/s), {len(stats.crashes)} failures",
            flush=True,
        )
    command = "scripts/fuzz" + "".join(f" {a}" for a in argv if a not in ("--record",))
    text = table(results, command.strip())
    print("\n" + text)
    if args.record:
        with contextlib.suppress(ValueError, FileNotFoundError):
            record(text)
    return 1 if any(s.crashes for s in results) else 0


if __name__ == "__main__":
    sys.exit(main())
