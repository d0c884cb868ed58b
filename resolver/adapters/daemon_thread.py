"""Running a blocking call that may hang without holding up the process's exit.

``asyncio.to_thread`` uses the loop's default executor, and both asyncio's
shutdown and the interpreter's exit wait for its threads. A fetch stuck on an
unreachable S3 endpoint (botocore's timeouts and retries add up to minutes)
would then keep a stopping agent alive past systemd's ``TimeoutStopSec``, and
systemd would kill it. A daemon thread is abandoned at exit instead: the call
has no side effect the agent still needs once it is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _settle(future: asyncio.Future[object], result: object, error: BaseException | None) -> None:
    if future.done():  # the awaiting side was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def in_daemon_thread(call: Callable[[], T], name: str) -> T:
    """Await ``call()`` run in a new daemon thread; cancelling the await abandons the thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def work() -> None:
        result: object = None
        error: BaseException | None = None
        try:
            result = call()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(_settle, future, result, error)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future  # type: ignore[return-value]
