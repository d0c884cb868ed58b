"""Watching a file source with watchdog, so an edited document is served at once.

Directories are watched, not the file: editors and deploy tools replace files by
rename, which a watch on the old inode would miss. The file read may sit behind
symlinks (a Kubernetes ConfigMap volume: ``mapping.json -> ..data/mapping.json``,
``..data -> ..2024_01_01``, swapped by renaming a new ``..data`` into place), so the
directory of every link in the chain and of the file it ends at is watched, and an
event on any of them counts. The chain is followed again after each such event,
since the file read moves with every swap.

Of the directories, only creations, renames, deletions and closes after writing
are asked of the kernel, not every write (IN_MODIFY) nor every open: they may hold
other busy files (a log written a line at a time, the agent's own reads), and each
event costs the watcher's threads Python work, under the GIL the serving loop
needs. A document is complete when its writer closes it or renames it into place,
so that is when a change is reported. (watchdog cannot watch the file alone for
writes: its file watch is one on the directory, neighbours and all.) A poll may
still meet a document half-written in place; ``settling()`` tells the poll when
it can leave a just-changed file alone, as its close will be reported. Observers
without close events (kqueue, polling: not Linux) are asked for writes in the
directories instead, and a write counts only after a quiet spell, so a slow
writer is not read half-way.

A watch can be lost: its directory removed or replaced (``mv dir dir.old; mv
dir.new dir`` leaves the kernel's watch on the old inode, with no event at all), or
missing when the agent starts. ``ensure()``, called at every poll, notices and
arms the watches again; a missing directory's nearest existing ancestor is watched
meanwhile, so its creation re-arms at once. Losing and regaining the watch is
logged once each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

log = logging.getLogger("tagdns.watch")

STRUCTURE_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]
"""Renames, creations and deletions: a file or link put in place, a directory replaced.
Alone, they are what an ancestor watched for a missing directory is asked for."""
WATCHED_EVENTS = [*STRUCTURE_EVENTS, FileClosedEvent]
"""What the kernel is asked to report (watchdog derives the inotify mask from it)."""
WITHOUT_CLOSE_EVENTS = [*STRUCTURE_EVENTS, FileModifiedEvent]
"""The same for observers that never report a close (kqueue, polling)."""
WRITE_QUIET = 1.0
"""Seconds without a write before a write counts, where no close tells it is done."""
WRITE_STALL = 5.0
"""Seconds after a file last changed that its writer may still be at it: a writer
stalled longer (or holding the file open for good) is read by the poll as ever."""
MAX_LINKS = 40
"""Symlinks followed before giving up, as the kernel does (ELOOP)."""
_NOT_CHANGES = frozenset({"opened", "closed_no_write"})
_FINISHED = frozenset({"moved", "closed"})
"""A rename onto the file, or the close after writing it: the new content is all there."""


@dataclass(frozen=True)
class Chain:
    """The symlinks followed from a path, and the file they end at (which may not exist).

    All are physical paths: their directories hold no symlink, so they are the paths
    the kernel names in the events of a watch on those directories.
    """

    links: tuple[str, ...]
    file: str

    @property
    def names(self) -> frozenset[str]:
        return frozenset((*self.links, self.file))

    @property
    def dirs(self) -> frozenset[str]:
        return frozenset(os.path.dirname(name) for name in self.names)


def resolve_chain(path: str) -> Chain:
    """Follow ``path`` one component at a time, noting every symlink met on the way.

    ``os.path.realpath`` gives only the end; the links matter too, as renaming a new
    one into place (``..data``) is how the file read changes.
    """
    parts = os.path.join(os.getcwd(), path).split("/")
    parts.reverse()  # a stack: the next component last
    current = "/"
    links: list[str] = []
    while parts:
        part = parts.pop()
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        try:
            content = os.readlink(candidate)
        except OSError:  # not a link, or not there (yet)
            current = candidate
            continue
        if len(links) == MAX_LINKS:
            current = candidate
            continue
        links.append(candidate)
        if content.startswith("/"):
            current = "/"
        parts.extend(reversed(content.split("/")))
    return Chain(tuple(links), current)


def _covers(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or one of its ancestors: moving it moves the directory."""
    return directory == path or directory.startswith(path.rstrip("/") + "/")


def _identity(directory: str) -> tuple[int, int]:
    info = os.stat(directory)
    return info.st_dev, info.st_ino


def _nearest_existing(directory: str) -> str:
    while not os.path.isdir(directory) and directory != "/":
        directory = os.path.dirname(directory)
    return directory


def _reports_closes(observer: BaseObserver) -> bool:
    """Only inotify tells when a writer closes the file."""
    return type(observer).__name__.startswith("Inotify")


_DIR = "dir"
_LOOKOUT = "lookout"
"""An ancestor watched only for a missing directory below it to appear."""


@dataclass(frozen=True)
class _Watch:
    watch: ObservedWatch
    identity: tuple[int, int]
    kind: str


class _ChainHandler(FileSystemEventHandler):
    def __init__(self, watcher: FileWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.watcher._event(event)


class FileWatcher:
    """Calls ``on_change(finished)`` (from watchdog's thread) whenever the target file changes.

    ``finished`` is True for a rename onto the file (or onto a link leading to it) or
    the close after a write; False (a write still under way, perhaps) asks the caller
    to wait for quiet. ``start()`` never fails for want of a directory to watch: it
    logs why, and ``ensure()`` tries again.
    """

    def __init__(
        self,
        path: str,
        on_change: Callable[[bool], None],
        observer: BaseObserver | None = None,
    ) -> None:
        self.target = os.path.abspath(path)
        self.on_change = on_change
        self.observer = observer if observer is not None else Observer()
        self.observer.daemon = True
        self._closes = _reports_closes(self.observer)
        self._handler = _ChainHandler(self)
        self._lock = threading.RLock()
        # Lock order: the observer's lock, then ours, in every thread that may take
        # both. Until watchdog 7.1.1 the observer holds its lock while it calls
        # ``_event``, which takes ours and may (re)schedule watches; ``ensure()``, from
        # the agent's poll, takes ours and schedules too. Taken the other way round,
        # the two threads would wait on each other for good, and the poll with them.
        self._observer_lock: contextlib.AbstractContextManager[object] = getattr(
            self.observer, "_lock", contextlib.nullcontext()
        )
        self._chain = resolve_chain(self.target)
        self._watches: dict[str, _Watch] = {}
        self._problem: str | None = None
        self._running = False
        self._quiet: threading.Timer | None = None

    @property
    def watching(self) -> bool:
        """Every directory that matters is watched."""
        return self._running and self._problem is None

    def settling(self) -> bool:
        """The file changed within ``WRITE_STALL`` and its close or rename will be
        reported: a poll can leave it alone rather than read it half-written.

        Only with close events (inotify) and every watch in place; anywhere else the
        poll is the only sure reader, and False says so.
        """
        with self._lock:
            if not (self._running and self._closes and self._problem is None):
                return False
            path = self._chain.file
        try:
            info = os.stat(path)
        except OSError:
            return False
        # The write's time, not the inode's (ctime): a rename or chmod is no write under way.
        return 0 <= time.time() - info.st_mtime < WRITE_STALL

    def start(self) -> None:
        self.observer.start()
        with self._observer_lock, self._lock:
            self._running = True
            self._arm(None)

    def ensure(self) -> bool:
        """Arm the watches again if one was lost or never set; True when all are in place.

        Cheap enough for every poll: a few ``readlink`` and ``stat`` calls when all is
        well. It is the only way to notice a watched directory renamed away, which
        raises no event.
        """
        with self._observer_lock, self._lock:
            if not self._running:
                return False
            reason = self._lost()
            if reason is not None:
                self._arm(reason)
            return self._problem is None

    def stop(self) -> None:
        with self._lock:
            self._running = False
            if self._quiet is not None:
                self._quiet.cancel()
        self.observer.stop()
        self.observer.join(timeout=2)

    # -- arming ----------------------------------------------------------------------

    def _wanted(self, chain: Chain) -> dict[str, str]:
        """Directory to watch -> what for (``_DIR`` or ``_LOOKOUT``)."""
        wanted: dict[str, str] = {}
        for directory in chain.dirs:
            if os.path.isdir(directory):
                wanted[directory] = _DIR
        for directory in chain.dirs:
            if directory not in wanted:
                wanted.setdefault(_nearest_existing(directory), _LOOKOUT)
        return wanted

    def _lost(self) -> str | None:
        """Why the watches in place no longer cover the chain; None when they do."""
        if self._problem is not None:
            return self._problem
        chain = resolve_chain(self.target)
        if chain != self._chain:
            return "its symlinks changed"
        if self._wanted(chain).keys() != self._watches.keys():
            return "a directory appeared or went"
        alive = {emitter.watch for emitter in self.observer.emitters if emitter.is_alive()}
        for directory, watched in self._watches.items():
            if watched.watch not in alive:
                return f"the watch on {directory} ended"
            try:
                if _identity(directory) != watched.identity:
                    return f"{directory} was replaced"
            except OSError:
                return f"{directory} went"
        return None

    def _arm(self, reason: str | None) -> None:
        """Follow the chain again and watch exactly the directories it needs now."""
        chain = resolve_chain(self.target)
        self._chain = chain
        wanted = self._wanted(chain)
        alive = {emitter.watch for emitter in self.observer.emitters if emitter.is_alive()}
        for directory, watched in list(self._watches.items()):
            try:
                same = _identity(directory) == watched.identity
            except OSError:
                same = False
            stale = watched.watch not in alive or not same
            if stale or wanted.get(directory) != watched.kind:
                del self._watches[directory]
                with contextlib.suppress(KeyError):
                    self.observer.unschedule(watched.watch)
        problems = [f"{d}: no such directory" for d in sorted(chain.dirs) if d not in wanted]
        for path, kind in sorted(wanted.items()):
            if path in self._watches:
                continue
            if kind == _LOOKOUT:
                events = STRUCTURE_EVENTS
            else:
                events = WATCHED_EVENTS if self._closes else WITHOUT_CLOSE_EVENTS
            try:
                identity = _identity(path)
                watch = self.observer.schedule(self._handler, path, event_filter=events)
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
                continue
            self._watches[path] = _Watch(watch, identity, kind)
        problem = "; ".join(problems) or None
        if problem is not None and problem != self._problem:
            log.warning(
                "not watching %s (%s): polling only until it can be watched", self.target, problem
            )
        elif problem is None and (reason or self._problem):
            log.info("watching %s again (after: %s)", self.target, reason or self._problem)
        self._problem = problem

    # -- events ----------------------------------------------------------------------

    def _event(self, event: FileSystemEvent) -> None:
        """From watchdog's thread: report a change of the file read, re-arm on a swap."""
        if event.event_type in _NOT_CHANGES:
            return
        paths = {os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")}
        paths.discard("")
        with self._observer_lock, self._lock:
            if not self._running:
                return
            chain = self._chain
            on_chain = bool(paths & chain.names)
            structural = any(_covers(path, d) for path in paths for d in chain.dirs)
            if not on_chain and not structural:
                return
            if structural or paths & set(chain.links) or chain != resolve_chain(self.target):
                # Another link or directory in place: watch what the chain is now.
                self._arm(None)
            if event.event_type == "modified":  # no close event will say the write is done
                self._wait_for_quiet()
                return
        self.on_change(on_chain and not structural and event.event_type in _FINISHED)

    def _wait_for_quiet(self) -> None:
        if self._quiet is not None:
            self._quiet.cancel()
        self._quiet = threading.Timer(WRITE_QUIET, self.on_change, args=(False,))
        self._quiet.daemon = True
        self._quiet.start()
