"""Listening sockets for the agent's addresses (bound the same way by ``serve`` and
``check``), and who may talk to them."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from resolver.core.endpoints import Endpoint

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def listening_socket(endpoint: Endpoint, kind: int) -> socket.socket:
    """A bound, non-blocking socket for ``endpoint``; OSError when it cannot be had.

    The address is resolved by the C library (numeric only), which keeps the zone
    of a link-local address (``fe80::1%eth0``) that an event loop's own resolver may
    drop. An IPv6 socket is IPv6 only: an IPv4 client reaches the IPv4 socket of
    its own listen address, and a datagram with an IPv4-mapped source arriving over
    IPv6 is nobody's to answer (``allowed`` refuses it).
    """
    family, _kind, proto, _name, address = socket.getaddrinfo(
        endpoint.host,
        endpoint.port,
        type=kind,
        flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def client_allowed(host: str, networks: Iterable[Network]) -> bool:
    """Whether a client at ``host`` (as a socket reports it) is in ``networks``.

    Every IPv6 socket is IPv6 only, so an IPv4-mapped source is a packet that came
    over IPv6 claiming an IPv4 address (``::ffff:127.0.0.1``): it must not pass for
    that address, nor be answered there.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None) is not None:
        return False
    return any(address in network for network in networks)
