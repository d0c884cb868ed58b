"""Real mounts for the tests that need a full disk or a read-only file system.

A tmpfs gives a real ENOSPC or EROFS, which no amount of patching reproduces
faithfully. Mounting needs root (or CAP_SYS_ADMIN): without it the test is
skipped, saying why.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise OSError(result.stderr.strip() or f"mount {' '.join(args)} failed")


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` with ``options`` (``size=8k``, ``size=1m,ro``)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", options, "tmpfs", str(path))
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {exc}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    """Make a mounted ``path`` ``ro`` or ``rw``."""
    _mount("-o", f"remount,{mode}", str(path))
