"""Address validation shared by the document parser, the scanner and the config."""

from __future__ import annotations

import ipaddress

from resolver.errors import DocumentError


def canonical_ipv4(value: object, field: str) -> str:
    """Return the dotted-quad form of an IPv4 address or raise naming ``field``."""
    if not isinstance(value, str):
        raise DocumentError(f"{field}: expected an IPv4 address string, got {type(value).__name__}")
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise DocumentError(f"{field}: {value!r} is not an IPv4 address") from None


def canonical_ipv6(value: object, field: str) -> str:
    """Return the compressed form of an IPv6 address or raise naming ``field``."""
    if not isinstance(value, str):
        raise DocumentError(f"{field}: expected an IPv6 address string, got {type(value).__name__}")
    try:
        if "%" in value:  # a scope id is free text, never an address to publish
            raise ValueError(value)
        return ipaddress.IPv6Address(value).compressed
    except ValueError:
        raise DocumentError(f"{field}: {value!r} is not an IPv6 address") from None


def address_sort_key(address: str) -> tuple[int, int]:
    """Numeric order for a mix of IPv4 and IPv6 addresses: the stable answer order."""
    parsed = ipaddress.ip_address(address)
    return (parsed.version, int(parsed))
