"""The agent's last-known-good copy of the document, for restarts during an outage.

The copy is the document's bytes exactly (so ``tagdns lookup --source`` reads
it), with a small sidecar naming the source it came from: a copy made for
another source is never served.
"""

from __future__ import annotations

from pathlib import Path

from resolver.adapters.atomic_file import remove_stale_temps, write_atomically
from resolver.adapters.file_source import read_document_file
from resolver.errors import SourceError


class LastKnownGood:
    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.sidecar = path.with_name(path.name + ".source")
        self.source = source

    def load(self) -> bytes | None:
        """The cached bytes, None when there is no copy; SourceError when it is unusable."""
        if not self.path.exists():
            return None
        try:
            origin = self.sidecar.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise SourceError(f"cache {self.path}: cannot read {self.sidecar.name}") from None
        if origin != self.source:
            raise SourceError(f"cache {self.path}: made for source {origin!r}, not {self.source!r}")
        try:
            return read_document_file(str(self.path))
        except SourceError as exc:
            raise SourceError(f"cache {exc}") from None

    def save(self, data: bytes) -> None:
        """Write the copy atomically; SourceError (one line) when the disk refuses."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A kill -9 mid-write leaves a document-sized temp file; without this,
            # a crash loop would fill the disk with them.
            remove_stale_temps(self.path)
            remove_stale_temps(self.sidecar)
            if self._recorded_source() == self.source:
                write_atomically(self.path, data)
            else:
                # Unlabel first, label last: a crash in between leaves a copy that is
                # refused at the next start, never another source's data under this name.
                self.sidecar.unlink(missing_ok=True)
                write_atomically(self.path, data)
                write_atomically(self.sidecar, (self.source + "\n").encode("utf-8"))
        except OSError as exc:
            raise SourceError(f"cache {self.path}: cannot write: {exc.strerror or exc}") from None

    def _recorded_source(self) -> str | None:
        try:
            return self.sidecar.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
