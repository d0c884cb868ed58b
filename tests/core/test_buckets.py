"""Bucket names and prefixes checked before any AWS call, with a hint when a URL or a path
was given."""

from __future__ import annotations

import pytest

from resolver.core.buckets import bucket_problem, check_bucket_name, check_prefix, prefix_problem
from resolver.errors import ConfigError

URL_HINT = "give the bucket name, not an s3:// URL"


@pytest.mark.parametrize(
    "name",
    [
        "fleet-config",
        "abc",
        "my.bucket.example",
        "a" * 63,
        # Buckets from before March 2018 in us-east-1: still usable, so still accepted.
        "Legacy_Bucket",
        "b" * 255,
        "arn:aws:s3:us-east-1:123456789012:accesspoint/fleet-ap",
        "fleet-ap-abcdefghijklmnop-s3alias",
    ],
)
def test_usable_bucket_names_pass(name: str) -> None:
    assert bucket_problem(name) is None
    check_bucket_name(name)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "s3://fleet-config",
            "give the bucket name, not an s3:// URL; use --bucket 'fleet-config'",
        ),
        (
            "s3://fleet-config/dns",
            URL_HINT + "; use --bucket 'fleet-config' and --prefix 'dns'",
        ),
        (
            "S3://fleet-config/dns/mapping.json",
            URL_HINT + "; use --bucket 'fleet-config' and --prefix 'dns'",
        ),
        (
            "s3://fleet-config/mapping.json",
            "give the bucket name, not an s3:// URL; use --bucket 'fleet-config' and --prefix ''",
        ),
        ("s3://", "give the bucket name, not an s3:// URL"),
        (
            "fleet-config/dns",
            "a bucket name cannot contain '/'; use --bucket 'fleet-config' and --prefix 'dns'",
        ),
        ("fleet-config/", "a bucket name cannot contain '/'; use --bucket 'fleet-config'"),
        ("/dns", "a bucket name cannot contain '/'"),
        ("ab", "a bucket name has 3 to 63 characters"),
        ("c" * 256, "a bucket name has 3 to 63 characters"),
        (" fleet", "a bucket name cannot have leading or trailing spaces"),
        (
            "fleet config",
            "a bucket name holds only lowercase letters, digits, '.' and '-', not ' '",
        ),
        (
            "fleet:config",
            "a bucket name holds only lowercase letters, digits, '.' and '-', not ':'",
        ),
        ("-fleet", "a bucket name begins and ends with a letter or digit"),
        ("fleet.", "a bucket name begins and ends with a letter or digit"),
        ("fleet..config", "a bucket name cannot have two dots in a row"),
        ("192.168.5.4", "a bucket name cannot be an IP address"),
    ],
)
def test_bad_bucket_names_say_why(value: str, problem: str) -> None:
    assert bucket_problem(value) == problem
    with pytest.raises(ConfigError) as raised:
        check_bucket_name(value)
    assert str(raised.value) == f"--bucket {value!r}: {problem}"


def test_the_hint_uses_the_callers_spelling() -> None:
    """config.py passes its own field names, so the hint matches what the file says."""
    with pytest.raises(ConfigError) as raised:
        check_bucket_name("s3://fleet-config/dns", "[publish] bucket", "[publish] prefix")

    assert str(raised.value) == (
        "[publish] bucket 's3://fleet-config/dns': give the bucket name, not an s3:// URL; "
        "use [publish] bucket 'fleet-config' and [publish] prefix 'dns'"
    )


@pytest.mark.parametrize(
    "prefix",
    ["dns", "dns/", "dns//", "", "a/b", "fleet_v2/dns-prod.1", "A.b_c-D", "a/b/c/d", "..a", "a.."],
)
def test_usable_prefixes_pass(prefix: str) -> None:
    assert prefix_problem(prefix) is None
    check_prefix(prefix)


NOT_RELATIVE = "is not a relative key: "
SEGMENT_CHARS = "; a prefix is segments of letters, digits, '.', '_' and '-' separated by '/'"
OBJECT = "names an object, not a prefix (the publisher adds mapping.json and hosts/ under it)"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "s3://fleet-config/dns",
            "is an s3:// URL, not a key prefix; use --bucket 'fleet-config' and --prefix 'dns'",
        ),
        (
            "S3://fleet-config/dns/mapping.json",
            "is an s3:// URL, not a key prefix; use --bucket 'fleet-config' and --prefix 'dns'",
        ),
        ("s3://fleet-config", "is an s3:// URL, not a key prefix; use --bucket 'fleet-config'"),
        ("s3://", "is an s3:// URL, not a key prefix"),
        ("/dns", NOT_RELATIVE + "it starts with '/'"),
        ("/", NOT_RELATIVE + "it starts with '/'"),
        ("dns ", "holds whitespace or a control character (' ')"),
        (" dns", "holds whitespace or a control character (' ')"),
        ("dns\n", "holds whitespace or a control character ('\\n')"),
        ("dns\tx", "holds whitespace or a control character ('\\t')"),
        ("dns\x00", "holds whitespace or a control character ('\\x00')"),
        ("dns\u200b", "holds whitespace or a control character ('\\u200b')"),
        (
            "./dns",
            NOT_RELATIVE
            + "'.' is a segment of its own (S3 keys are not paths, so it is not resolved)",
        ),
        ("dns/.", NOT_RELATIVE + "'.' is a segment of its own"),
        ("..", NOT_RELATIVE + "'..' is a segment of its own"),
        ("a/../b", NOT_RELATIVE + "'..' is a segment of its own"),
        ("dns//x", "has an empty segment ('//'): S3 keeps it as part of the key"),
        ("dns/mapping.json", OBJECT + "; use --prefix 'dns'"),
        ("mapping.json", OBJECT + "; use --prefix ''"),
        ("dns/hosts/eu-west-1.hosts", OBJECT + "; use --prefix 'dns'"),
        ("dns/Mapping.JSON/", OBJECT + "; use --prefix 'dns'"),
        ("dns@prod", "holds '@'" + SEGMENT_CHARS),
        ("café", "holds 'é'" + SEGMENT_CHARS),
        ("dns\\x", "holds '\\\\'" + SEGMENT_CHARS),
    ],
)
def test_bad_prefixes_say_why(value: str, problem: str) -> None:
    found = prefix_problem(value)
    assert found is not None
    assert found.startswith(problem)
    with pytest.raises(ConfigError) as raised:
        check_prefix(value)
    assert str(raised.value) == f"--prefix {value!r} {found}"
    assert "\n" not in str(raised.value)


def test_the_prefix_error_uses_the_callers_spelling_and_origin() -> None:
    with pytest.raises(ConfigError) as raised:
        check_prefix("s3://fleet-config/dns", "[publish] prefix", "[publish] bucket", "tagdns.toml")

    assert str(raised.value) == (
        "tagdns.toml: [publish] prefix 's3://fleet-config/dns' is an s3:// URL, not a key prefix; "
        "use [publish] bucket 'fleet-config' and [publish] prefix 'dns'"
    )
