"""Why a forwarded question ended in SERVFAIL, told to the client (RFC 8914).

A bare SERVFAIL says nothing an operator can act on: was no upstream reachable,
or did one answer with an error of its own? The agent's SERVFAIL for a forwarded
question carries an Extended DNS Error to EDNS clients: 22 (No Reachable
Authority) when no upstream answered at all, 0 (Other) when one answered with an
error, or the INFO-CODE of that upstream's own Extended DNS Error (6, DNSSEC
Bogus, from a validating upstream); the EXTRA-TEXT names each upstream asked and
what it last did, in its own words too when it gave some. ``dig`` prints it as
``; EDE: 22 (No Reachable Authority): (upstream 10.0.0.2:53 timed out)``.
Clients are the node's own (loopback or an allow-list), so naming the upstreams
tells them nothing they could not read in resolv.conf.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from resolver.core import wire
from resolver.core.upstream_reply import extended_error_text

MAX_TEXT = 200
"""Octets of EXTRA-TEXT at most: enough for a few upstreams, and a SERVFAIL with the
longest name and this still fits the 512 octets of the smallest EDNS client."""
NOTHING_ASKED = "no upstream was asked before the deadline"
INTERNAL_ERROR = "internal error in the forwarder (logged)"


@dataclass(frozen=True)
class UpstreamFailure:
    upstream: str
    what: str
    """What it did, as a phrase: ``timed out``, ``answered REFUSED``, ``unreachable``."""
    answered: bool
    """It sent a reply (an error): reachable, so not EDE 22."""
    extended_error: tuple[int, str] | None = None
    """The Extended DNS Error of that reply: INFO-CODE and EXTRA-TEXT."""

    def phrase(self) -> str:
        said = self.extended_error
        if said is None:
            return f"upstream {self.upstream} {self.what}"
        return f"upstream {self.upstream} {self.what} ({extended_error_text(said)})"


def servfail_option(failures: Iterable[UpstreamFailure], *, internal_error: bool = False) -> bytes:
    """The EDE option for a SERVFAIL after ``failures`` (one per upstream, the last),
    or after a bug in the forwarder (``internal_error``), whatever the upstreams did."""
    if internal_error:
        return wire.ede_option(wire.EDE_OTHER, INTERNAL_ERROR)
    failures = list(failures)
    passed_on = [f.extended_error[0] for f in failures if f.extended_error is not None]
    if passed_on:  # the first upstream to say why, in its own words
        code = passed_on[0]
    elif any(failure.answered for failure in failures):
        code = wire.EDE_OTHER
    else:
        code = wire.EDE_NO_REACHABLE_AUTHORITY
    text = "; ".join(failure.phrase() for failure in failures) or NOTHING_ASKED
    encoded = text.encode()
    if len(encoded) > MAX_TEXT:  # cut between characters (an upstream's text may be any)
        text = encoded[: MAX_TEXT - 3].decode(errors="ignore") + "..."
    return wire.ede_option(code, text)
