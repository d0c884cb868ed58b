"""Updating a hosts file (or the dnsmasq addn-hosts file) safely.

``update_file`` reads the target, asks a pure function for the new bytes, and
writes only when they differ, all under an exclusive lock so two tagdns writers
never interleave (the lock is an ``flock`` on the target's directory: it covers
a target that does not exist yet and one whose inode a rename replaces).

The write is resolver.adapters.atomic_file's: temp file in the same directory,
fsync, rename, directory fsync, with owner, mode and extended attributes
(SELinux label, ACL) of the old file kept; a bind-mounted target (EBUSY/EXDEV
on rename, as /etc/hosts in a container) is rewritten in place under the same
lock. Every failure is a HostsFileError of
one line naming the file; the file is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from resolver.adapters.atomic_file import MetadataNotKept, WriteMethod, write_atomically
from resolver.errors import HostsFileError

MAX_HOSTS_BYTES = 64 * 1024 * 1024
LOCK_TIMEOUT = 10.0
_LOCK_POLL = 0.02


@dataclass(frozen=True)
class FileUpdate:
    """What ``update_file`` did."""

    path: Path
    changed: bool
    method: WriteMethod | None = None
    """How the new content was written; None when nothing was written."""
    size: int = 0


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


@contextlib.contextmanager
def directory_lock(
    directory: Path,
    shown: Path,
    timeout: float = LOCK_TIMEOUT,
    *,
    stop: threading.Event | None = None,
) -> Iterator[None]:
    """Hold an exclusive flock on ``directory``; HostsFileError naming ``shown`` on failure.

    ``stop`` ends the wait early: a stopping agent must not sit out another writer's
    lock for up to ``timeout`` (a write already under way is finished, never cut).
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise HostsFileError(f"{shown}: directory {directory} does not exist") from None
    except NotADirectoryError:
        raise HostsFileError(f"{shown}: {directory} is not a directory") from None
    except OSError as exc:
        reason = _reason(exc)
        raise HostsFileError(f"{shown}: cannot open directory {directory}: {reason}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise HostsFileError(
                        f"{shown}: another writer has held the lock on {directory} "
                        f"for {timeout:g} s; giving up"
                    ) from None
                if stop is None:
                    time.sleep(_LOCK_POLL)
                elif stop.wait(_LOCK_POLL):
                    raise HostsFileError(
                        f"{shown}: not written: stopping while another writer holds "
                        f"the lock on {directory}"
                    ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def read_existing(path: Path, shown: Path) -> bytes | None:
    """The file's bytes, None when it does not exist; HostsFileError when it is unusable."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HostsFileError(f"{shown}: cannot read: {_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise HostsFileError(f"{shown}: is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise HostsFileError(f"{shown}: not a regular file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_HOSTS_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HostsFileError(f"{shown}: cannot read: {_reason(exc)}") from None
    if len(data) > MAX_HOSTS_BYTES:
        raise HostsFileError(f"{shown}: larger than {MAX_HOSTS_BYTES} bytes; not touching it")
    return data


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Temp files a killed writer left behind (under the lock no writer is active)."""
    pattern = re.compile(re.escape(f".{name}.") + r"[A-Za-z0-9_]{8}\.tmp\Z")
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if pattern.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def update_file(
    path: Path,
    render: Callable[[bytes | None], bytes],
    *,
    stop: threading.Event | None = None,
) -> FileUpdate:
    """Replace ``path``'s content with ``render(current)`` when that differs.

    ``current`` is None when the file does not exist (it is then created, mode
    0644). A symbolic link is followed: the file it points at is updated and the
    link stays. ``render`` may raise HostsFileError (a broken managed block), in
    which case nothing is written. ``stop`` abandons a wait for the lock.
    """
    target = Path(os.path.realpath(path))
    directory = target.parent
    with directory_lock(directory, path, stop=stop):
        current = read_existing(target, path)
        new = render(current)
        if new == current:
            return FileUpdate(path, changed=False, size=len(new))
        if current is not None and not os.access(target, os.W_OK):
            reason = "read-only file system" if _read_only_fs(target) else "permission denied"
            raise HostsFileError(f"{path}: not writable: {reason}")
        _remove_stale_temps(directory, target.name)
        try:
            method = write_atomically(target, new, keep_metadata=True, in_place_fallback=True)
        except MetadataNotKept as exc:
            raise HostsFileError(
                f"{path}: cannot write: {exc.strerror}; the file is left as it was"
            ) from None
        except OSError as exc:
            if isinstance(exc, PermissionError) and current is not None:
                raise HostsFileError(
                    f"{path}: cannot write: {_reason(exc)} (the directory {directory} must be "
                    "writable, and only root can keep another user's ownership)"
                ) from None
            # Not the temporary file's name: it is random, and an error repeated at every
            # poll would read as a new one each time (logged, and a new metrics label).
            beside = exc.filename is not None and Path(exc.filename) != target
            creating = f" (creating a temporary file in {directory})" if beside else ""
            raise HostsFileError(f"{path}: cannot write: {_reason(exc)}{creating}") from None
    return FileUpdate(path, changed=True, method=method, size=len(new))


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
