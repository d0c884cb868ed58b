"""S3 side of the publisher: read the mapping in force, put only objects whose bytes changed.

Every object is compared with what is stored before it is written, so an
unchanged fleet costs reads only: ETags stay put and agents polling with
If-None-Match keep getting 304s.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from resolver.adapters.aws import AWS_ERRORS, describe_error, error_code
from resolver.core.publication import PublishedObject, mapping_key
from resolver.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING_KEY = frozenset({"NoSuchKey", "404"})
_MISSING_BUCKET = frozenset({"NoSuchBucket"})
_NOT_MODIFIED = frozenset({"304", "NotModified"})
_WRITE_WORKERS = 8


class WriteError(AwsError):
    """Writing stopped at a failing object; ``written`` holds the keys already PUT.

    The mapping goes last, so when it is not in ``written`` agents still see the
    previous document, but hosts files in ``written`` already hold the new content.
    """

    def __init__(self, message: str, written: tuple[str, ...]) -> None:
        super().__init__(message)
        self.written = written


class S3Store:
    """The objects under ``s3://bucket/prefix/``."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def read_mapping(self) -> bytes | None:
        """The current mapping document's bytes, or None when there is none yet."""
        return self.read(mapping_key(self.prefix))

    def read(self, key: str) -> bytes | None:
        """An object's bytes, or None when it does not exist."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if error_code(exc) in _MISSING_KEY:
                return None
            raise self._error("read", key, exc) from None
        except AWS_ERRORS as exc:
            raise self._error("read", key, exc) from None

    def differs(self, obj: PublishedObject) -> bool:
        """True unless the stored object already holds exactly ``obj.body``.

        The GET is conditional on the body's MD5, so an unchanged object costs a
        304 and no download. ETags are MD5s only for plain uploads; for other
        objects the body comes back and the bytes are compared.
        """
        md5 = hashlib.md5(obj.body, usedforsecurity=False).hexdigest()
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=obj.key, IfNoneMatch=f'"{md5}"')
            return bool(reply["Body"].read() != obj.body)
        except ClientError as exc:
            code = error_code(exc)
            if code in _NOT_MODIFIED:
                return False
            if code in _MISSING_KEY:
                return True
            raise self._error("read", obj.key, exc) from None
        except AWS_ERRORS as exc:
            raise self._error("read", obj.key, exc) from None

    def sync(
        self, objects: Sequence[PublishedObject], known: dict[str, bytes | None] | None = None
    ) -> list[str]:
        """Put each object whose stored bytes differ, in order; returns the keys written.

        All but the last object are written concurrently; the last (the mapping
        document) only after every other one succeeded. ``known`` holds bytes
        already read this run (the mapping), to save a second GET.

        A failure raises WriteError listing the keys already written: S3 has no
        transaction, so the caller must be able to tell the user what changed.
        """
        if not objects:
            return []
        known = known or {}
        *early, last = objects
        done: set[str] = set()
        lock = threading.Lock()

        def put(obj: PublishedObject) -> None:
            if self._put_if_changed(obj, known):
                with lock:
                    done.add(obj.key)

        def written() -> list[str]:
            return [obj.key for obj in objects if obj.key in done]

        if early:
            with ThreadPoolExecutor(
                max_workers=min(_WRITE_WORKERS, len(early)), thread_name_prefix="tagdns-s3"
            ) as pool:
                futures = [pool.submit(put, obj) for obj in early]
            # Every put has finished (the pool waited), so ``done`` is complete; the
            # first failure in write order is reported, whatever the timing.
            for future in futures:
                exc = future.exception()
                if isinstance(exc, AwsError):
                    raise WriteError(str(exc), tuple(written())) from None
                if exc is not None:
                    raise exc
        try:
            put(last)
        except AwsError as exc:
            raise WriteError(str(exc), tuple(written())) from None
        return written()

    def pending(
        self, objects: Sequence[PublishedObject], known: dict[str, bytes | None] | None = None
    ) -> list[str]:
        """The keys ``sync`` would put, in order, compared the same way; nothing is written.

        For a dry run: it must list what the real run would write (a deleted hosts
        file, a zone change), not only whether the document changed.
        """
        if not objects:
            return []
        known = known or {}
        with ThreadPoolExecutor(
            max_workers=min(_WRITE_WORKERS, len(objects)), thread_name_prefix="tagdns-s3"
        ) as pool:
            changed = list(pool.map(lambda obj: self._changed(obj, known), objects))
        return [obj.key for obj, differs in zip(objects, changed, strict=True) if differs]

    def _changed(self, obj: PublishedObject, known: dict[str, bytes | None]) -> bool:
        return known[obj.key] != obj.body if obj.key in known else self.differs(obj)

    def _put_if_changed(self, obj: PublishedObject, known: dict[str, bytes | None]) -> bool:
        if not self._changed(obj, known):
            return False
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=obj.key, Body=obj.body, ContentType=obj.content_type
            )
        except AWS_ERRORS as exc:
            raise self._error("write", obj.key, exc) from None
        return True

    def _error(self, verb: str, key: str, exc: Exception) -> AwsError:
        if isinstance(exc, ClientError):
            code = error_code(exc)
            if code in _MISSING_BUCKET:
                return AwsError(f"bucket {self.bucket!r} does not exist")
            if code == "AccessDenied" and verb == "read":
                return AwsError(
                    f"cannot read {self.url(key)}: access denied (the publisher needs "
                    "s3:GetObject on the prefix, and s3:ListBucket to tell a missing object)"
                )
        return AwsError(f"cannot {verb} {self.url(key)}: {describe_error(exc)}")
