"""Writing measured tables into docs, and naming the revision they measured."""

from __future__ import annotations

import os
import shutil
import subprocess
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
