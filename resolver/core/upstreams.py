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
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            host = fields[1].split("%", 1)[0]  # drop an IPv6 zone index
            try:
                servers.append(Endpoint(str(ipaddress.ip_address(host)), DNS_PORT))
            except ValueError:
                continue
    return servers


def is_self(upstream: Endpoint, listen: Sequence[Endpoint]) -> bool:
    """Whether sending to ``upstream`` would reach one of our own listeners."""
    target = ipaddress.ip_address(upstream.host)
    for endpoint in listen:
        if endpoint.port != upstream.port:
            continue
        bound = ipaddress.ip_address(endpoint.host)
        if bound == target:
            return True
        if bound.is_unspecified and bound.version == target.version and target.is_loopback:
            return True
    return False


def choose_upstreams(
    spec: Sequence[str],
    listen: Sequence[Endpoint],
    resolv_confs: Sequence[str] = (),
    *,
    on_ec2: Callable[[], bool] = lambda: False,
) -> list[Endpoint]:
    """The upstreams to forward to; empty means forwarding is off (``none``).

    ``on_ec2`` is only called when ``auto`` finds nothing in resolv.conf.
    Raises ConfigError for a malformed address, ``none`` mixed with others, an
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
