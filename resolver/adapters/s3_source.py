"""The S3 mapping source: GetObject with If-None-Match, one-line errors.

Kept apart from resolver.adapters.sources so that importing boto3 is paid only
by agents that read S3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from resolver.adapters.aws import AWS_ERRORS, describe_error, error_code, make_session, s3_client
from resolver.adapters.file_source import MAX_DOCUMENT_BYTES
from resolver.adapters.sources import Fetched
from resolver.core.source_url import S3Location
from resolver.errors import SourceError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_NOT_MODIFIED = frozenset({"304", "NotModified"})


class S3Source:
    def __init__(self, location: S3Location, client: S3Client) -> None:
        self.location = location
        self.client = client
        self.bytes_downloaded = 0

    def fetch(self, marker: str | None) -> Fetched | None:
        bucket, key = self.location.bucket, self.location.key
        try:
            if marker is None:
                response = self.client.get_object(Bucket=bucket, Key=key)
            else:
                response = self.client.get_object(Bucket=bucket, Key=key, IfNoneMatch=marker)
            if response.get("ContentLength", 0) > MAX_DOCUMENT_BYTES:
                raise SourceError(f"{self.location}: larger than {MAX_DOCUMENT_BYTES} bytes")
            data = response["Body"].read()
        except ClientError as exc:
            if error_code(exc) in _NOT_MODIFIED:
                return None
            raise SourceError(f"{self.location}: {_describe(exc)}") from None
        except AWS_ERRORS as exc:
            raise SourceError(f"{self.location}: {_describe(exc)}") from None
        self.bytes_downloaded += len(data)
        return Fetched(data, str(response.get("ETag", "")))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in ("NoSuchKey", "404"):
            return "no such object"
        if code in ("AccessDenied", "403"):
            return "access denied (check the node's IAM policy: s3:GetObject on this key)"
        if code == "NoSuchBucket":
            return "no such bucket"
    return describe_error(exc)


def open_s3_source(location: S3Location) -> S3Source:
    return S3Source(location, s3_client(make_session()))
