"""Choosing upstream resolvers, and refusing the ones that would be ourselves.

``auto`` means: the nameservers of the system's resolv.conf that are not this
agent's own listen addresses (an agent installed as the node's nameserver finds
itself there), then systemd-resolved's real upstreams, then, on EC2, the VPC
resolver. The file contents are passed in; reading them is the caller's job.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from resolver.core.endpoints import Endpoint, parse_endpoint
from resolver.errors import ConfigError

DNS_PORT = 53
VPC_RESOLVER = Endpoint("169.254.169.253", DNS_PORT)
AUTO = "auto"
NONE = "none"


def nameservers_from_resolv_conf(text: str) -> list[Endpoint]:
    """The ``nameserver`` lines of a resolv.conf, in order, as port-53 endpoints."""
    servers: list[Endpoint] = []
    for line in text.split("\n"):  # as glibc reads it: not splitlines(), which splits more
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:  # an IPv6 zone index (fe80::1%eth0) is kept: link-local needs it
                servers.append(Endpoint(str(ipaddress.ip_address(fields[1])), DNS_PORT))
            except ValueError:
                continue
    return servers


def is_self(upstream: Endpoint, listen: Sequence[Endpoint]) -> bool:
    """Whether sending to ``upstream`` would reach one of our own listeners."""
    target = _plain(upstream.host)
    if target.is_unspecified:  # a datagram sent to 0.0.0.0 or :: arrives on loopback
        target = ipaddress.ip_address("127.0.0.1" if target.version == 4 else "::1")
    for endpoint in listen:
        if endpoint.port != upstream.port:
            continue
        bound = _plain(endpoint.host)
        if bound == target:
            return True
        # A wildcard listener receives what reaches this host's loopback on its port;
        # a UDP socket on [::] gets IPv4 too unless the system is v6-only.
        if (
            bound.is_unspecified
            and target.is_loopback
            and (bound.version == 6 or target.version == 4)
        ):
            return True
    return False


def _plain(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address without a zone index, IPv4-mapped IPv6 as the IPv4 address it is."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def choose_upstreams(
    spec: Sequence[str],
    listen: Sequence[Endpoint],
    resolv_confs: Sequence[str] = (),
    *,
    on_ec2: Callable[[], bool] = lambda: False,
) -> list[Endpoint]:
    """The upstreams to forward to; empty means forwarding is off (``none``).

    ``on_ec2`` is only called when ``auto`` finds nothing in resolv.conf.
    Raises ConfigError for a malformed address or port 0, ``none`` mixed with others, an
    explicit upstream that is this agent (a forwarding loop), or ``auto`` finding
    nothing usable.
    """
    if NONE in spec:
        if len(spec) > 1:
            raise ConfigError("upstream 'none' cannot be combined with other upstreams")
        return []
    chosen: list[Endpoint] = []
    for item in spec:
        if item == AUTO:
            chosen.extend(_auto(listen, resolv_confs, on_ec2=on_ec2))
            continue
        endpoint = parse_endpoint(item, default_port=DNS_PORT, what="upstream")
        if endpoint.port == 0:
            raise ConfigError(
                f"upstream {item}: port 0 cannot be asked (leave the port out for 53)"
            )
        if is_self(endpoint, listen):
            raise ConfigError(
                f"upstream {endpoint} is this agent's own listen address (a forwarding loop)"
            )
        chosen.append(endpoint)
    unique = list(dict.fromkeys(chosen))
    if not unique:
        raise ConfigError("no upstream resolver found; pass --upstream ADDR or --upstream none")
    return unique


def _auto(
    listen: Sequence[Endpoint], resolv_confs: Sequence[str], *, on_ec2: Callable[[], bool]
) -> list[Endpoint]:
    for text in resolv_confs:
        servers = [s for s in nameservers_from_resolv_conf(text) if not is_self(s, listen)]
        if servers:
            return servers
    if on_ec2():  # asked last: off EC2 the metadata probe costs a timeout
        return [VPC_RESOLVER]
    raise ConfigError(
        "upstream 'auto': resolv.conf names no nameserver besides this agent "
        "and this is not EC2; pass --upstream ADDR or --upstream none"
    )
