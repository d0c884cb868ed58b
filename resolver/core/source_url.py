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


def parse_source(url: str, what: str = "source") -> SourceLocation:
    """Parse a source URL; errors name ``what`` (the key or flag) and the URL."""
    if not url:
        raise ConfigError(
            f"{what} '': expected s3://BUCKET/KEY, file:///PATH or a path, not an empty string"
        )
    if url.startswith("s3://"):
        # Not split as a URL: an S3 key may hold '?' and '#', and the AWS CLI reads
        # everything after the bucket as the key. urlsplit would drop a query or a
        # fragment without a word, and the node would read another object.
        bucket, _, path = url.removeprefix("s3://").partition("/")
        key = path.lstrip("/")
        if not bucket or not key or key.endswith("/"):
            raise ConfigError(f"{what} {url!r}: expected s3://BUCKET/KEY")
        return S3Location(bucket, key)
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"{what} {url!r}: expected file:///ABSOLUTE/PATH")
        if "?" in url or "#" in url:
            # A file URL is a URL: its path ends there, and what follows would be lost.
            raise ConfigError(
                f"{what} {url!r}: a file URL ends its path at '?' or '#'; write them as "
                "%3F and %23, or give the plain path"
            )
        return FileLocation(unquote(parts.path))
    if "://" in url:
        raise ConfigError(f"{what} {url!r}: only s3://, file:// and plain paths are supported")
    return FileLocation(url)
