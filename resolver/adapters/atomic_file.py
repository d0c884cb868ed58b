"""Replacing a file so that a crash at any moment leaves the old or the new content.

Temp file in the same directory, fsync, rename over the target, fsync the
directory: the sequence every durable writer needs, kept in one place.

Some targets cannot be renamed over: a file bind-mounted on its own (Docker and
Kubernetes mount ``/etc/hosts`` that way) answers EBUSY or EXDEV, and under a
read-only root file system the temp file cannot even be created (EROFS). With
``in_place_fallback`` such a target is rewritten in place instead: space for a
longer content reserved first, one write of the whole content, a truncate, an
fsync, and the old content written back if any of it fails (a full disk must
not leave half a file). That is the best a mount point allows, but it is not
crash-atomic; callers that can have two writers must hold a lock.
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    position = 0
    while position < len(view):
        position += os.pwrite(fd, view[position:], position)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    position = 0
    while chunk := os.pread(fd, 1 << 20, position):
        chunks.append(chunk)
        position += len(chunk)
    return b"".join(chunks)


_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})


def _reserve(fd: int, old_length: int, new_length: int) -> None:
    """Allocate the blocks a longer content needs before any byte of the old is overwritten.

    Without this a full disk stops the write part way, and the file is left half
    new: the lines after the managed block gone, BEGIN without END. Where the
    file system cannot reserve (EOPNOTSUPP), the write goes ahead and a failure
    is undone from memory instead (``write_in_place``).
    """
    try:
        os.posix_fallocate(fd, old_length, new_length - old_length)
    except OSError as exc:
        if exc.errno in _NO_FALLOCATE:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, old_length)  # whatever part of the range did get allocated
        raise


def write_in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path``'s content without replacing its inode (owner and mode stay).

    A failure leaves the old content: the space for a longer content is reserved
    first, and a write that fails anyway is undone by writing the old bytes back
    (they fit in the blocks they came from). Only if that fails too is the file
    left damaged, and the OSError says so.
    """
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        old = _read_all(fd)
        if len(data) > len(old):
            _reserve(fd, len(old), len(data))
        try:
            _write_all(fd, data)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        except OSError as exc:
            try:
                _write_all(fd, old)
                os.ftruncate(fd, len(old))
                os.fsync(fd)
            except OSError as undo:
                raise OSError(
                    exc.errno,
                    f"{exc.strerror or exc}; putting the old content back failed too "
                    f"({undo.strerror or undo}), so the file is damaged: restore it by hand",
                ) from exc
            raise
    finally:
        os.close(fd)


class MetadataNotKept(OSError):
    """An extended attribute of the old file could not be given to the new one."""


_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA})


def copy_xattrs(source: Path, fd: int) -> None:
    """Give the file open at ``fd`` every extended attribute ``source`` has.

    A rename replaces the inode, and with it a SELinux label (security.selinux:
    /etc/hosts is net_conf_t, a new file in /etc would be etc_t), a POSIX ACL
    (system.posix_acl_access) or user.* attributes. ``source`` is followed if it
    is a symbolic link, as the writer follows it. An attribute that cannot be set
    raises MetadataNotKept, so the caller can leave the old file in place rather
    than swap in one that lost its label.
    """
    try:
        names = os.listxattr(source)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return  # the file system keeps none
        raise
    for name in names:
        try:
            value = os.getxattr(source, name)
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                continue  # removed meanwhile
            raise
        try:
            os.setxattr(fd, name, value)
        except OSError as exc:
            raise MetadataNotKept(
                exc.errno,
                f"cannot keep its extended attribute {name}: {exc.strerror or exc}",
            ) from None


def write_atomically(
    path: Path,
    data: bytes,
    mode: int = 0o644,
    *,
    keep_metadata: bool = False,
    in_place_fallback: bool = False,
) -> WriteMethod:
    """Write ``data`` to ``path`` atomically; raises OSError on any failure.

    ``keep_metadata``: an existing target's owner, mode and extended attributes
    (SELinux label, ACL) are given to the new file (``mode`` then only applies to
    a new file); one that cannot be kept raises MetadataNotKept, the target
    untouched. ``in_place_fallback``: a
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
            if owner is not None:  # the target exists
                copy_xattrs(path, handle.fileno())
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
