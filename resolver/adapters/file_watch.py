"""Watching a file source with watchdog, so an edited document is served at once.

The parent directory is watched, not the file: editors and deploy tools replace
files by rename, which a watch on the old inode would miss.

Only creations, renames, deletions and closes after writing are asked of the
kernel, not every write (IN_MODIFY) nor every open: the directory may hold other
busy files (a log written a line at a time, the agent's own reads), and each event
costs the watcher's threads Python work, under the GIL the serving loop needs. A
document is complete when its writer closes it or renames it into place; one
rewritten in place and held open is still caught by the next poll.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

WATCHED_EVENTS = [FileCreatedEvent, FileMovedEvent, FileDeletedEvent, FileClosedEvent]
"""What the kernel is asked to report (watchdog derives the inotify mask from it)."""
_NOT_CHANGES = frozenset({"opened", "closed_no_write"})
_FINISHED = frozenset({"moved", "closed"})
"""A rename onto the file, or the close after writing it: the new content is all there."""


class _TargetHandler(FileSystemEventHandler):
    def __init__(self, target: str, on_change: Callable[[bool], None]) -> None:
        self.target = target
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = {os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")}
        # Opening and closing without a write (the agent's own read among them) is no change.
        if self.target in paths and event.event_type not in _NOT_CHANGES:
            self.on_change(event.event_type in _FINISHED)


class FileWatcher:
    """Calls ``on_change(finished)`` (from watchdog's thread) whenever the target file changes.

    ``finished`` is True for a rename onto the file or the close after a write;
    False (a write still under way, perhaps) asks the caller to wait for quiet.
    """

    def __init__(self, path: str, on_change: Callable[[bool], None]) -> None:
        self.target = os.path.abspath(path)
        self.observer = Observer()
        self.observer.daemon = True
        handler = _TargetHandler(self.target, on_change)
        self.observer.schedule(
            handler, os.path.dirname(self.target), recursive=False, event_filter=WATCHED_EVENTS
        )

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=2)
