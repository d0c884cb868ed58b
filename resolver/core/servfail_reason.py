"""Why a forwarded question ended in SERVFAIL, told to the client (RFC 8914).

A bare SERVFAIL says nothing an operator can act on: was no upstream reachable,
or did one answer with an error of its own? The agent's SERVFAIL for a forwarded
question carries an Extended DNS Error to EDNS clients: 22 (No Reachable
Authority) when no upstream answered at all, 0 (Other) when one answered with an
error; the EXTRA-TEXT names each upstream asked and what it last did. ``dig``
prints it as ``; EDE: 22 (No Reachable Authority): (upstream 10.0.0.2:53 timed
out)``. Clients are the node's own (loopback or an allow-list), so naming the
upstreams tells them nothing they could not read in resolv.conf.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from resolver.core import wire

EDE_OTHER = 0
EDE_NO_REACHABLE_AUTHORITY = 22
MAX_TEXT = 200
"""Octets of EXTRA-TEXT at most: enough for a few upstreams, small beside any limit."""
NOTHING_ASKED = "no upstream was asked before the deadline"


@dataclass(frozen=True)
class UpstreamFailure:
    upstream: str
    what: str
    """What it did, as a phrase: ``timed out``, ``answered REFUSED``, ``unreachable``."""
    answered: bool
    """It sent a reply (an error): reachable, so not EDE 22."""


def servfail_option(failures: Iterable[UpstreamFailure]) -> bytes:
    """The EDE option for a SERVFAIL after ``failures`` (one per upstream, the last)."""
    failures = list(failures)
    answered = any(failure.answered for failure in failures)
    code = EDE_OTHER if answered else EDE_NO_REACHABLE_AUTHORITY
    text = "; ".join(f"upstream {f.upstream} {f.what}" for f in failures) or NOTHING_ASKED
    if len(text) > MAX_TEXT:  # ASCII (addresses and fixed words): no character is cut
        text = text[: MAX_TEXT - 3] + "..."
    return wire.ede_option(code, text)
