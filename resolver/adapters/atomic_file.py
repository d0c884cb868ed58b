"""Replacing a file so that a crash at any moment leaves the old or the new content.

Temp file in the same directory, fsync, rename over the target, fsync the
directory: the sequence every durable writer needs, kept in one place.

Some targets cannot be renamed over: a file bind-mounted on its own (Docker and
Kubernetes mount ``/etc/hosts`` that way) answers EBUSY or EXDEV, and under a
read-only root file system the temp file cannot even be created (EROFS). With
``in_place_fallback`` such a target is rewritten in place instead: one write of
the whole content, a truncate, an fsync. That is the best a mount point allows,
but it is not crash-atomic; callers that can have two writers must hold a lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Literal

WriteMethod = Literal["replaced", "in place"]

_RENAME_REFUSED = frozenset({errno.EBUSY, errno.EXDEV})


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed writer of ``path`` left behind (its only writer calls this).

    They are named as ``write_atomically`` makes them; anything else is left alone.
    """
    pattern = re.compile(re.escape(f".{path.name}.") + r"[A-Za-z0-9_]{8}\.tmp\Z")
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if pattern.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def write_in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path``'s content without replacing its inode (owner and mode stay)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        view = memoryview(data)
        position = 0
        while position < len(view):
            position += os.pwrite(fd, view[position:], position)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path,
    data: bytes,
    mode: int = 0o644,
    *,
    keep_metadata: bool = False,
    in_place_fallback: bool = False,
) -> WriteMethod:
    """Write ``data`` to ``path`` atomically; raises OSError on any failure.

    ``keep_metadata``: an existing target's owner and mode are given to the new
    file (``mode`` then only applies to a new file). ``in_place_fallback``: a
    target that cannot be renamed over is rewritten in place (see the module
    docstring). Returns how the content got there.
    """
    directory = path.parent
    owner: tuple[int, int] | None = None
    if keep_metadata:
        with contextlib.suppress(FileNotFoundError):
            current = os.stat(path)
            mode = stat.S_IMODE(current.st_mode)
            owner = (current.st_uid, current.st_gid)
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        if in_place_fallback and exc.errno == errno.EROFS and path.is_file():
            # The directory is read-only but the file is another mount: write through it.
            write_in_place(path, data)
            return "in place"
        raise
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            created = os.fstat(handle.fileno())
            if owner is not None and owner != (created.st_uid, created.st_gid):
                os.fchown(handle.fileno(), *owner)
            os.fchmod(handle.fileno(), mode)  # after chown, which clears set-id bits
            os.fsync(handle.fileno())
        try:
            os.replace(temp, path)
        except OSError as exc:
            if not (in_place_fallback and exc.errno in _RENAME_REFUSED):
                raise
            temp.unlink()
            write_in_place(path, data)
            return "in place"
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_directory(directory)
    return "replaced"
