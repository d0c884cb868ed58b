"""A snapshot of the agent's state, for logs, metrics and ``tagdns status``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class AgentStatus:
    source: str
    view: str
    serial: int | None
    generated_at: str | None
    names: int
    loaded_from: str | None
    """Where the data in force came from: the source, or the last-known-good cache."""
    last_fetch_ok: float | None
    """Unix time of the last fetch that reached the source (changed or not)."""
    last_change: float | None
    last_error: str | None
    fetches: int
    not_modified: int
    accepted: int
    rejected: int
    fetch_errors: int
    bytes_downloaded: int
    rebuilds: int = 0
    """Accepted documents installed by rebuilding only the names whose entries changed."""
    last_load_seconds: float | None = None
    """How long the last accepted document took off the serving path."""
    fetch_started: float | None = None
    """Unix time the fetch under way began; None between fetches. A fetch can hang for
    minutes (botocore's read timeout and retries) before it counts as failed."""
    files_error: str | None = None
    """Why the node's own files ([hosts] files, the last-known-good copy) are not in line
    with the data served: DNS is fine meanwhile, but a restart or a hosts-file reader
    is not."""

    def data_age(self, now: float) -> float | None:
        """Seconds since the scan that produced the data in force."""
        if self.generated_at is None:
            return None
        return now - datetime.fromisoformat(self.generated_at).timestamp()
