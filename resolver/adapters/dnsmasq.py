"""Telling a running dnsmasq to re-read its addn-hosts files (SIGHUP), and nobody else.

The pid comes from dnsmasq's pidfile, which tagdns does not own, so it is
checked before any signal goes out: a positive decimal integer, a live process
whose ``/proc/PID/comm`` is ``dnsmasq``. The signal travels through a pidfd
opened before that check, so a pid recycled in between gets nothing. A live
process whose comm cannot be read (/proc mounted hidepid, ProtectProc=invisible)
is an error, not "not running": it cannot be told from anything else.

A missing pidfile or a pid with no process means dnsmasq is not running: not an
error (it reads the file when it starts). Anything else is a HostsFileError of
one line naming the pidfile.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from resolver.errors import HostsFileError

PROC = Path("/proc")
_PID = re.compile(rb"[0-9]{1,10}\Z")
_MAX_PIDFILE_BYTES = 64
_PID_MAX = 4_194_304  # Linux's upper bound for pid_max
DNSMASQ_COMM = "dnsmasq"


@dataclass(frozen=True)
class Reload:
    """The outcome of ``reload_dnsmasq``."""

    pid: int | None
    """The pid signalled; None when dnsmasq is not running."""
    message: str


def read_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile``; None when the file does not exist."""
    try:
        with pidfile.open("rb") as handle:
            raw = handle.read(_MAX_PIDFILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise HostsFileError(f"{pidfile}: is a directory, not a pidfile") from None
    except OSError as exc:
        raise HostsFileError(f"{pidfile}: cannot read: {exc.strerror or exc}") from None
    text = raw.strip()
    if len(raw) > _MAX_PIDFILE_BYTES or not _PID.match(text):
        shown = raw[:20].decode("ascii", "replace")
        raise HostsFileError(f"{pidfile}: expected a process id, found {shown!r}")
    pid = int(text)
    if not 0 < pid <= _PID_MAX:
        raise HostsFileError(f"{pidfile}: {pid} is not a valid process id")
    return pid


def process_name(pid: int) -> str | None:
    """``/proc/PID/comm`` without its newline; None when it cannot be read.

    None is ambiguous: no such process, or one that /proc hides (hidepid,
    systemd's ProtectProc=invisible) or will not show (permission denied).
    ``process_exists`` tells these apart.
    """
    try:
        return (PROC / str(pid) / "comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def process_exists(pid: int, pidfd: int = -1) -> bool:
    """Whether ``pid`` is alive, asked without /proc (which may hide it).

    A pidfd answers for the very process checked (signal 0 through it); without
    one, kill(pid, 0): EPERM means it exists but belongs to someone else.
    """
    try:
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, 0)
        else:
            os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (None: no such process); -1 where pidfds are unsupported."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):
        return -1


def reload_dnsmasq(pidfile: Path) -> Reload:
    """SIGHUP the dnsmasq named by ``pidfile``, after checking it is one."""
    pid = read_pid(pidfile)
    not_running = Reload(None, f"dnsmasq is not running ({pidfile}): it reads the file at start")
    if pid is None:
        return Reload(None, f"dnsmasq is not running (no {pidfile}): it reads the file at start")
    pidfd = _open_pidfd(pid)
    if pidfd is None:
        return not_running
    try:
        name = process_name(pid)
        if name is None:
            if not process_exists(pid, pidfd):
                return not_running
            # Alive but unnamed: signalling it could hit anything, and calling it
            # "not running" would leave dnsmasq serving old names.
            raise HostsFileError(
                f"{pidfile}: pid {pid} is running but cannot be identified as {DNSMASQ_COMM} "
                f"({PROC}/{pid}/comm is hidden or unreadable: /proc mounted with hidepid, "
                "or systemd's ProtectProc=invisible?); not signalling it"
            )
        if name != DNSMASQ_COMM:
            raise HostsFileError(
                f"{pidfile}: pid {pid} is {name!r}, not {DNSMASQ_COMM}; not signalling it "
                "(stale pidfile?)"
            )
        try:
            if pidfd >= 0:
                signal.pidfd_send_signal(pidfd, signal.SIGHUP)
            else:
                os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return not_running
        except PermissionError:
            raise HostsFileError(
                f"{pidfile}: cannot signal dnsmasq (pid {pid}): permission denied"
            ) from None
        except OSError as exc:
            raise HostsFileError(
                f"{pidfile}: cannot signal dnsmasq (pid {pid}): {exc.strerror or exc}"
            ) from None
    finally:
        if pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(pidfd)
    return Reload(pid, f"sent SIGHUP to dnsmasq (pid {pid})")
