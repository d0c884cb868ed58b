"""Where a mapping document comes from: ``s3://bucket/key``, ``file:///path`` or a path."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from resolver.errors import ConfigError


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class FileLocation:
    path: str

    def __str__(self) -> str:
        return self.path


SourceLocation = S3Location | FileLocation


def parse_source(url: str) -> SourceLocation:
    """Parse a source URL; errors name the URL."""
    if not url:
        raise ConfigError("source: empty URL")
    if url.startswith("s3://"):
        parts = urlsplit(url)
        key = parts.path.lstrip("/")
        if not parts.netloc or not key or key.endswith("/"):
            raise ConfigError(f"source {url!r}: expected s3://BUCKET/KEY")
        return S3Location(parts.netloc, key)
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"source {url!r}: expected file:///ABSOLUTE/PATH")
        return FileLocation(unquote(parts.path))
    if "://" in url:
        raise ConfigError(f"source {url!r}: only s3://, file:// and plain paths are supported")
    return FileLocation(url)
