"""Rendering a view as hosts-file text: the same names for /etc/hosts, dnsmasq and S3.

Lines are data only (an address and names that passed validation); nothing here
can produce a line a shell or a resolver would read as anything but a mapping.
"""

from __future__ import annotations

from resolver.core.views import View


def hosts_lines(view: View) -> list[str]:
    """``IP name.<zone> name`` for qualified names, ``IP name`` for remote ones."""
    lines: list[str] = []
    for record in view.records:
        names = f"{record.name}.{view.zone} {record.name}" if record.qualified else record.name
        lines.extend(f"{address} {names}" for address in (*record.ipv4, *record.ipv6))
    return lines


def render_hosts(view: View) -> str:
    """A whole hosts file body for the view, with a header saying what it is."""
    header = [
        "# tagdns: generated from the mapping document; edits here are overwritten",
        f"# view {view.label}, zone {view.zone}, serial {view.serial}",
    ]
    return "\n".join([*header, *hosts_lines(view)]) + "\n"
