"""ADDR:PORT parsing for listen, upstream and metrics addresses."""

from __future__ import annotations

import pytest

from resolver.core.endpoints import Endpoint, parse_endpoint
from resolver.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "default_port", "expected", "shown"),
    [
        ("127.0.0.1:53", None, Endpoint("127.0.0.1", 53), "127.0.0.1:53"),
        ("[::1]:5353", None, Endpoint("::1", 5353), "[::1]:5353"),
        ("[0:0::1]:0", None, Endpoint("::1", 0), "[::1]:0"),
        ("10.0.0.2:65535", None, Endpoint("10.0.0.2", 65535), "10.0.0.2:65535"),
        ("10.0.0.2", 53, Endpoint("10.0.0.2", 53), "10.0.0.2:53"),
        ("::1", 53, Endpoint("::1", 53), "[::1]:53"),
        ("[::1]", 53, Endpoint("::1", 53), "[::1]:53"),
        ("fd00::53", 5300, Endpoint("fd00::53", 5300), "[fd00::53]:5300"),
        ("1.1.1.1:853", 53, Endpoint("1.1.1.1", 853), "1.1.1.1:853"),
    ],
    ids=[
        "ipv4",
        "ipv6-brackets",
        "ipv6-normalised",
        "max-port",
        "ipv4-default-port",
        "ipv6-default-port",
        "ipv6-brackets-default-port",
        "ipv6-other",
        "explicit-beats-default",
    ],
)
def test_parse_endpoint(
    text: str, default_port: int | None, expected: Endpoint, shown: str
) -> None:
    endpoint = parse_endpoint(text, default_port=default_port)
    assert endpoint == expected
    assert str(endpoint) == shown


@pytest.mark.parametrize(
    ("text", "default_port", "message"),
    [
        ("localhost:53", None, "listen 'localhost:53': 'localhost' is not an IP address"),
        ("1.2.3:53", None, "listen '1.2.3:53': '1.2.3' is not an IP address"),
        ("", 53, "listen '': '' is not an IP address"),
        ("127.0.0.1:", None, "listen '127.0.0.1:': port must be 0 to 65535"),
        ("127.0.0.1:65536", None, "listen '127.0.0.1:65536': port must be 0 to 65535"),
        ("127.0.0.1:-1", None, "listen '127.0.0.1:-1': port must be 0 to 65535"),
        ("127.0.0.1:dns", None, "listen '127.0.0.1:dns': port must be 0 to 65535"),
        ("127.0.0.1:\u00b2", None, "listen '127.0.0.1:\u00b2': port must be 0 to 65535"),
        ("127.0.0.1:\uff15\uff13", None, "listen '127.0.0.1:\uff15\uff13': port must be 0 to"),
        ("127.0.0.1:" + "9" * 5000, None, "listen '127.0.0.1:9999"),
        ("[::1:53", None, "listen '[::1:53': missing ']'"),
        ("[::1]53", None, "listen '[::1]53': expected ':PORT' after ']'"),
        ("[::1]:", None, "listen '[::1]:': port must be 0 to 65535"),
        ("::1", None, "listen '::1': expected ADDR:PORT"),
        ("127.0.0.1", None, "listen '127.0.0.1': expected ADDR:PORT"),
        ("[localhost]:53", None, "listen '[localhost]:53': 'localhost' is not an IP address"),
        ("::1:53", None, "listen '::1:53': expected ADDR:PORT"),
    ],
    ids=[
        "hostname",
        "short-ipv4",
        "empty",
        "empty-port",
        "port-too-big",
        "negative-port",
        "named-port",
        "superscript-digit",
        "fullwidth-digits",
        "huge-port",
        "missing-bracket",
        "no-colon-after-bracket",
        "empty-port-after-bracket",
        "ipv6-without-port",
        "ipv4-without-port",
        "bracketed-hostname",
        "ipv6-port-ambiguous",
    ],
)
def test_parse_endpoint_errors(text: str, default_port: int | None, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_endpoint(text, default_port=default_port, what="listen")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("endpoint", "loopback", "version"),
    [
        (Endpoint("127.0.0.53", 53), True, 4),
        (Endpoint("::1", 53), True, 6),
        (Endpoint("10.0.0.1", 53), False, 4),
        (Endpoint("0.0.0.0", 53), False, 4),
        (Endpoint("::", 53), False, 6),
    ],
    ids=["loopback-v4", "loopback-v6", "private", "any-v4", "any-v6"],
)
def test_endpoint_properties(endpoint: Endpoint, loopback: bool, version: int) -> None:
    assert endpoint.is_loopback is loopback
    assert endpoint.family_version == version
