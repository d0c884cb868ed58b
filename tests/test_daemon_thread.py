"""Blocking calls in daemon threads: results, errors, and abandoning a call that hangs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from resolver.adapters.daemon_thread import in_daemon_thread


def test_result_and_thread_name() -> None:
    async def scenario() -> tuple[str, bool]:
        return await in_daemon_thread(
            lambda: (threading.current_thread().name, threading.current_thread().daemon), "probe"
        )

    assert asyncio.run(scenario()) == ("probe", True)


def test_an_exception_reaches_the_awaiting_side() -> None:
    def fail() -> None:
        raise OSError("endpoint unreachable")

    async def scenario() -> None:
        await in_daemon_thread(fail, "probe")

    with pytest.raises(OSError, match="endpoint unreachable"):
        asyncio.run(scenario())


def test_cancelling_abandons_a_hung_call_and_the_loop_closes() -> None:
    release = threading.Event()
    finished = threading.Event()

    def hang() -> int:
        release.wait(30)
        finished.set()
        return 1

    async def scenario() -> None:
        task = asyncio.ensure_future(in_daemon_thread(hang, "probe"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())  # returns without waiting for the hung call
    assert not finished.is_set()
    release.set()  # the abandoned call ends, finds its loop closed, and says nothing
    assert finished.wait(5)
