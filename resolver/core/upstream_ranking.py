"""Which upstream to ask first: the ones answering before the ones that went silent.

Asked in their configured order every time, a blackholed first upstream would cost
every cache miss one attempt timeout before the next upstream is asked, for as long
as it stays down. So an upstream that times out is asked after the others for a
while: 5 s after one timeout, doubling with each further timeout in a row, at most
60 s. When that time is up it takes its configured place again (one query then
finds out whether it is back), and an answer clears its record. It is still asked
when the others fail, so down-ranking never makes an upstream unusable. dnsmasq
(the server that answered last) and unbound (round-trip times per server) make the
same choice in their own ways.

The clock is passed in, so this stays pure and tests control time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resolver.core.endpoints import Endpoint

FIRST_PENALTY = 5.0
MAX_PENALTY = 60.0
DOWN_AFTER = 2
"""Timeouts in a row after which an upstream counts as down (``all_down``): one lost
datagram is not an upstream gone."""


@dataclass(frozen=True)
class Standing:
    """An upstream's run of timeouts and until when it is asked after the others."""

    timeouts: int
    until: float


class UpstreamRanking:
    """The upstreams in the order to ask them now; told of timeouts and answers."""

    def __init__(
        self,
        upstreams: Sequence[Endpoint],
        *,
        first_penalty: float = FIRST_PENALTY,
        max_penalty: float = MAX_PENALTY,
    ) -> None:
        self.upstreams = tuple(upstreams)
        self.first_penalty = first_penalty
        self.max_penalty = max_penalty
        self.standings: dict[Endpoint, Standing] = {}
        """Upstreams whose last attempt timed out; empty in the common case."""

    def order(self, now: float) -> tuple[Endpoint, ...]:
        """Every upstream, those not down-ranked at ``now`` first, in configured order;
        then the down-ranked, the soonest to be forgiven first."""
        standings = self.standings
        if not standings:
            return self.upstreams
        penalised = {u: s.until for u, s in standings.items() if s.until > now}
        if not penalised:
            return self.upstreams
        first = [u for u in self.upstreams if u not in penalised]
        return (*first, *sorted(penalised, key=penalised.__getitem__))

    def timed_out(self, upstream: Endpoint, now: float) -> Standing | None:
        """Record a timeout of ``upstream``; its new standing (None: not one of ours,
        as after the upstreams changed while a question was under way)."""
        if upstream not in self.upstreams:
            return None
        previous = self.standings.get(upstream)
        timeouts = 1 if previous is None else previous.timeouts + 1
        penalty = min(self.first_penalty * 2 ** min(timeouts - 1, 16), self.max_penalty)
        standing = self.standings[upstream] = Standing(timeouts, now + penalty)
        return standing

    def answered(self, upstream: Endpoint) -> bool:
        """Record an answer from ``upstream``; whether it had been timing out."""
        return self.standings.pop(upstream, None) is not None

    def all_down(self) -> bool:
        """Whether every upstream timed out ``DOWN_AFTER`` times in a row, with no
        answer from any since: then the forwarder stops making clients wait for it."""
        standings = self.standings
        return len(standings) >= len(self.upstreams) and all(
            (standing := standings.get(upstream)) is not None and standing.timeouts >= DOWN_AFTER
            for upstream in self.upstreams
        )
