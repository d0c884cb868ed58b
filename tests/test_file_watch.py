"""Which file events mean the document is ready, which mean wait for quiet, which mean nothing;
and that the watch follows symlink swaps and outlives its directory being replaced."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
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
from watchdog.observers.polling import PollingObserver

from resolver.adapters.file_watch import WRITE_QUIET, FileWatcher, _ChainHandler, resolve_chain

QUIET = 0.5
"""How long a test waits to be sure no change is reported."""


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Callable[[Path], tuple[FileWatcher, list[bool]]]]:
    """Start a watcher on a path; every one started is stopped after the test."""
    watchers: list[FileWatcher] = []

    def start(path: Path) -> tuple[FileWatcher, list[bool]]:
        changes: list[bool] = []
        watcher = FileWatcher(str(path), changes.append)
        watcher.start()
        watchers.append(watcher)
        return watcher, changes

    yield start
    for watcher in watchers:
        watcher.stop()


def test_events_on_the_target(tmp_path: Path) -> None:
    target = str(tmp_path / "mapping.json")
    other = str(tmp_path / "other.json")
    cases: list[tuple[FileSystemEvent, list[bool]]] = [
        (FileMovedEvent(str(tmp_path / ".mapping.json.tmp"), target), [True]),
        (FileClosedEvent(target), [True]),
        (FileCreatedEvent(target), [False]),
        (FileDeletedEvent(target), [False]),
        (FileMovedEvent(target, str(tmp_path / "old.json")), [True]),
        (FileOpenedEvent(target), []),
        (FileClosedNoWriteEvent(target), []),
        (FileClosedEvent(other), []),
        (FileModifiedEvent(other), []),
        (FileMovedEvent(other, str(tmp_path / "b.json")), []),
    ]
    for event, expected in cases:
        calls: list[bool] = []
        watcher = FileWatcher(target, calls.append)
        watcher.start()
        try:
            watcher._event(event)
        finally:
            watcher.stop()
        assert calls == expected, event


def test_busy_neighbours_raise_no_events_and_a_finished_write_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log appended line by line beside the document costs the watcher nothing."""
    seen: list[FileSystemEvent] = []
    original = _ChainHandler.on_any_event

    def spy(self: _ChainHandler, event: FileSystemEvent) -> None:
        seen.append(event)
        original(self, event)

    monkeypatch.setattr(_ChainHandler, "on_any_event", spy)
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


def test_the_chain_names_every_link_and_the_file(tmp_path: Path) -> None:
    cm = configmap(tmp_path, "ts1")
    chain = resolve_chain(str(cm / "mapping.json"))
    assert chain.links == (str(cm / "mapping.json"), str(cm / "..data"))
    assert chain.file == str(cm / "ts1" / "mapping.json")
    assert chain.dirs == {str(cm), str(cm / "ts1")}
    assert resolve_chain(str(cm / "absent.json")).links == ()
    (tmp_path / "loop").symlink_to("loop")
    assert resolve_chain(str(tmp_path / "loop")).file == str(tmp_path / "loop")


def test_a_configmap_swap_is_seen_and_followed(
    tmp_path: Path, watched: Callable[[Path], tuple[FileWatcher, list[bool]]]
) -> None:
    """kubelet renames a new ``..data`` link into place, then removes the old directory."""
    cm = configmap(tmp_path, "ts1")
    _, changes = watched(cm / "mapping.json")
    swap(cm, "ts2")
    wait_until(lambda: True in changes)
    changes.clear()
    shutil.rmtree(cm / "ts1")
    (cm / "ts2" / "mapping.json").write_text('{"serial": 3}')  # the file read now
    wait_until(lambda: True in changes)
    changes.clear()
    swap(cm, "ts3")
    shutil.rmtree(cm / "ts2")
    wait_until(lambda: True in changes)


def test_a_link_into_another_directory_sees_a_rename_there(
    tmp_path: Path, watched: Callable[[Path], tuple[FileWatcher, list[bool]]]
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "mapping.json").write_text('{"serial": 1}')
    link = tmp_path / "link"
    link.mkdir()
    (link / "mapping.json").symlink_to("../real/mapping.json")
    _, changes = watched(link / "mapping.json")
    (real / "t.json").write_text('{"serial": 2}')
    changes.clear()  # the close of t.json's write is no change of the document
    time.sleep(QUIET)
    assert changes == []
    os.replace(real / "t.json", real / "mapping.json")
    wait_until(lambda: True in changes)


def test_a_directory_swapped_away_is_watched_again_at_the_next_poll(
    tmp_path: Path,
    watched: Callable[[Path], tuple[FileWatcher, list[bool]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``mv pd pd.old; mv pd.new pd`` raises no event on a watch of pd: ``ensure`` notices."""
    caplog.set_level(logging.INFO, "tagdns.watch")
    pd, new = tmp_path / "pd", tmp_path / "pd.new"
    for directory in (pd, new):
        directory.mkdir()
        (directory / "m.json").write_text("{}")
    watcher, changes = watched(pd / "m.json")
    assert watcher.ensure()
    assert caplog.messages == []  # nothing lost: nothing said
    pd.rename(tmp_path / "pd.old")
    new.rename(pd)
    assert watcher.ensure()
    assert watcher.ensure()
    assert len(caplog.messages) == 1
    assert "watching" in caplog.messages[0]
    assert "again" in caplog.messages[0]
    changes.clear()
    (pd / "m.json").write_text('{"serial": 2}')
    wait_until(lambda: True in changes)


def test_a_directory_removed_and_made_again_is_watched_again_at_once(
    tmp_path: Path, watched: Callable[[Path], tuple[FileWatcher, list[bool]]]
) -> None:
    pd = tmp_path / "pd"
    pd.mkdir()
    (pd / "m.json").write_text("{}")
    watcher, changes = watched(pd / "m.json")
    shutil.rmtree(pd)
    wait_until(lambda: not watcher.watching)
    pd.mkdir()
    wait_until(lambda: watcher.watching)
    changes.clear()
    (pd / "m.json").write_text('{"serial": 2}')
    wait_until(lambda: True in changes)


def test_a_directory_missing_at_start_is_watched_once_it_appears(
    tmp_path: Path,
    watched: Callable[[Path], tuple[FileWatcher, list[bool]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "tagdns.watch")
    nodir = tmp_path / "a" / "nodir"
    watcher, changes = watched(nodir / "m.json")
    assert not watcher.watching
    assert not watcher.ensure()
    assert len(caplog.messages) == 1  # said once, not at every poll
    assert "not watching" in caplog.messages[0]
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "m.json").write_text("{}")
    (tmp_path / "a").mkdir()
    staged.rename(nodir)
    wait_until(lambda: watcher.watching)
    assert "watching" in caplog.messages[-1]
    assert "again" in caplog.messages[-1]
    changes.clear()
    (nodir / "m.json").write_text('{"serial": 2}')
    wait_until(lambda: True in changes)


def test_a_file_written_in_place_is_settling_until_a_while_after(
    tmp_path: Path, watched: Callable[[Path], tuple[FileWatcher, list[bool]]]
) -> None:
    """An editor truncates and writes in chunks: a poll meanwhile leaves the file to
    the close, which is reported, rather than refuse it half-written."""
    target = tmp_path / "mapping.json"
    target.write_text('{"serial": 1}')
    os.utime(target, (time.time() - 60, time.time() - 60))
    watcher, changes = watched(target)
    time.sleep(0.05)
    assert not watcher.settling()  # untouched for a minute: the poll reads it
    with target.open("r+b") as handle:
        handle.truncate()
        handle.write(b'{"seri')
        handle.flush()
        assert watcher.settling()
        time.sleep(QUIET)
        assert changes == []  # half-written: nothing reported
        handle.write(b'al": 2}')
    wait_until(lambda: True in changes)
    missing = FileWatcher(str(tmp_path / "nodir" / "m.json"), changes.append)
    missing.start()
    try:
        (tmp_path / "m.json").write_text("{}")
        assert not missing.settling()  # not watched: no close would be reported
    finally:
        missing.stop()


def test_without_close_events_a_write_counts_after_quiet(tmp_path: Path) -> None:
    """kqueue and polling observers report writes, never closes: a slow writer is
    reported once, after it stops, and ``settling`` never holds the poll back."""
    target = tmp_path / "mapping.json"
    target.write_text('{"serial": 1}')
    changes: list[bool] = []
    watcher = FileWatcher(str(target), changes.append, PollingObserver(timeout=0.1))
    watcher.start()
    try:
        with target.open("r+b") as handle:
            handle.truncate()
            for chunk in (b'{"ser', b'ial"', b": 2}"):
                handle.write(chunk)
                handle.flush()
                assert not watcher.settling()
                time.sleep(0.3)
        assert changes == []
        wait_until(lambda: bool(changes), timeout=WRITE_QUIET + 3)
        assert changes == [False]
        changes.clear()
        os.replace(_staged(tmp_path), target)
        wait_until(lambda: bool(changes))  # seen, as whatever the polling made of it
    finally:
        watcher.stop()


def _staged(root: Path) -> Path:
    staged = root / ".mapping.json.tmp"
    staged.write_text('{"serial": 3}')
    return staged


def configmap(root: Path, first: str) -> Path:
    """A ConfigMap volume as kubelet lays it out."""
    cm = root / "cm"
    cm.mkdir()
    (cm / first).mkdir()
    (cm / first / "mapping.json").write_text('{"serial": 1}')
    (cm / "..data").symlink_to(first)
    (cm / "mapping.json").symlink_to("..data/mapping.json")
    return cm


def swap(cm: Path, name: str) -> None:
    """kubelet's update: a new timestamped directory, then a new ``..data`` renamed over."""
    (cm / name).mkdir()
    (cm / name / "mapping.json").write_text(f'{{"serial": "{name}"}}')
    (cm / "..data_tmp").symlink_to(name)
    os.replace(cm / "..data_tmp", cm / "..data")


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_poll_rearming_while_an_event_is_dispatched_does_not_deadlock(
    tmp_path: Path, watched: Callable[[Path], tuple[FileWatcher, list[bool]]]
) -> None:
    """Until watchdog 7.1.1 the observer holds its lock while it calls the handler,
    which takes the watcher's; ``ensure()`` (the agent's poll, another thread) takes
    the watcher's and then the observer's to schedule a watch. Here the observer is
    mid-dispatch, as in those versions, when the poll finds the directory replaced."""
    directory = tmp_path / "source"
    directory.mkdir()
    target = directory / "mapping.json"
    target.write_text("{}")
    watcher, _changes = watched(target)
    directory.rename(tmp_path / "source.old")  # no event says so: only ensure() sees it
    directory.mkdir()
    observer_lock = watcher.observer._lock
    dispatching = threading.Event()
    polled = threading.Event()

    def dispatch() -> None:
        with observer_lock:  # as watchdog < 7.1.1 holds it around every handler call
            dispatching.set()
            polled.wait(2)
            watcher._event(FileClosedEvent(str(target)))

    dispatcher = threading.Thread(target=dispatch, daemon=True)
    dispatcher.start()
    assert dispatching.wait(2)
    poll = threading.Thread(target=watcher.ensure, daemon=True)
    poll.start()
    time.sleep(0.3)  # the poll is now waiting for a lock: which one is the question
    polled.set()
    dispatcher.join(5)
    poll.join(5)
    assert not dispatcher.is_alive() and not poll.is_alive(), "deadlocked"
    assert watcher.watching
