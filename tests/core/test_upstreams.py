"""Choosing upstream resolvers: none/auto/explicit, resolv.conf parsing, loop refusal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.endpoints import Endpoint, parse_endpoint
from resolver.core.upstreams import (
    VPC_RESOLVER,
    choose_upstreams,
    is_self,
    nameservers_from_resolv_conf,
)
from resolver.errors import ConfigError

STUB = [Endpoint("127.0.0.53", 53)]
"""The default listen address: where systemd-resolved's stub would be."""


def ep(text: str) -> Endpoint:
    return parse_endpoint(text, default_port=53)


def never_ec2() -> bool:
    raise AssertionError("on_ec2 must not be called when resolv.conf names a usable server")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nameserver 10.0.0.2\n", ["10.0.0.2"]),
        ("nameserver 10.0.0.2\nnameserver 1.1.1.1\n", ["10.0.0.2", "1.1.1.1"]),
        ("# nameserver 9.9.9.9\n; nameserver 8.8.8.8\nnameserver 10.0.0.2", ["10.0.0.2"]),
        ("nameserver 10.0.0.2 # the VPC resolver\n", ["10.0.0.2"]),
        ("nameserver 10.0.0.2;comment\n", ["10.0.0.2"]),
        ("  \tnameserver\t10.0.0.2  \n", ["10.0.0.2"]),
        ("nameserver 10.0.0.2\r\nnameserver 10.0.0.3\r\n", ["10.0.0.2", "10.0.0.3"]),
        ("nameserver fd00:ec2::253\n", ["fd00:ec2::253"]),
        ("nameserver 2001:DB8:0:0::1\n", ["2001:db8::1"]),
        ("nameserver fe80::1%eth0\n", ["fe80::1%eth0"]),
        ("nameserver\nnameserver \nnameserver dns.example.com\n", []),
        ("nameserver 10.0.0.256\nnameserver 1.2.3\nnameserver ::g\n", []),
        ("nameservers 10.0.0.2\nNAMESERVER 10.0.0.3\nserver 10.0.0.4\n", []),
        ("search ec2.internal\noptions edns0 trust-ad\ndomain x\n", []),
        ("\x00\xff garbage \u2028 nameserver 10.0.0.9\n", []),
        ("nameserver 10.0.0.2 10.0.0.3\n", ["10.0.0.2"]),
        ("", []),
    ],
    ids=[
        "one",
        "order-kept",
        "comment-lines",
        "trailing-hash-comment",
        "trailing-semicolon-comment",
        "whitespace",
        "crlf",
        "ipv6",
        "ipv6-normalised",
        "ipv6-zone-index-kept",
        "no-address-or-hostname",
        "bad-addresses",
        "other-keywords",
        "other-lines",
        "garbage-line",
        "extra-fields",
        "empty",
    ],
)
def test_nameservers_from_resolv_conf(text: str, expected: list[str]) -> None:
    servers = nameservers_from_resolv_conf(text)
    assert servers == [Endpoint(host, 53) for host in expected]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_resolv_conf_text_gives_endpoints_never_an_error(text: str) -> None:
    for server in nameservers_from_resolv_conf(text):
        assert server.port == 53
        is_self(server, STUB)  # every address it returns is usable downstream


@pytest.mark.parametrize(
    ("upstream", "listen", "loop"),
    [
        ("127.0.0.53:53", ["127.0.0.53:53"], True),
        ("127.0.0.53:5353", ["127.0.0.53:53"], False),
        ("127.0.0.1:53", ["127.0.0.53:53"], False),
        ("10.0.0.2:53", ["127.0.0.53:53"], False),
        ("127.0.0.1:53", ["10.0.0.5:5300", "127.0.0.1:53"], True),
        ("127.0.0.1:53", ["0.0.0.0:53"], True),
        ("127.9.9.9:53", ["0.0.0.0:53"], True),
        ("[::1]:53", ["0.0.0.0:53"], False),  # an IPv4 socket never sees IPv6
        ("[::1]:53", ["[::]:53"], True),
        ("127.0.0.1:53", ["[::]:53"], True),  # a dual-stack UDP socket on [::] does
        ("[::1]:53", ["[::1]:53"], True),
        ("[::ffff:127.0.0.53]:53", ["127.0.0.53:53"], True),
        ("0.0.0.0:53", ["127.0.0.1:53"], True),  # sent to 0.0.0.0 it arrives on 127.0.0.1
        ("0.0.0.0:53", ["0.0.0.0:53"], True),
        ("[::]:53", ["[::1]:53"], True),
        ("0.0.0.0:53", ["127.0.0.53:53"], False),
        ("10.0.0.2:53", ["0.0.0.0:53"], False),  # our own interface address: undetectable here
    ],
)
def test_is_self(upstream: str, listen: list[str], loop: bool) -> None:
    assert is_self(ep(upstream), [ep(e) for e in listen]) is loop


def test_none_turns_forwarding_off_and_stands_alone() -> None:
    assert choose_upstreams(["none"], STUB, on_ec2=never_ec2) == []
    with pytest.raises(ConfigError, match="none"):
        choose_upstreams(["none", "10.0.0.2"], STUB)


def test_explicit_upstreams_keep_their_order_and_lose_duplicates() -> None:
    chosen = choose_upstreams(
        ["10.0.0.2", "1.1.1.1:5353", "10.0.0.2:53", "[fd00::53]"], STUB, on_ec2=never_ec2
    )
    assert chosen == [Endpoint("10.0.0.2", 53), Endpoint("1.1.1.1", 5353), Endpoint("fd00::53", 53)]


@pytest.mark.parametrize(
    ("spec", "listen"),
    [
        (["127.0.0.53"], ["127.0.0.53:53"]),
        (["10.0.0.2", "127.0.0.1:5300"], ["127.0.0.1:5300"]),
        (["127.0.0.1"], ["0.0.0.0:53"]),
    ],
)
def test_an_explicit_upstream_that_is_ourselves_is_refused(
    spec: list[str], listen: list[str]
) -> None:
    with pytest.raises(ConfigError, match="forwarding loop") as caught:
        choose_upstreams(spec, [ep(e) for e in listen], on_ec2=never_ec2)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("bad", ["dns.example.com", "10.0.0.2:99999", "[::1", ""])
def test_malformed_upstreams_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        choose_upstreams([bad], STUB, on_ec2=never_ec2)


@pytest.mark.parametrize("zero", ["127.0.0.1:0", "[::1]:0"])
def test_port_zero_is_no_upstream(zero: str) -> None:
    """Every query sent there fails: refused at start, with the way to say 53."""
    with pytest.raises(ConfigError, match=r"port 0 cannot be asked \(leave the port out"):
        choose_upstreams([zero], STUB, on_ec2=never_ec2)


def test_auto_uses_resolv_conf_without_asking_about_ec2() -> None:
    chosen = choose_upstreams(
        ["auto"], STUB, ["nameserver 10.0.0.2\nnameserver 10.0.0.3\n"], on_ec2=never_ec2
    )
    assert chosen == [Endpoint("10.0.0.2", 53), Endpoint("10.0.0.3", 53)]


def test_auto_skips_ourselves_in_resolv_conf() -> None:
    etc = "nameserver 127.0.0.53\nnameserver 10.0.0.2\n"
    assert choose_upstreams(["auto"], STUB, [etc], on_ec2=never_ec2) == [Endpoint("10.0.0.2", 53)]


def test_auto_falls_back_to_systemd_resolveds_file() -> None:
    etc = "# managed by the agent\nnameserver 127.0.0.53\noptions edns0\n"
    resolved = "nameserver 10.0.0.2\nsearch ec2.internal\n"
    chosen = choose_upstreams(["auto"], STUB, [etc, resolved], on_ec2=never_ec2)
    assert chosen == [Endpoint("10.0.0.2", 53)]


@pytest.mark.parametrize(
    "confs",
    [[], ["nameserver 127.0.0.53\n"], ["nameserver 127.0.0.53\n", "# nothing\n"], ["garbage"]],
)
def test_auto_uses_the_vpc_resolver_only_on_ec2(confs: list[str]) -> None:
    asked: list[bool] = []

    def on_ec2() -> bool:
        asked.append(True)
        return True

    assert choose_upstreams(["auto"], STUB, confs, on_ec2=on_ec2) == [VPC_RESOLVER]
    assert asked == [True]
    assert Endpoint("169.254.169.253", 53) == VPC_RESOLVER
    with pytest.raises(ConfigError, match="not EC2") as caught:
        choose_upstreams(["auto"], STUB, confs, on_ec2=lambda: False)
    assert "--upstream" in str(caught.value)


def test_auto_mixed_with_explicit_upstreams() -> None:
    chosen = choose_upstreams(
        ["10.9.9.9", "auto", "10.0.0.2"], STUB, ["nameserver 10.0.0.2\n"], on_ec2=never_ec2
    )
    assert chosen == [Endpoint("10.9.9.9", 53), Endpoint("10.0.0.2", 53)]


def test_auto_with_a_wildcard_listener_skips_every_loopback_nameserver() -> None:
    etc = "nameserver 127.0.0.53\nnameserver 127.0.0.1\nnameserver ::1\nnameserver 10.0.0.2\n"
    chosen = choose_upstreams(["auto"], [ep("[::]:53")], [etc], on_ec2=never_ec2)
    assert chosen == [Endpoint("10.0.0.2", 53)]
