"""Source URLs: what each form reads, and one error naming the value for the rest."""

from __future__ import annotations

import pytest

from resolver.core.source_url import FileLocation, S3Location, parse_source
from resolver.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://fleet-config/dns/mapping.json", S3Location("fleet-config", "dns/mapping.json")),
        # S3 keys may hold '?' and '#': as the AWS CLI does, all after the bucket is the key.
        ("s3://b/k?versionId=1", S3Location("b", "k?versionId=1")),
        ("s3://b/k#frag", S3Location("b", "k#frag")),
        ("s3://b/dir/a?b#c", S3Location("b", "dir/a?b#c")),
        ("s3://b/100%25.json", S3Location("b", "100%25.json")),
        ("s3://b//k", S3Location("b", "k")),
        ("file:///srv/mapping.json", FileLocation("/srv/mapping.json")),
        ("file://localhost/srv/mapping.json", FileLocation("/srv/mapping.json")),
        ("file:///srv/a%3Fb%23c.json", FileLocation("/srv/a?b#c.json")),
        ("/srv/a?b#c.json", FileLocation("/srv/a?b#c.json")),
        ("mapping.json", FileLocation("mapping.json")),
    ],
    ids=[
        "s3",
        "s3-question-mark",
        "s3-hash",
        "s3-both",
        "s3-percent-kept",
        "s3-double-slash",
        "file",
        "file-localhost",
        "file-percent-encoded",
        "plain-path-literal",
        "relative-path",
    ],
)
def test_sources(url: str, location: S3Location | FileLocation) -> None:
    assert parse_source(url) == location


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file:///srv/mapping.json?x=1", "a file URL ends its path at '?' or '#'; write"),
        ("file:///srv/mapping.json#top", "a file URL ends its path at '?' or '#'; write"),
        ("file:///srv/mapping.json?", "a file URL ends its path at '?' or '#'; write"),
        ("file://", "expected file:///ABSOLUTE/PATH"),
        ("s3://b", "expected s3://BUCKET/KEY"),
        ("s3://b/", "expected s3://BUCKET/KEY"),
        ("s3://b/dir/", "expected s3://BUCKET/KEY"),
        ("s3:///k", "expected s3://BUCKET/KEY"),
        ("ftp://x", "only s3://, file:// and plain paths are supported"),
    ],
)
def test_bad_sources_name_the_value(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_source(url, "[source] url")
    assert str(caught.value).startswith(f"[source] url {url!r}: {problem}")
