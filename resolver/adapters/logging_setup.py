"""Logging for the agent: one line per event, as text or as one JSON object per line.

Text lines are ``TIME LEVEL LOGGER: message``. When stderr is journald's stream
(systemd sets ``JOURNAL_STREAM`` to its device and inode) the time is left to the
journal and each line starts with its syslog priority (``<3>`` for errors), so
``journalctl -p warning -u tagdns`` filters by level. Newlines in a message and
tracebacks are folded into the same line: one event never spans two lines, and a
value quoted from a hostile document cannot forge a second log line.

Query logging (``--log-queries``) goes to the ``tagdns.query`` logger at INFO,
whatever ``--log-level`` says. Under load that is a line per query, so the UDP
path holds the lines of a whole batch (``held_lines``) and the handler writes
them with one write(2), not one each.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
QUERY_LOGGER = "tagdns.query"
_QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer", "watchdog", "asyncio")
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
FIELDS_ATTRIBUTE = "fields"
"""``extra={"fields": {...}}`` on a log call: structured values for the JSON format."""


def one_line(text: str) -> str:
    """Fold every kind of line break into `` | ``, so that one event is one line."""
    return " | ".join(text.splitlines()) if text else text


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    if record.exc_text:
        return record.exc_text
    return None


class TextFormatter(logging.Formatter):
    def __init__(self, *, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal
        self._second = -1
        self._stamp = ""
        """The text of ``_second``: under query logging, most lines share their second."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        exception = _exception_text(self, record)
        if exception:
            message = f"{message} | {exception.strip()}"
        message = one_line(message)
        if self.journal:
            priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
            return f"<{priority}>{record.levelname} {record.name}: {message}"
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d} {record.levelname} {record.name}: {message}"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...fields, "exception"}``, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        event: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                event.setdefault(str(key), value)
        exception = _exception_text(self, record)
        if exception:
            event["exception"] = exception
        return json.dumps(event, ensure_ascii=False, default=str)


class LineHandler(logging.StreamHandler[TextIO]):
    """A stream handler that can hold its lines over a burst and write them in one go.

    stderr is line-buffered, so every line is its own write(2) and flush: at tens of
    thousands of logged queries a second, a system call per query. While ``held``,
    formatted lines (from any thread, in order) wait in a list instead.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._held = 0
        self._pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Called under the handler's lock, like ``held``'s bookkeeping."""
        if not self._held:
            super().emit(record)
            return
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Lines emitted inside are written when the outermost ``held`` ends."""
        self.acquire()
        self._held += 1
        self.release()
        try:
            yield
        finally:
            self.acquire()
            try:
                self._held -= 1
                if not self._held and self._pending:
                    text = "".join(self._pending)
                    self._pending.clear()
                    with contextlib.suppress(OSError, ValueError):  # stderr is gone
                        self.stream.write(text)
                        self.flush()
            finally:
                self.release()


@contextlib.contextmanager
def held_lines() -> Iterator[None]:
    """Hold the lines of the root logger's ``LineHandler`` (if it has one) over a burst."""
    with contextlib.ExitStack() as stack:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, LineHandler):
                stack.enter_context(handler.held())
        yield


def _journal_stream(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is the journald stream systemd connected us to."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stat.st_dev == int(device) and stat.st_ino == int(inode)


def setup_logging(
    level: str = "info",
    log_format: str = "text",
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Install the one handler on the root logger; returns it (tests remove it again)."""
    stream = stream or sys.stderr
    environ = os.environ if environ is None else environ
    handler = LineHandler(stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(journal=_journal_stream(stream, environ)))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # No formatter here writes thread or process names. Not collecting them for
    # every record saves about 2 µs of its 15 µs, which counts under query logging.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


def set_query_logging(enabled: bool) -> None:
    """Query lines are INFO on their own logger, shown even under ``--log-level warning``."""
    logging.getLogger(QUERY_LOGGER).setLevel(logging.INFO if enabled else logging.WARNING)
