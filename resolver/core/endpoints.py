"""Parsing ``ADDR:PORT`` strings for listen, upstream and metrics addresses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from resolver.errors import ConfigError


@dataclass(frozen=True)
class Endpoint:
    """An IP address and a port; IPv6 prints in brackets."""

    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def family_version(self) -> int:
        return ipaddress.ip_address(self.host).version

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(
    text: str, *, default_port: int | None = None, what: str = "address"
) -> Endpoint:
    """Parse ``1.2.3.4:53``, ``[::1]:53``, or (with a default port) ``1.2.3.4`` / ``::1``."""
    host, port_text = text, None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ConfigError(f"{what} {text!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{what} {text!r}: expected ':PORT' after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: {host!r} is not an IP address") from None
    if port_text is None:
        if default_port is None:
            raise ConfigError(f"{what} {text!r}: expected ADDR:PORT")
        return Endpoint(str(address), default_port)
    valid_digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not valid_digits or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{what} {text!r}: port must be 0 to 65535")
    return Endpoint(str(address), int(port_text))
