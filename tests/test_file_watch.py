"""Which file events mean the document is ready, which mean wait for quiet, which mean nothing."""

from __future__ import annotations

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

from resolver.adapters.file_watch import _TargetHandler

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
