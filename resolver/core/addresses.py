"""Address validation shared by the document parser, the scanner and the config.

Every document carries one or two addresses per host, and an agent validates,
sorts and compiles 100,000 of them on each reload: the common case (a canonical
dotted quad) is handled with one regular expression and integer arithmetic,
and ``ipaddress`` is kept for IPv6 and for the wording of errors.
"""

from __future__ import annotations

import ipaddress
import re

from resolver.errors import DocumentError

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
CANONICAL_IPV4_TEXT = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
CANONICAL_IPV4 = re.compile(CANONICAL_IPV4_TEXT + r"\Z")
"""A dotted quad in the one form ``str(IPv4Address(...))`` produces: no leading zeros."""


def ipv4_packed(address: str) -> bytes:
    """The four bytes of a canonical dotted quad (validated already)."""
    return bytes(map(int, address.split(".")))


def canonical_ipv4(value: object, field: str) -> str:
    """Return the dotted-quad form of an IPv4 address or raise naming ``field``."""
    if not isinstance(value, str):
        raise DocumentError(f"{field}: expected an IPv4 address string, got {type(value).__name__}")
    if CANONICAL_IPV4.match(value):
        return value
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise DocumentError(f"{field}: {value!r} is not an IPv4 address") from None


_PLAIN_IPV6 = re.compile(r"[0-9a-f:]{2,39}\Z")
"""Lowercase hex groups and colons only: the form the document stores (no IPv4 tail, no zone)."""


def _plain_ipv6_hex(text: str) -> str | None:
    """The 32 hex digits of a plain lowercase IPv6 address, or None for anything else.

    A fast path for ``ipaddress``: the characters are checked first, so nothing
    but hex digits and colons reaches the group logic, and the groups are padded
    by ``str.zfill`` rather than converted one by one.
    """
    if _PLAIN_IPV6.match(text) is None:
        return None
    head, double, tail = text.partition("::")
    if double:
        if "::" in tail:
            return None
        left = head.split(":") if head else []
        right = tail.split(":") if tail else []
        missing = 8 - len(left) - len(right)
        if missing < 1:
            return None
        groups = [*left, *(["0"] * missing), *right]
    else:
        groups = text.split(":")
        if len(groups) != 8:
            return None
    if "" in groups:  # ":1::", "1:::2" and the like
        return None
    hexed = "".join([group.zfill(4) for group in groups])
    return hexed if len(hexed) == 32 else None  # longer: a group of five digits or more


def ipv6_value(text: str) -> int | None:
    """The integer of a plain lowercase IPv6 address, or None for anything else."""
    hexed = _plain_ipv6_hex(text)
    return None if hexed is None else int(hexed, 16)


def format_ipv6(value: int) -> str:
    """RFC 5952 text, as ``IPv6Address.compressed`` writes it: longest zero run (>1) as '::'.

    The first longest run is found by ``str.find``, longest first, on the groups
    joined between colons.
    """
    hexed = f"{value:032x}"
    groups = [hexed[i : i + 4].lstrip("0") or "0" for i in range(0, 32, 4)]
    padded = ":" + ":".join(groups) + ":"
    for run in range(8, 1, -1):
        zeros = ":0" * run + ":"
        at = padded.find(zeros)
        if at >= 0:
            after = at + len(zeros)
            return padded[1:at] + "::" + padded[after:-1]
    return padded[1:-1]


def ipv6_packed(address: str) -> bytes:
    hexed = _plain_ipv6_hex(address)
    if hexed is None:
        return ipaddress.IPv6Address(address).packed
    return bytes.fromhex(hexed)


_GROUP = "[1-9a-f][0-9a-f]{0,3}"
PLAINLY_CANONICAL_IPV6 = re.compile(
    rf"(?:{_GROUP}(?::{_GROUP}){{7}}"
    rf"|(?!(?::*+[0-9a-f]++){{7}})(?:{_GROUP}(?::{_GROUP})*)?::(?:{_GROUP}(?::{_GROUP})*)?)\Z"
)
"""IPv6 texts that are canonical at sight: no zero group but those ``::`` stands for.

RFC 5952 text writes each group without leading zeros and the longest run (two
or more) of zero groups as ``::``. When no other group is zero, that run is the
only one, so the text is canonical if ``::`` stands for at least two groups: at
most six are written around it (the lookahead refuses a seventh). Most
addresses a fleet carries (``2600:1f18:1234:5600::4``) are in this form, and
one match costs a tenth of the full check, which any other text takes."""


def canonical_ipv6(value: object, field: str) -> str:
    """Return the compressed form of an IPv6 address or raise naming ``field``."""
    if not isinstance(value, str):
        raise DocumentError(f"{field}: expected an IPv6 address string, got {type(value).__name__}")
    if PLAINLY_CANONICAL_IPV6.match(value):
        return value
    fast = ipv6_value(value)
    if fast is not None and format_ipv6(fast) == value:
        return value
    try:
        if "%" in value:  # a scope id is free text, never an address to publish
            raise ValueError(value)
        return ipaddress.IPv6Address(value).compressed
    except ValueError:
        raise DocumentError(f"{field}: {value!r} is not an IPv6 address") from None


def address_sort_key(address: str) -> tuple[int, int]:
    """Numeric order for a mix of IPv4 and IPv6 addresses: the stable answer order."""
    if CANONICAL_IPV4.match(address):
        return (4, int.from_bytes(ipv4_packed(address), "big"))
    fast = ipv6_value(address)
    if fast is not None:
        return (6, fast)
    parsed = ipaddress.ip_address(address)
    return (parsed.version, int(parsed))
