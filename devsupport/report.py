"""Writing measured tables into docs, and naming the revision they measured."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC_TITLE = "# Performance\n"


def write_marked_section(
    path: Path, begin: str, end: str, body: str, *, heading: str = "", new_file: str = DOC_TITLE
) -> None:
    """Replace what lies between ``begin`` and ``end`` in ``path``, keeping every other byte.

    The file is re-read now (other benchmarks write their own sections) and replaced
    atomically. A missing section is appended, after ``heading`` when given; a file
    with only one of the two markers is an error rather than a guess.
    """
    section = f"{begin}\n{body}{end}"
    text = path.read_text() if path.exists() else new_file
    first, last = text.find(begin), text.find(end)
    if first >= 0 and last > first:
        text = text[:first] + section + text[last + len(end) :]
    elif first >= 0 or last >= 0:
        raise SystemExit(f"{path}: only one of the markers {begin} and {end}")
    else:
        text = text.rstrip("\n") + "\n\n" + heading + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def revision() -> str:
    """The commit measured, and whether the engine had uncommitted changes."""
    git = shutil.which("git")
    if git is None:
        return "an unknown revision"

    def output(*command: str) -> str:
        done = subprocess.run(
            [git, *command], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    head = output("rev-parse", "--short", "HEAD")
    dirty = output("status", "--porcelain", "--", "resolver")
    suffix = " (with uncommitted changes in resolver/)" if dirty else ""
    return f"commit `{head or 'unknown'}`{suffix}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as a report states the machine's state."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--work`` and ``--no-write``, as every benchmark that writes a section takes them."""
    parser.add_argument("--work", type=Path, help="keep files and logs here (debugging)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs alone")


@contextlib.contextmanager
def work_directory(path: Path | None, prefix: str) -> Iterator[Path]:
    """``path`` (made if missing, kept afterwards), or a temporary directory removed after."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as temp:
        yield Path(temp)


def publish(
    body: str, path: Path, begin: str, end: str, *, write: bool, new_file: str = DOC_TITLE
) -> None:
    """Print a benchmark's section and, when ``write``, put it into ``path``."""
    print(body)
    if write:
        write_marked_section(path, begin, end, body, new_file=new_file)
        print(f"written to {os.path.relpath(path, ROOT)}", file=sys.stderr)
