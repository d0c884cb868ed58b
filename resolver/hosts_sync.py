"""Keeping ``[hosts]`` files in sync with the agent's view.

After every accepted document the agent calls ``HostsSync.apply(view)``: the
managed block of ``[hosts] path`` is merged, the dnsmasq ``addn-hosts`` file
``[hosts] dnsmasq_file`` is rewritten, and dnsmasq gets a SIGHUP (pid from
``[hosts] dnsmasq_pidfile``) when its file changed. Unchanged content writes
nothing and signals nobody; a failed signal is noted in the file, so that the
next write signals again (``sync_dnsmasq``). ``apply`` blocks on file I/O and a lock (up to
LOCK_TIMEOUT seconds): call it from a worker thread in async code.
"""

from __future__ import annotations

import threading
from pathlib import Path

from resolver.adapters.dnsmasq import reload_dnsmasq
from resolver.adapters.hosts_file import FileUpdate, update_file
from resolver.config import HostsConfig, same_file
from resolver.core.hosts_merge import merge_hosts, replace_dnsmasq
from resolver.core.views import View
from resolver.errors import ConfigError, HostsFileError


def write_hosts(path: Path, view: View, *, stop: threading.Event | None = None) -> FileUpdate:
    """Merge the view into the managed block of the hosts file at ``path``."""
    return update_file(path, lambda current: merge_hosts(current, view, str(path)), stop=stop)


def write_dnsmasq(
    path: Path, view: View, *, unsignalled: bool = False, stop: threading.Event | None = None
) -> FileUpdate:
    """Write the view as the whole dnsmasq addn-hosts file at ``path``; an existing file
    tagdns did not write is refused (``replace_dnsmasq``), never overwritten."""
    return update_file(
        path,
        lambda current: replace_dnsmasq(current, view, str(path), unsignalled=unsignalled),
        stop=stop,
    )


def sync_dnsmasq(
    path: Path, view: View, pidfile: Path | None, *, stop: threading.Event | None = None
) -> list[str]:
    """Write dnsmasq's file and, when it changed, SIGHUP the dnsmasq of ``pidfile``;
    what was done, one line each.

    A failed signal would leave dnsmasq serving old names while the file, unchanged
    on the next run, asks for no signal. So the file is rewritten with a note
    (``UNSIGNALLED_NOTE``), and the next run, in this process or another, after a
    restart or not, finds it different and signals again. Raises HostsFileError.
    """
    update = write_dnsmasq(path, view, stop=stop)
    if not update.changed:
        return []
    done = [describe(update, "dnsmasq hosts file")]
    if pidfile is None:
        return done
    try:
        done.append(reload_dnsmasq(pidfile).message)
    except HostsFileError as failed:
        try:
            write_dnsmasq(path, view, unsignalled=True, stop=stop)
        except HostsFileError as marking:
            raise HostsFileError(f"{failed}; and noting it in the file failed: {marking}") from None
        raise HostsFileError(
            f"{failed}; {path} is noted so that the next run signals again"
        ) from None
    return done


class HostsSyncError(HostsFileError):
    """One or more ``[hosts]`` files failed; ``changes`` lists what did succeed."""

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes


def describe(update: FileUpdate, what: str) -> str:
    how = " in place (bind mount)" if update.method == "in place" else ""
    if not update.changed:
        return f"{update.path}: {what} unchanged"
    return f"{update.path}: {what} updated{how} ({update.size} bytes)"


class HostsSync:
    """The ``[hosts]`` section put to work; ``enabled`` is False when it names no file."""

    def __init__(self, config: HostsConfig, zone: str) -> None:
        if config.dnsmasq_pidfile and not config.dnsmasq_file:
            raise ConfigError("[hosts] dnsmasq_pidfile is set but dnsmasq_file is not")
        if config.path and config.dnsmasq_file and same_file(config.path, config.dnsmasq_file):
            raise ConfigError("[hosts] path and [hosts] dnsmasq_file name the same file")
        self.hosts_path = Path(config.path) if config.path else None
        self.dnsmasq_file = Path(config.dnsmasq_file) if config.dnsmasq_file else None
        self.dnsmasq_pidfile = Path(config.dnsmasq_pidfile) if config.dnsmasq_pidfile else None
        self.zone = zone
        self._stopping = threading.Event()

    def abandon_waits(self) -> None:
        """Give up any wait for a file's lock, now and from now on (the agent is stopping).

        Without it a SIGTERM while another writer holds a lock would leave the agent
        running up to LOCK_TIMEOUT seconds after it said "stopped".
        """
        self._stopping.set()

    @property
    def enabled(self) -> bool:
        return self.hosts_path is not None or self.dnsmasq_file is not None

    def apply(self, view: View) -> list[str]:
        """Bring every configured file in line with ``view``; what changed, one line each.

        An empty list means nothing needed writing. Each file is tried even when
        another fails; failures are raised together as one HostsSyncError line (a
        HostsFileError) whose ``changes`` holds what was done all the same.
        """
        if view.zone != self.zone:
            raise HostsFileError(f"view zone {view.zone!r} is not the configured {self.zone!r}")
        changes: list[str] = []
        errors: list[str] = []
        if self.hosts_path is not None:
            try:
                update = write_hosts(self.hosts_path, view, stop=self._stopping)
                if update.changed:
                    changes.append(describe(update, "managed block"))
            except HostsFileError as exc:
                errors.append(str(exc))
        if self.dnsmasq_file is not None:
            try:
                changes.extend(
                    sync_dnsmasq(self.dnsmasq_file, view, self.dnsmasq_pidfile, stop=self._stopping)
                )
            except HostsFileError as exc:
                errors.append(str(exc))
        if errors:
            raise HostsSyncError("; ".join(errors), changes)
        return changes
