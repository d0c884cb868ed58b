"""Mapping document sources: an S3 object or a local file, fetched conditionally.

Both answer ``fetch(marker)`` with the new bytes and their marker, or None when
nothing changed since ``marker``: a 304 from S3 (If-None-Match, no download), or
the same device, inode, size, mtime and ctime for a file. The agent keeps the
marker of the last object it fetched, accepted or not, so a refused document is
not downloaded again on every poll.

File timestamps are only as fine as the kernel's clock tick, so two same-sized
writes in place within one tick look identical to ``stat``. As git does with
its index, a file changed less than ``RACY_WINDOW_NS`` ago is read again and
compared by content hash, so such a write is never mistaken for "unchanged".
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from resolver.adapters.file_source import read_document_file
from resolver.core.source_url import FileLocation, SourceLocation
from resolver.errors import SourceError

if TYPE_CHECKING:
    from resolver.adapters.s3_source import S3Source

RACY_WINDOW_NS = 2_000_000_000
"""A file changed more recently than this is compared by content, not by ``stat``."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    marker: str
    """The S3 ETag, or the file's identity and modification stamp."""


class DocumentSource(Protocol):
    bytes_downloaded: int

    @property
    def location(self) -> SourceLocation: ...

    def fetch(self, marker: str | None) -> Fetched | None: ...


class FileSource:
    def __init__(self, location: FileLocation) -> None:
        self.location = location
        self.bytes_downloaded = 0

    def fetch(self, marker: str | None) -> Fetched | None:
        path = self.location.path
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise SourceError(f"{path}: no such file") from None
        except OSError as exc:
            raise SourceError(f"{path}: {exc.strerror or exc}") from None
        identity = (
            f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"
        )
        changed_ns = max(stat.st_mtime_ns, stat.st_ctime_ns)
        racy = time.time_ns() - changed_ns < RACY_WINDOW_NS
        if marker is not None and marker.startswith(identity + "#") and not racy:
            return None
        data = read_document_file(path)
        current = f"{identity}#{hashlib.sha256(data).hexdigest()}"
        if current == marker:
            return None  # read again because the stamp was too recent to trust: same bytes
        self.bytes_downloaded += len(data)
        return Fetched(data, current)


def open_source(location: SourceLocation) -> DocumentSource:
    """The source for a location; S3 clients come from boto3's normal configuration.

    boto3 is imported only for S3 sources: it is a quarter of the agent's memory
    on a node that reads a file.
    """
    if isinstance(location, FileLocation):
        return FileSource(location)
    from resolver.adapters.s3_source import open_s3_source  # noqa: PLC0415

    source: S3Source = open_s3_source(location)
    return source
