"""Which file events mean the document is ready, which mean wait for quiet, which mean nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)

from resolver.adapters.file_watch import FileWatcher, _TargetHandler

TARGET = "/etc/tagdns/mapping.json"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (FileMovedEvent("/etc/tagdns/.mapping.json.tmp", TARGET), [True]),
        (FileClosedEvent(TARGET), [True]),
        (FileModifiedEvent(TARGET), [False]),
        (FileCreatedEvent(TARGET), [False]),
        (FileDeletedEvent(TARGET), [False]),
        (FileMovedEvent(TARGET, "/etc/tagdns/old.json"), [True]),
        (FileOpenedEvent(TARGET), []),
        (FileClosedNoWriteEvent(TARGET), []),
        (FileModifiedEvent("/etc/tagdns/other.json"), []),
        (FileMovedEvent("/etc/tagdns/a.json", "/etc/tagdns/b.json"), []),
    ],
    ids=lambda value: getattr(value, "event_type", str(value)),
)
def test_events_on_the_target(event: FileSystemEvent, expected: list[bool]) -> None:
    calls: list[bool] = []
    _TargetHandler(TARGET, calls.append).on_any_event(event)
    assert calls == expected


def test_busy_neighbours_raise_no_events_and_a_finished_write_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log appended line by line beside the document costs the watcher nothing."""
    seen: list[FileSystemEvent] = []
    original = _TargetHandler.on_any_event

    def spy(self: _TargetHandler, event: FileSystemEvent) -> None:
        seen.append(event)
        original(self, event)

    monkeypatch.setattr(_TargetHandler, "on_any_event", spy)
    target = tmp_path / "mapping.json"
    target.write_text("{}")
    changes: list[bool] = []
    watcher = FileWatcher(str(target), changes.append)
    watcher.start()
    try:
        with (tmp_path / "agent.log").open("w", buffering=1) as log:
            for n in range(300):
                log.write(f"line {n}\n")
        target.read_text()
        log_path = str(tmp_path / "agent.log")
        wait_until(lambda: any(e.event_type == "closed" for e in seen))
        assert [(e.event_type, e.src_path) for e in seen] == [
            ("created", log_path),
            ("closed", log_path),
        ]
        assert changes == []
        target.write_text('{"serial": 2}')
        wait_until(lambda: bool(changes))
        assert changes == [True]
    finally:
        watcher.stop()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
