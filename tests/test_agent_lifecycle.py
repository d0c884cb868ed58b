"""The agent's lifecycle in process, with a scripted source for exact sequencing.

The source is a fake ``DocumentSource`` (the Protocol of resolver.adapters.sources):
each ``fetch(marker)`` pops the next scripted reply. Everything else is real: the
reload pipeline, the last-known-good copy on disk, the DNS server on a loopback
port, queried over UDP.

Covers: the cached copy served (over DNS) before the first fetch; stale serial and
shrink refused with the old answers kept; each problem logged once per distinct
document or error, not per poll; recovery; status fields; an unreadable cache,
a cache of another source, an unwritable cache directory; jittered polling that
outlives a failing refresh; every query answered, by the old or the new zone,
while zones are swapped; a stop during a first fetch that hangs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import ipaddress
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from resolver.adapters.last_known_good import LastKnownGood
from resolver.adapters.sources import Fetched
from resolver.adapters.systemd_notify import SystemdNotifier
from resolver.agent import Agent, AgentPlan
from resolver.config import HostsConfig
from resolver.core.endpoints import Endpoint
from resolver.core.pipeline import ZoneSettings
from resolver.core.source_url import FileLocation
from resolver.errors import ConfigError, SourceError
from tests.documents import one_region_document

SOURCE = "/srv/tagdns/mapping.json"
REGION = "us-east-1"
NAMES = ("api", "db", "web1", "web2")
GENERATED_AT = "2026-01-02T03:04:05Z"

Reply = bytes | Exception | None


def address(variant: int, index: int) -> str:
    return f"10.{variant}.{index // 250}.{index % 250 + 1}"


def document(
    serial: int,
    names: tuple[str, ...] = NAMES,
    *,
    variant: int = 1,
    generated_at: str = GENERATED_AT,
) -> bytes:
    """A one-region document; ``variant`` picks the addresses (name i: address(variant, i))."""
    return one_region_document(
        serial, names, lambda index: address(variant, index), generated_at=generated_at
    )


class FakeSource:
    """Replies in order: bytes (a new object), None (not modified) or an exception."""

    def __init__(self, *replies: Reply, on_fetch: Callable[[], None] | None = None) -> None:
        self.location = FileLocation(SOURCE)
        self.replies = list(replies)
        self.markers: list[str | None] = []
        self.bytes_downloaded = 0
        self.on_fetch = on_fetch

    def fetch(self, marker: str | None) -> Fetched | None:
        self.markers.append(marker)
        if self.on_fetch is not None:
            self.on_fetch()
        reply = self.replies.pop(0) if self.replies else None
        if isinstance(reply, Exception):
            raise reply
        if reply is None:
            return None
        self.bytes_downloaded += len(reply)
        return Fetched(reply, hashlib.sha256(reply).hexdigest()[:16])


def make_agent(
    source: FakeSource,
    cache: Path | None = None,
    poll: float = 30.0,
    hosts: HostsConfig | None = None,
) -> Agent:
    plan = AgentPlan(
        source=source.location,
        settings=ZoneSettings(view=REGION),
        listen=(Endpoint("127.0.0.1", 0),),
        allow=(ipaddress.ip_network("127.0.0.0/8"),),
        cache_path=cache,
        poll_interval=poll,
        hosts=hosts or HostsConfig(),
    )
    return Agent(plan, source)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def ask(port: int, name: str, timeout: float = 2.0) -> tuple[str, list[str]] | None:
    """One UDP query for A; (rcode, addresses), or None when no reply came."""
    query = DNSRecord.question(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query.pack(), ("127.0.0.1", port))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
    reply = DNSRecord.parse(data)
    assert reply.header.id == query.header.id
    answers = sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)
    return RCODE.get(reply.header.rcode), answers


async def answers(agent: Agent, name: str) -> list[str]:
    reply = await asyncio.to_thread(ask, agent.bound[0].port, name)
    assert reply is not None, f"no reply for {name}"
    return reply[1]


async def close(agent: Agent) -> None:
    if agent.server is not None:
        await agent.server.close()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- last-known-good first --------------------------------------------------------------------


def test_cached_copy_is_answered_over_dns_before_the_first_fetch(tmp_path: Path) -> None:
    cache = tmp_path / "mapping.json"
    LastKnownGood(cache, SOURCE).save(document(5, variant=1))
    seen_during_fetch: list[tuple[str, list[str]] | None] = []
    agent: Agent

    def during_fetch() -> None:  # runs in the fetch thread while the loop serves
        seen_during_fetch.append(ask(agent.bound[0].port, "web1"))

    source = FakeSource(document(6, variant=2), on_fetch=during_fetch)
    agent = make_agent(source, cache)

    async def scenario() -> None:
        try:
            await agent.start()
            assert seen_during_fetch == [("NOERROR", [address(1, 2)])]
            assert await answers(agent, "web1") == [address(2, 2)]
            status = agent.status()
            assert (status.serial, status.loaded_from) == (6, SOURCE)
        finally:
            await close(agent)

    run(scenario)
    assert cache.read_bytes() == document(6, variant=2)


def test_source_confirming_the_cache_is_reported_as_the_source(tmp_path: Path) -> None:
    cache = tmp_path / "mapping.json"
    LastKnownGood(cache, SOURCE).save(document(5))
    agent = make_agent(FakeSource(document(5)), cache)

    async def scenario() -> None:
        await agent.load_cached()
        assert agent.status().loaded_from == f"cache {cache}"
        await agent.refresh(force=True)
        assert agent.status().loaded_from == SOURCE
        assert agent.status().accepted == 1  # the cache; the same document again is no change

    run(scenario)


# -- guards -------------------------------------------------------------------------------------


def test_stale_serial_and_shrink_are_refused_and_old_answers_stay(tmp_path: Path) -> None:
    cache = tmp_path / "mapping.json"
    source = FakeSource(
        document(10),
        document(9, variant=2),
        document(11, ("web1",), variant=2),
        None,
    )
    agent = make_agent(source, cache)

    async def scenario() -> None:
        try:
            await agent.start()
            assert await answers(agent, "web1") == [address(1, 2)]

            await agent.refresh()
            status = agent.status()
            assert status.serial == 10
            assert status.last_error == (
                f"{SOURCE}: refused: serial 9 is older than the serial 10 in force"
            )
            assert await answers(agent, "web1") == [address(1, 2)]

            await agent.refresh()
            status = agent.status()
            assert status.serial == 10
            assert status.last_error is not None
            assert "loses 3 of 4 names (75%), more than the 50% allowed" in status.last_error
            assert await answers(agent, "db") == [address(1, 1)]

            await agent.refresh()  # not modified: still the refused object
            assert agent.status().last_error == status.last_error
            assert agent.status().rejected == 2
            assert agent.status().accepted == 1
        finally:
            await close(agent)

    run(scenario)
    assert cache.read_bytes() == document(10)  # refused documents never reach the cache


def test_refused_document_is_logged_once_per_distinct_document(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tagdns")
    truncated = b'{"schema": 1, "serial": 11, "hos'
    source = FakeSource(
        document(10),
        truncated,
        None,
        None,
        None,
        None,
        None,
        truncated,  # the same bytes again (a forced fetch)
        document(8),  # a different refusal
        None,
        None,
        SourceError(f"{SOURCE}: permission denied"),
        SourceError(f"{SOURCE}: permission denied"),
        SourceError(f"{SOURCE}: permission denied"),
        document(12, variant=2),
        None,
    )
    agent = make_agent(source)

    async def scenario() -> None:
        try:
            await agent.start()
            for _ in range(6):
                await agent.refresh()
            await agent.refresh(force=True)
            for _ in range(8):
                await agent.refresh()
            assert await answers(agent, "web1") == [address(2, 2)]
        finally:
            await close(agent)

    run(scenario)
    assert errors(caplog) == [
        f"keeping serial 10: {SOURCE}: refused: document is not valid JSON: "
        "Unterminated string starting at at line 1 column 29",
        f"keeping serial 10: {SOURCE}: refused: serial 8 is older than the serial 10 in force",
        f"keeping serial 10: {SOURCE}: permission denied",
    ]
    recovered = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recovered")]
    assert recovered == [f"recovered: {SOURCE}"]
    # Conditional fetches carry the marker of the last object, accepted or refused.
    assert source.markers[2] == hashlib.sha256(truncated).hexdigest()[:16]


def test_hosts_file_is_brought_back_in_line_after_a_failed_write_or_on_sighup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The document in force is written out again: at every poll while the last write
    failed (so a fixed file follows at once), and on SIGHUP (another tool rewrote it)."""
    caplog.set_level(logging.INFO, logger="tagdns")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# END tagdns\n")  # damaged: no BEGIN
    doc = document(10)
    source = FakeSource(doc, doc, None, doc)
    agent = make_agent(source, hosts=HostsConfig(path=str(hosts)))
    block = f"{address(1, 0)} api.internal api\n"

    async def scenario() -> None:
        await agent.refresh(force=True)
        assert agent.hosts_failing
        assert (agent.status().files_error or "").startswith(f"{hosts}: line 2: no")
        hosts.write_text("127.0.0.1 localhost\n")  # the operator fixes the file
        await agent.refresh()  # a poll: in full, since the last write failed
        assert source.markers[-1] is None
        assert block in hosts.read_text() and not agent.hosts_failing
        assert agent.status().files_error is None
        hosts.write_text("127.0.0.1 localhost\n")  # another tool rewrites the file
        await agent.refresh()  # 304: nothing to do
        assert block not in hosts.read_text()
        await agent.refresh(force=True, rewrite_files=True)  # SIGHUP
        assert block in hosts.read_text()

    run(scenario)
    assert [e.endswith("; retried at every poll") for e in errors(caplog)] == [True]
    assert "[hosts] files in line with the view again" in caplog.messages


def test_the_last_known_good_copy_does_not_wait_for_a_locked_hosts_file(tmp_path: Path) -> None:
    """A SIGTERM while a hosts write waits for its lock must find the copy already saved."""
    etc = tmp_path / "etc"
    etc.mkdir()
    cache = tmp_path / "mapping.json"
    source = FakeSource(document(10), document(11, variant=2))
    agent = make_agent(source, cache, hosts=HostsConfig(path=str(etc / "hosts")))

    async def scenario() -> None:
        await agent.refresh(force=True)
        fd = os.open(etc, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another writer holds the hosts directory
            refreshing = asyncio.ensure_future(agent.refresh())
            deadline = time.monotonic() + 5
            while LastKnownGood(cache, SOURCE).load() != document(11, variant=2):
                assert time.monotonic() < deadline, "the copy waited for the hosts lock"
                await asyncio.sleep(0.02)
            assert not refreshing.done()  # the hosts write is still waiting
        finally:
            os.close(fd)  # releases the lock
        await asyncio.wait_for(refreshing, 15)
        assert address(2, 0) in (etc / "hosts").read_text()

    run(scenario)


class RecordingNotifier(SystemdNotifier):
    """systemd's side of sd_notify: when READY=1 came."""

    def __init__(self) -> None:
        super().__init__({})
        self.ready_at: float | None = None
        self.statuses: list[str] = []

    @property
    def enabled(self) -> bool:
        return True

    def notify(self, **fields: str | int) -> bool:
        if fields.get("READY") == 1 and self.ready_at is None:
            self.ready_at = time.monotonic()
        if "STATUS" in fields:
            self.statuses.append(str(fields["STATUS"]))
        return True


def test_ready_is_sent_once_names_are_served_not_after_a_locked_hosts_write(
    tmp_path: Path,
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    source = FakeSource(document(10))
    notifier = RecordingNotifier()
    agent = make_agent(source, hosts=HostsConfig(path=str(etc / "hosts")))
    agent.notifier = notifier

    async def scenario() -> None:
        fd = os.open(etc, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another writer holds the hosts directory
            starting = asyncio.ensure_future(agent.start())
            deadline = time.monotonic() + 5
            while notifier.ready_at is None:
                assert time.monotonic() < deadline, "READY=1 waited for the hosts lock"
                await asyncio.sleep(0.02)
            assert not starting.done()  # the hosts write is still waiting
            assert await answers(agent, "web1") == [address(1, 2)]
        finally:
            os.close(fd)
        await asyncio.wait_for(starting, 15)
        await close(agent)

    run(scenario)


def test_unchanged_object_after_fetch_errors_is_a_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S3 answering 500s, then 304 for the object in force: the error is over."""
    caplog.set_level(logging.INFO, logger="tagdns")
    source = FakeSource(
        document(10),
        SourceError(f"{SOURCE}: InternalError: try again"),
        SourceError(f"{SOURCE}: InternalError: try again"),
        None,
    )
    agent = make_agent(source)

    async def scenario() -> None:
        await agent.refresh(force=True)
        await agent.refresh()
        await agent.refresh()
        assert agent.status().last_error == f"{SOURCE}: InternalError: try again"
        await agent.refresh()
        assert agent.status().last_error is None

    run(scenario)
    assert errors(caplog) == [f"keeping serial 10: {SOURCE}: InternalError: try again"]
    assert f"recovered: {SOURCE}" in caplog.messages


def test_refused_object_stays_the_reported_problem_after_a_transient_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tagdns")
    source = FakeSource(
        document(10),
        document(9),
        SourceError(f"{SOURCE}: timed out"),
        None,  # the refused object, unchanged
        None,
    )
    agent = make_agent(source)
    notifier = RecordingNotifier()
    agent.notifier = notifier
    agent.bound.append(Endpoint("127.0.0.1", 53))  # as if listening: STATUS= is sent
    refused = f"{SOURCE}: refused: serial 9 is older than the serial 10 in force"

    async def scenario() -> None:
        await agent.refresh(force=True)
        for _ in range(4):
            await agent.refresh()
        assert agent.status().last_error == refused

    run(scenario)
    # The refusal again once the source answers: the log's last error and systemd's
    # STATUS= must not go on naming a timeout that is over.
    assert errors(caplog) == [
        f"keeping serial 10: {refused}",
        f"keeping serial 10: {SOURCE}: timed out",
        f"keeping serial 10: {refused}",
    ]
    assert notifier.statuses[-1].endswith(f"; keeping it: {refused}")
    assert not any(m.startswith("recovered") for m in caplog.messages)


# -- status -------------------------------------------------------------------------------------


def test_status_fields() -> None:
    data = document(42, generated_at="2026-01-02T03:04:05Z")
    source = FakeSource(data, None, SourceError(f"{SOURCE}: no such file"))
    agent = make_agent(source)

    async def scenario() -> None:
        empty = agent.status()
        assert (empty.serial, empty.names, empty.loaded_from, empty.last_fetch_ok) == (
            None,
            0,
            None,
            None,
        )
        assert empty.data_age(time.time()) is None

        before = time.time()
        await agent.refresh(force=True)
        await agent.refresh()
        status = agent.status()
        assert status.source == SOURCE
        assert status.view == REGION
        assert status.serial == 42
        assert status.generated_at == "2026-01-02T03:04:05Z"
        assert status.names == len(NAMES)
        assert status.loaded_from == SOURCE
        assert status.last_fetch_ok is not None
        assert status.last_fetch_ok >= before
        assert status.last_change is not None
        assert status.last_change >= before
        assert status.last_error is None
        assert (status.fetches, status.not_modified, status.accepted, status.rejected) == (
            2,
            1,
            1,
            0,
        )
        assert status.fetch_errors == 0
        assert status.bytes_downloaded == len(data)
        age = status.data_age(1767323045.0 + 60)  # 2026-01-02T03:04:05Z plus a minute
        assert age == pytest.approx(60.0)

        await agent.refresh()
        failed = agent.status()
        assert failed.last_error == f"{SOURCE}: no such file"
        assert failed.fetch_errors == 1
        assert failed.last_fetch_ok == status.last_fetch_ok  # the last success, not the attempt
        assert failed.serial == 42

    run(scenario)


# -- the cache on disk --------------------------------------------------------------------------


def test_unreadable_cache_file_falls_through_to_the_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tagdns")
    cache = tmp_path / "mapping.json"
    LastKnownGood(cache, SOURCE).save(document(5))
    cache.write_bytes(document(5)[:100])  # truncated on disk
    agent = make_agent(FakeSource(document(6)), cache)

    async def scenario() -> None:
        try:
            await agent.start()
            assert await answers(agent, "web1") == [address(1, 2)]
            assert agent.status().last_error is None
        finally:
            await close(agent)

    run(scenario)
    assert len(errors(caplog)) == 1
    assert errors(caplog)[0].startswith(
        f"keeping serial none: cache {cache}: refused: document is not valid JSON"
    )
    assert cache.read_bytes() == document(6)  # replaced by the good copy


def test_cache_path_that_is_a_directory_warns_and_serving_continues(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tagdns")
    cache = tmp_path / "mapping.json"
    LastKnownGood(cache, SOURCE).save(document(5))
    cache.unlink()
    cache.mkdir()
    agent = make_agent(FakeSource(document(6)), cache)

    async def scenario() -> None:
        try:
            await agent.start()
            assert await answers(agent, "web1") == [address(1, 2)]
        finally:
            await close(agent)

    run(scenario)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0] == f"not using the cached copy: cache {cache}: is a directory"
    assert warnings[1].startswith(f"cache {cache}: cannot write: ")


def test_cache_of_another_source_is_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tagdns")
    cache = tmp_path / "mapping.json"
    LastKnownGood(cache, "s3://other-bucket/mapping.json").save(document(99, variant=9))
    loaded_at_fetch: list[int | None] = []
    agent: Agent

    def during_fetch() -> None:
        loaded_at_fetch.append(agent.status().serial)

    agent = make_agent(FakeSource(SourceError(f"{SOURCE}: no such file"), document(3)), cache)
    agent.source.on_fetch = during_fetch  # type: ignore[attr-defined]

    async def scenario() -> None:
        try:
            await agent.start()
            reply = await asyncio.to_thread(ask, agent.bound[0].port, "web1")
            assert reply == ("REFUSED", [])  # nothing served: not another source's names
            await agent.refresh()
            assert await answers(agent, "web1") == [address(1, 2)]
        finally:
            await close(agent)

    run(scenario)
    assert loaded_at_fetch == [None, None]
    assert (
        f"not using the cached copy: cache {cache}: made for source "
        f"'s3://other-bucket/mapping.json', not '{SOURCE}'"
    ) in caplog.messages
    assert LastKnownGood(cache, SOURCE).load() == document(3)


def test_unwritable_cache_directory_warns_and_serving_continues(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tagdns")
    blocker = tmp_path / "state"
    blocker.write_bytes(b"a file where the cache directory should be")
    cache = blocker / "mapping.json"
    source = FakeSource(document(1), document(2, variant=2))
    agent = make_agent(source, cache)

    async def scenario() -> None:
        try:
            await agent.start()
            assert await answers(agent, "web1") == [address(1, 2)]
            await agent.refresh()
            assert await answers(agent, "web1") == [address(2, 2)]
            assert agent.status().last_error is None
            files_error = agent.status().files_error
            assert files_error is not None
            assert files_error.startswith(f"last-known-good copy not saved: cache {cache}: ")
            blocker.unlink()
            blocker.mkdir()
            source.replies.append(document(3, variant=3))
            await agent.refresh()
            assert agent.status().files_error is None, "a good save clears it"
        finally:
            await close(agent)

    run(scenario)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "the same failure is told once, not at every save"
    assert warnings[0].startswith(f"cache {cache}: cannot write: ")
    assert errors(caplog) == []


def test_status_names_every_file_that_could_not_be_written(tmp_path: Path) -> None:
    """A failing [hosts] write hid a failing last-known-good save (one field, the first)."""
    blocker = tmp_path / "state"
    blocker.write_bytes(b"a file where the directories should be")
    cache, hosts = blocker / "mapping.json", blocker / "hosts"
    agent = make_agent(FakeSource(document(1)), cache, hosts=HostsConfig(path=str(hosts)))

    async def scenario() -> None:
        try:
            await agent.start()
            files_error = agent.status().files_error or ""
            assert f"{hosts}: " in files_error
            assert f"last-known-good copy not saved: cache {cache}: " in files_error
        finally:
            await close(agent)

    run(scenario)


def test_a_failed_save_of_the_cached_copy_is_retried_without_a_new_document(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A quiet fleet publishes nothing for days: the copy is saved at the next poll
    once it can be, not when the next document comes."""
    caplog.set_level(logging.INFO, logger="tagdns")
    blocker = tmp_path / "state"
    blocker.write_bytes(b"a file where the cache directory should be")
    cache = blocker / "mapping.json"
    source = FakeSource(document(1), None, document(1))
    agent = make_agent(source, cache)

    async def scenario() -> None:
        try:
            await agent.start()
            assert agent.status().files_error is not None
            await agent.refresh()  # still failing: fetched whole, saved again, fails again
            assert source.markers[-1] is None, "a 304 would carry nothing to save"
            blocker.unlink()
            blocker.mkdir()
            await agent.refresh()
            assert source.markers[-1] is None
            assert agent.status().files_error is None
            assert agent.status().accepted == 1  # the same document, not a new one
        finally:
            await close(agent)

    run(scenario)
    assert cache.read_bytes() == document(1)
    assert "last-known-good copy saved again" in [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("cache_first", [True, False], ids=["cache-first", "refresh-first"])
def test_a_refresh_during_start_up_is_judged_against_the_cached_copy(
    tmp_path: Path, cache_first: bool
) -> None:
    """A SIGHUP or a file change while the cached copy loads must not install the
    source's document unguarded and save it over the copy: here an older serial that
    drops three of four names, which the guards refuse."""
    cache = tmp_path / "mapping.json"
    LastKnownGood(cache, SOURCE).save(document(10))
    source = FakeSource(document(5, ("web1",), variant=2))
    agent = make_agent(source, cache)

    async def scenario() -> None:
        first, second = agent.load_cached(), agent.refresh(force=True)
        await asyncio.gather(*((first, second) if cache_first else (second, first)))
        status = agent.status()
        assert status.serial == 10
        assert status.last_error == (
            f"{SOURCE}: refused: serial 5 is older than the serial 10 in force"
        )

    run(scenario)
    assert cache.read_bytes() == document(10)


# -- polling ------------------------------------------------------------------------------------


def test_polls_are_jittered_and_outlive_a_failing_refresh(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tagdns")
    source = FakeSource(document(1), RuntimeError("bug"), RuntimeError("bug"), None, None)
    agent = make_agent(source, poll=30.0)
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) > 40:
            raise asyncio.CancelledError
        await real_sleep(0)

    async def scenario() -> None:
        await agent.refresh(force=True)
        monkeypatch.setattr(asyncio, "sleep", fake_sleep)
        with pytest.raises(asyncio.CancelledError):
            await agent._poll()

    run(scenario)
    assert all(27.0 <= delay <= 33.0 for delay in delays)
    assert len(set(delays)) > 1
    assert len(source.markers) == 41  # the poll went on after the failures
    assert errors(caplog) == ["keeping serial 1: refresh failed: RuntimeError: bug"]


class ScriptedWatcher:
    """The poll's side of a FileWatcher: ``settling`` answers in turn."""

    def __init__(self, *settling: bool) -> None:
        self.answers = list(settling)
        self.ensured = 0

    def ensure(self) -> bool:
        self.ensured += 1
        return True

    def settling(self) -> bool:
        return self.answers.pop(0) if self.answers else False


def test_each_poll_rearms_the_watch_and_leaves_a_file_being_written_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poll that read a file mid-write would refuse it half written; its close is
    reported by the watch, which each poll first makes sure is in place."""
    source = FakeSource(document(1))
    agent = make_agent(source)
    watcher = ScriptedWatcher(True, True, False, True, False)
    agent._watcher = watcher  # type: ignore[assignment]
    sleeps = 0
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps > 5:
            raise asyncio.CancelledError
        await real_sleep(0)

    async def scenario() -> None:
        monkeypatch.setattr(asyncio, "sleep", fake_sleep)
        with pytest.raises(asyncio.CancelledError):
            await agent._poll()

    run(scenario)
    assert watcher.ensured == 5
    assert len(source.markers) == 2  # fetched at the two polls that found no write going on


# -- swaps under load ---------------------------------------------------------------------------


def test_every_query_during_swaps_is_answered_by_the_old_or_the_new_zone() -> None:
    names = tuple(f"host-{i:04d}" for i in range(3000))
    probes = [(names[i], i) for i in (0, 1, 1499, 2999)]
    documents = [document(serial, names, variant=serial % 2 + 1) for serial in range(1, 6)]
    agent = make_agent(FakeSource(*documents))
    stop = threading.Event()
    replies: list[tuple[int, tuple[str, list[str]] | None]] = []

    def client(port: int) -> None:
        while not stop.is_set():
            for name, index in probes:
                replies.append((index, ask(port, name)))

    async def scenario() -> None:
        try:
            await agent.start()
            load = asyncio.ensure_future(asyncio.to_thread(client, agent.bound[0].port))
            for _ in range(4):
                await agent.refresh()
            stop.set()
            await load
            assert agent.status().serial == 5
        finally:
            await close(agent)

    run(scenario)
    assert replies
    for index, reply in replies:
        assert reply is not None, "a query went unanswered during a swap"
        rcode, found = reply
        assert rcode == "NOERROR"
        assert found in ([address(1, index)], [address(2, index)])


# -- stopping ---------------------------------------------------------------------------------


def test_stop_during_a_hung_first_fetch_ends_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM's handler (``stop``) must not wait for a fetch that never returns."""
    caplog.set_level(logging.INFO)
    release = threading.Event()
    fetching = threading.Event()

    def hang() -> None:
        fetching.set()
        release.wait(60)

    agent = make_agent(FakeSource(document(1), on_fetch=hang))

    async def scenario() -> None:
        running = asyncio.ensure_future(agent.run())
        assert await asyncio.to_thread(fetching.wait, 10)
        # The listeners are up and answer (nothing is owned yet) while the fetch hangs.
        reply = await asyncio.to_thread(ask, agent.bound[0].port, "web1")
        assert reply is not None
        # tagdns status says a fetch is under way rather than only "never".
        under_way = agent.status().fetch_started
        assert under_way is not None and time.time() - under_way < 10
        started = time.monotonic()
        agent.stop()
        await asyncio.wait_for(running, 5)
        assert time.monotonic() - started < 2

    try:
        run(scenario)
    finally:
        release.set()
    assert "stop requested during start-up" in caplog.text
    assert "stopped" in caplog.text


def test_a_small_change_rebuilds_only_its_names_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log tells a full load from a rebuild of the changed names, answers follow either."""
    caplog.set_level(logging.INFO, logger="tagdns")
    names = tuple(f"node{i}" for i in range(40))

    def fleet(serial: int, moved: str) -> bytes:
        return one_region_document(
            serial, names, lambda i: address(2 if names[i] == moved else 1, i)
        )

    source = FakeSource(fleet(10, ""), fleet(11, "node7"))
    agent = make_agent(source)

    async def scenario() -> None:
        try:
            await agent.start()
            assert await answers(agent, "node7") == [address(1, 7)]
            await agent.refresh()
            assert await answers(agent, "node7") == [address(2, 7)]
            assert await answers(agent, "node8") == [address(1, 8)]
            status = agent.status()
            assert (status.accepted, status.rebuilds) == (2, 1)
            assert status.last_load_seconds is not None
        finally:
            await close(agent)

    run(scenario)
    serving = [m for m in caplog.messages if m.startswith("serving serial")]
    assert serving[0].endswith(": full load)"), serving
    assert serving[1].endswith(": rebuilt 1 changed name)"), serving


def test_sighup_chooses_auto_upstreams_again_and_keeps_them_when_none_is_found(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``--upstream auto`` reads resolv.conf at start; after a DHCP renewal, a VPN or
    resolved changed it, ``systemctl reload tagdns`` (SIGHUP) follows it."""
    caplog.set_level(logging.INFO, logger="tagdns")
    first, second = Endpoint("127.0.0.2", 53), Endpoint("127.0.0.3", 53)
    choices: list[tuple[Endpoint, ...] | Exception] = [
        (second,),
        ConfigError("upstream 'auto': resolv.conf names no nameserver besides this agent"),
    ]

    def rechoose() -> tuple[Endpoint, ...]:
        choice = choices.pop(0)
        if isinstance(choice, Exception):
            raise choice
        return choice

    source = FakeSource(document(10))
    agent = make_agent(source)
    agent.plan = dataclasses.replace(agent.plan, upstreams=(first,), rechoose_upstreams=rechoose)

    async def scenario() -> None:
        running = asyncio.ensure_future(agent.run())
        while not agent.bound:
            await asyncio.sleep(0.01)
        assert agent.forwarder is not None and agent.forwarder.upstreams == (first,)
        for remaining in (1, 0):
            os.kill(os.getpid(), signal.SIGHUP)
            deadline = time.monotonic() + 5
            while len(choices) > remaining:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert agent.forwarder.upstreams == (second,)  # kept when none is found
        agent.stop()
        await asyncio.wait_for(running, 5)

    run(scenario)
    assert "forwarding to 127.0.0.3:53" in caplog.messages
    assert (
        "upstreams kept (127.0.0.3:53): upstream 'auto': resolv.conf names no nameserver "
        "besides this agent"
    ) in caplog.messages
