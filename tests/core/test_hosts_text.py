"""Hosts text: the exact lines every writer (/etc/hosts, dnsmasq, S3) shares."""

from __future__ import annotations

from resolver.core.hosts_text import hosts_lines, render_hosts
from resolver.core.views import View, ViewRecord

VIEW = View(
    label="us-east-1",
    zone="internal",
    serial=42,
    records=(
        ViewRecord("api", ("54.1.0.1", "54.1.0.2"), (), qualified=False),
        ViewRecord("web", ("10.0.0.1", "10.0.0.2"), ("2600::1",), qualified=True),
        ViewRecord("v6only.eu", (), ("2600::9",), qualified=True),
    ),
)


def test_hosts_lines() -> None:
    assert hosts_lines(VIEW) == [
        "54.1.0.1 api",
        "54.1.0.2 api",
        "10.0.0.1 web.internal web",
        "10.0.0.2 web.internal web",
        "2600::1 web.internal web",
        "2600::9 v6only.eu.internal v6only.eu",
    ]


def test_render_hosts_exact() -> None:
    assert render_hosts(VIEW) == (
        "# tagdns: generated from the mapping document; edits here are overwritten\n"
        "# view us-east-1, zone internal, serial 42\n"
        "54.1.0.1 api\n"
        "54.1.0.2 api\n"
        "10.0.0.1 web.internal web\n"
        "10.0.0.2 web.internal web\n"
        "2600::1 web.internal web\n"
        "2600::9 v6only.eu.internal v6only.eu\n"
    )


def test_render_empty_view() -> None:
    empty = View(label="public", zone="fleet.internal", serial=1, records=())
    assert render_hosts(empty) == (
        "# tagdns: generated from the mapping document; edits here are overwritten\n"
        "# view public, zone fleet.internal, serial 1\n"
    )
