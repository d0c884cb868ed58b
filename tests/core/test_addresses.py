"""Address canonicalisation and the stable answer order."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.core.addresses import address_sort_key, canonical_ipv4, canonical_ipv6
from resolver.errors import DocumentError


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10.0.0.1", "10.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("255.255.255.255", "255.255.255.255")],
    ids=["private", "zero", "broadcast"],
)
def test_canonical_ipv4(value: str, expected: str) -> None:
    assert canonical_ipv4(value, "f") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("010.0.0.1", "f: '010.0.0.1' is not an IPv4 address"),
        ("10.0.0.1 ", "f: '10.0.0.1 ' is not an IPv4 address"),
        ("10.0.0.1\n", "f: '10.0.0.1\\n' is not an IPv4 address"),
        ("::1", "f: '::1' is not an IPv4 address"),
        ("", "f: '' is not an IPv4 address"),
        (167772161, "f: expected an IPv4 address string, got int"),
        (None, "f: expected an IPv4 address string, got NoneType"),
    ],
    ids=["leading-zero", "trailing-space", "newline", "ipv6", "empty", "int", "none"],
)
def test_canonical_ipv4_errors(value: object, message: str) -> None:
    with pytest.raises(DocumentError) as caught:
        canonical_ipv4(value, "f")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2600:1f18:0000:0000:0000:0000:0000:0001", "2600:1f18::1"),
        ("2600:1F18::A", "2600:1f18::a"),
        ("::ffff:10.0.0.1", "::ffff:a00:1"),
    ],
    ids=["compressed", "lowercase", "mapped"],
)
def test_canonical_ipv6(value: str, expected: str) -> None:
    assert canonical_ipv6(value, "f") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fe80::1%eth0", "f: 'fe80::1%eth0' is not an IPv6 address"),
        ("fe80::1%x\n1.2.3.4 evil", "f: 'fe80::1%x\\n1.2.3.4 evil' is not an IPv6 address"),
        ("10.0.0.1", "f: '10.0.0.1' is not an IPv6 address"),
        ("2600::1::2", "f: '2600::1::2' is not an IPv6 address"),
        (b"::1", "f: expected an IPv6 address string, got bytes"),
    ],
    ids=["scope-id", "scope-injection", "ipv4", "double-gap", "bytes"],
)
def test_canonical_ipv6_errors(value: object, message: str) -> None:
    with pytest.raises(DocumentError) as caught:
        canonical_ipv6(value, "f")
    assert str(caught.value) == message


def test_address_order_is_numeric_v4_before_v6() -> None:
    addresses = ["2600::10", "10.0.0.10", "2600::9", "10.0.0.9", "9.0.0.1"]
    assert sorted(addresses, key=address_sort_key) == [
        "9.0.0.1",
        "10.0.0.9",
        "10.0.0.10",
        "2600::9",
        "2600::10",
    ]


_GROUPS = st.lists(
    st.sampled_from([0, 0, 0, 1, 0x10, 0xABC, 0xFFFF]) | st.integers(0, 0xFFFF),
    min_size=8,
    max_size=8,
).map(lambda groups: int("".join(f"{g:04x}" for g in groups), 16))
"""Addresses rich in zero groups, where the compression rules bite."""


@given(st.integers(min_value=0, max_value=2**128 - 1) | _GROUPS)
def test_fast_ipv6_path_agrees_with_ipaddress(value: int) -> None:
    """The hand-written IPv6 parse and format must say exactly what ipaddress says."""
    import ipaddress

    from resolver.core import wire
    from resolver.core.addresses import format_ipv6, ipv6_packed, ipv6_value
    from resolver.core.zone import ipv6_reverse_wire

    address = ipaddress.IPv6Address(value)
    assert format_ipv6(value) == address.compressed
    assert ipv6_value(address.compressed) == value
    assert ipv6_value(address.exploded) == value
    reverse = ipv6_reverse_wire(ipv6_packed(address.compressed))
    assert reverse == wire.encode_name(address.reverse_pointer)


@pytest.mark.parametrize(
    "text",
    ["::1::", "1:2:3:4:5:6:7:8:9", "1::2::3", ":::", "12345::", "g::1", "::ffff:1.2.3.4",
     "+1::", "1_0::", " 1::", "1:2:3:4:5:6:7::8", "ABCD::1", ":1::", "1:::2", "1::2:",
     ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", "00001::", "::", "1::", "::1", "0:0:0:0:0:0:0:0",
     "1:2:3:4:5:6:7:8", "1::2:3:4:5:6:7"],
)  # fmt: skip
def test_fast_ipv6_parse_never_accepts_what_ipaddress_refuses(text: str) -> None:
    import ipaddress

    from resolver.core.addresses import ipv6_value

    try:
        expected: int | None = int(ipaddress.IPv6Address(text))
    except ValueError:
        expected = None
    value = ipv6_value(text)
    assert value is None or value == expected


@given(st.text(alphabet="0123456789abcdef:", min_size=0, max_size=42))
def test_fast_ipv6_parse_agrees_on_any_colon_hex_text(text: str) -> None:
    import ipaddress

    from resolver.core.addresses import ipv6_value

    try:
        expected: int | None = int(ipaddress.IPv6Address(text))
    except ValueError:
        expected = None
    assert ipv6_value(text) == expected


def _ipaddress_verdict(text: str) -> str:
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError:
        return "refused"


def _canonical_ipv6_verdict(text: str) -> str:
    try:
        return canonical_ipv6(text, "f")
    except DocumentError:
        return "refused"


@given(
    st.text(alphabet="0123456789abcdef:", min_size=0, max_size=42)
    | (st.integers(min_value=0, max_value=2**128 - 1) | _GROUPS).map(
        lambda value: ipaddress.IPv6Address(value).compressed
    )
)
def test_canonical_ipv6_says_what_ipaddress_says(text: str) -> None:
    """Its checks at sight (canonical forms with no zero group outside ``::``) included."""
    assert _canonical_ipv6_verdict(text) == _ipaddress_verdict(text)


@pytest.mark.parametrize(
    "text",
    ["1:2:3:4:5:6::7", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1:0::2", "1::0:2", "0::1",
     "1:0:0:2::3", "2600:1f18:1234:5600::4", "::", "1::", "::1", "1:2:3:4:5:6:7:8"],
)  # fmt: skip
def test_canonical_ipv6_on_compression_edges(text: str) -> None:
    assert _canonical_ipv6_verdict(text) == _ipaddress_verdict(text)
