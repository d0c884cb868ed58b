"""S3 bucket names and key prefixes as a user types them: checked before any AWS call.

A bucket is a name, not a URL. Given ``s3://fleet-config`` or ``fleet-config/dns``,
botocore answers after building a client with a long regular expression, and the
CLI would report it as an AWS failure (exit 1). Checking here turns it into a
usage error (exit 2) that says what to type instead. Pure, so ``config.py``, the
CLI and the publisher share one rule.

The rule is what S3 accepts for an *existing* bucket, not only for a new one:
buckets created in us-east-1 before March 2018 may hold capitals and
underscores and be up to 255 characters long, and they still work, so refusing
them would lock their owners out. Access point ARNs are accepted as botocore
accepts them.

A prefix is refused when it would publish somewhere the user did not mean: S3
takes any key, so ``s3://fleet-config/dns`` as a prefix writes
``s3://fleet-config/s3://fleet-config/dns/mapping.json``, ``dns `` (a pasted trailing
space) writes beside the agents' ``dns/``, ``./dns`` or ``dns//x`` are not the keys
they look like, and ``dns/mapping.json`` nests a second mapping under the first.
"""

from __future__ import annotations

import ipaddress
import re

from resolver.core.publication import MAPPING_NAME
from resolver.errors import ConfigError

_ALLOWED = re.compile(r"[A-Za-z0-9._-]+")
_EDGE = re.compile(r"[A-Za-z0-9]")
_ACCESS_POINT_ARN = re.compile(
    r"arn:aws[a-z-]*:s3(?:-object-lambda)?:[a-z0-9-]*:[0-9]{12}:accesspoint[/:][A-Za-z0-9.-]{1,63}"
)
_MIN_LENGTH = 3
_MAX_LENGTH = 255
_S3_URL = "s3://"
_OBJECT_SUFFIXES = (".json", ".hosts")
_HOSTS_DIR = "hosts"


def check_bucket_name(value: str, field: str = "--bucket", prefix_field: str = "--prefix") -> None:
    """Raise ConfigError naming ``field`` and the value when ``value`` cannot be a bucket.

    ``field`` and ``prefix_field`` are how the caller's user spells the two
    settings (``--bucket``/``--prefix`` on the command line, ``[publish] bucket``/
    ``[publish] prefix`` in a file), so the hint can be typed as shown. The caller
    adds the file name, if any.
    """
    problem = bucket_problem(value, field, prefix_field)
    if problem is not None:
        raise ConfigError(f"{field} {value!r}: {problem}")


def bucket_problem(
    value: str, field: str = "--bucket", prefix_field: str = "--prefix"
) -> str | None:
    """Why ``value`` is not a usable bucket name (with a hint when one helps), or None."""
    if _ACCESS_POINT_ARN.fullmatch(value):
        return None
    if value.lower().startswith(_S3_URL):
        bucket, _, prefix = value[len(_S3_URL) :].partition("/")
        return "give the bucket name, not an s3:// URL" + _hint(bucket, prefix, field, prefix_field)
    if "/" in value:
        bucket, _, prefix = value.partition("/")
        return "a bucket name cannot contain '/'" + _hint(bucket, prefix, field, prefix_field)
    if value != value.strip():
        return "a bucket name cannot have leading or trailing spaces"
    if not _MIN_LENGTH <= len(value) <= _MAX_LENGTH:
        return f"a bucket name has {_MIN_LENGTH} to 63 characters"
    if not _ALLOWED.fullmatch(value):
        bad = next(c for c in value if not _ALLOWED.fullmatch(c))
        return f"a bucket name holds only lowercase letters, digits, '.' and '-', not {bad!r}"
    if not (_EDGE.fullmatch(value[0]) and _EDGE.fullmatch(value[-1])):
        return "a bucket name begins and ends with a letter or digit"
    if ".." in value:
        return "a bucket name cannot have two dots in a row"
    if _is_ipv4(value):
        return "a bucket name cannot be an IP address"
    return None


def check_prefix(
    value: str, field: str = "--prefix", bucket_field: str = "--bucket", origin: str = ""
) -> None:
    """Raise ConfigError naming ``field`` and the value when ``value`` cannot be a prefix.

    ``field`` and ``bucket_field`` as for ``check_bucket_name``; ``origin`` (a file
    name, "command line") goes first when given.
    """
    problem = prefix_problem(value, field, bucket_field)
    if problem is not None:
        where = f"{origin}: " if origin else ""
        raise ConfigError(f"{where}{field} {value!r} {problem}")


def prefix_problem(
    value: str, field: str = "--prefix", bucket_field: str = "--bucket"
) -> str | None:
    """Why ``value`` is not a usable key prefix (a predicate, with a hint), or None.

    A prefix is ``/``-separated segments of letters, digits, ``.``, ``_`` and ``-``,
    none empty, ``.`` or ``..``; trailing ``/`` are dropped (``dns/`` is ``dns``) and
    the empty prefix is the bucket's root.
    """
    if value.lower().startswith(_S3_URL):
        bucket, _, prefix = value[len(_S3_URL) :].partition("/")
        return "is an s3:// URL, not a key prefix" + _hint(bucket, prefix, bucket_field, field)
    if value.startswith("/"):
        return "is not a relative key: it starts with '/'"
    odd = next((c for c in value if c.isspace() or not c.isprintable()), None)
    if odd is not None:
        return f"holds whitespace or a control character ({odd!r})"
    path = value.rstrip("/")
    if not path:
        return None
    for segment in path.split("/"):
        if not segment:
            return "has an empty segment ('//'): S3 keeps it as part of the key"
        if segment in (".", ".."):
            return (
                f"is not a relative key: {segment!r} is a segment of its own "
                "(S3 keys are not paths, so it is not resolved)"
            )
        if not _ALLOWED.fullmatch(segment):
            bad = next(c for c in segment if not _ALLOWED.fullmatch(c))
            return (
                f"holds {bad!r}; a prefix is segments of letters, digits, '.', '_' and '-' "
                "separated by '/'"
            )
    if path.lower().endswith(_OBJECT_SUFFIXES):
        parent = _prefix_of_object(path)
        return (
            "names an object, not a prefix (the publisher adds mapping.json and "
            f"hosts/ under it); use {field} {parent!r}"
        )
    return None


def _prefix_of_object(path: str) -> str:
    """``dns/mapping.json`` and ``dns/hosts/eu-west-1.hosts`` are both under ``dns``."""
    parent, _, _ = path.rpartition("/")
    head, _, last = parent.rpartition("/")
    return head if last == _HOSTS_DIR and path.lower().endswith(".hosts") else parent


def _hint(bucket: str, prefix: str, field: str, prefix_field: str) -> str:
    """``; use --bucket 'b' and --prefix 'p'`` for what the user most likely meant.

    A pasted source URL ends in ``mapping.json``, which the publisher adds itself.
    """
    path = prefix.strip("/")
    prefix = path.rpartition("/")[0] if path.rpartition("/")[2] == MAPPING_NAME else path
    if not bucket or bucket_problem(bucket) is not None:
        return ""
    if prefix or path:
        # An object at the bucket's root needs an explicit empty prefix (default: dns).
        return f"; use {field} {bucket!r} and {prefix_field} {prefix!r}"
    return f"; use {field} {bucket!r}"


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True
