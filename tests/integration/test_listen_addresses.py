"""Listen addresses beyond loopback: link-local ones with their zone, IPv6 sockets that
are IPv6 only, and IPv4-mapped sources that must not pass for IPv4 clients."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from resolver.adapters.dns_server import DnsServer
from resolver.adapters.listen_sockets import listening_socket
from resolver.core.endpoints import Endpoint
from tests.integration.dns_helpers import EXAMPLE_MAPPING, LOOPBACK, TAGDNS, example_responder
from tests.integration.test_glibc_netns import (
    IP,
    Namespace,
    _create_namespace,
    _stop,
    _wait_for_line,
)

pytestmark = pytest.mark.integration


def test_an_ipv4_mapped_source_is_not_an_ipv4_client() -> None:
    """Over IPv6, ``::ffff:127.0.0.1`` is a claim, not loopback: refused, never answered."""
    server = DnsServer(example_responder(), allow=LOOPBACK)
    assert server.allowed("127.0.0.1")
    assert not server.allowed("::ffff:127.0.0.1")
    assert not server.allowed("::ffff:7f00:1")


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
def test_ipv6_sockets_are_ipv6_only_so_both_wildcards_can_be_bound(kind: int) -> None:
    with listening_socket(Endpoint("::", 0), kind) as v6:
        assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        port = v6.getsockname()[1]
        with listening_socket(Endpoint("0.0.0.0", port), kind) as v4:  # no EADDRINUSE
            assert v4.getsockname()[1] == port


@pytest.fixture
def link_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    """A namespace whose interface ``d0`` (one end of a veth pair) holds fe80::53."""
    namespace = Namespace(f"tagdns-ll-{os.getpid()}", tmp_path_factory.mktemp("ll"))
    _create_namespace(namespace.name)
    try:
        for argv in (
            (IP, "link", "set", "lo", "up"),
            (IP, "link", "add", "d0", "type", "veth", "peer", "name", "d1"),
            (IP, "link", "set", "d0", "up"),
            (IP, "link", "set", "d1", "up"),
            (IP, "-6", "addr", "add", "fe80::53/64", "dev", "d0", "nodad"),
        ):
            done = namespace.run(*argv)
            assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
        yield namespace
    finally:
        for _, process, _ in reversed(namespace.processes):
            _stop(process)
        subprocess.run([IP, "netns", "del", namespace.name], capture_output=True, check=False)


def test_a_link_local_address_is_served_on_its_interface(link_local: Namespace) -> None:
    """The zone (``%d0``) must survive into bind(): uvloop's own resolver drops it."""
    config = link_local.workdir / "tagdns.toml"
    config.write_text(
        '[dns]\nlisten = ["[fe80::53%d0]:5353"]\nallow = ["fe80::/64"]\nupstream = ["none"]\n'
    )
    agent, log = link_local.start(
        "agent",
        str(TAGDNS),
        "serve",
        *("--config", str(config), "--source", str(EXAMPLE_MAPPING), "--view", "us-east-1"),
        *("--cache", "none", "--metrics", "none"),
    )
    _wait_for_line(agent, log, "ready:", "tagdns serve")
    for transport in ("+notcp", "+tcp"):
        done = link_local.run(
            "dig", "@fe80::53%d0", "-p", "5353", "web1", "+short", "+time=2", "+tries=1", transport
        )
        assert done.stdout.split() == ["10.0.1.10"], done.stdout + done.stderr + link_local.logs()
