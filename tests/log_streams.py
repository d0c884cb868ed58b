"""A log stream for tests that count how the agent's log handler writes."""

from __future__ import annotations

import io


class CountingStream(io.StringIO):
    """A stream that counts its writes (each one a write(2) on a real stderr)."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)
