"""The order upstreams are asked in: ones that timed out go behind the others for a while."""

from __future__ import annotations

import pytest

from resolver.core.endpoints import Endpoint
from resolver.core.upstream_ranking import MAX_PENALTY, UpstreamRanking

A, B, C = (Endpoint(f"10.0.0.{i}", 53) for i in (1, 2, 3))


def test_configured_order_while_every_upstream_answers() -> None:
    ranking = UpstreamRanking([A, B, C])
    assert ranking.order(0.0) == (A, B, C)
    assert not ranking.answered(A)  # it had not been timing out


def test_a_timed_out_upstream_goes_last_until_its_penalty_ends() -> None:
    ranking = UpstreamRanking([A, B, C])
    standing = ranking.timed_out(A, 100.0)
    assert standing is not None and (standing.timeouts, standing.until) == (1, 105.0)
    assert ranking.order(100.0) == (B, C, A)
    assert ranking.order(104.9) == (B, C, A)
    assert ranking.order(105.0) == (A, B, C)  # its place again: one query finds out


@pytest.mark.parametrize(
    ("timeouts", "penalty"), [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (40, 60.0)]
)
def test_penalties_double_with_each_timeout_in_a_row_up_to_a_minute(
    timeouts: int, penalty: float
) -> None:
    ranking = UpstreamRanking([A, B])
    for _ in range(timeouts):
        standing = ranking.timed_out(A, 0.0)
    assert standing is not None and standing.until == penalty <= MAX_PENALTY


def test_an_answer_clears_the_record() -> None:
    ranking = UpstreamRanking([A, B])
    ranking.timed_out(A, 0.0)
    ranking.timed_out(A, 10.0)
    assert ranking.answered(A)
    assert ranking.order(10.0) == (A, B) and not ranking.standings
    standing = ranking.timed_out(A, 20.0)
    assert standing is not None and standing.timeouts == 1  # a new run starts at 5 s


def test_down_ranked_upstreams_are_still_asked_soonest_forgiven_first() -> None:
    ranking = UpstreamRanking([A, B, C])
    ranking.timed_out(A, 0.0)
    ranking.timed_out(A, 0.0)  # until 10
    ranking.timed_out(B, 0.0)  # until 5
    assert ranking.order(1.0) == (C, B, A)
    ranking.timed_out(C, 1.0)  # until 6: every one down-ranked, none dropped
    assert ranking.order(2.0) == (B, C, A)


def test_an_upstream_no_longer_configured_is_not_recorded() -> None:
    """A question under way when the upstreams changed may time out on an old one."""
    ranking = UpstreamRanking([A])
    assert ranking.timed_out(B, 0.0) is None
    assert ranking.order(0.0) == (A,) and not ranking.standings


def test_all_down_once_every_upstream_timed_out_twice_in_a_row_until_one_answers() -> None:
    first, second = Endpoint("10.0.0.2", 53), Endpoint("10.0.0.3", 53)
    ranking = UpstreamRanking([first, second])
    assert not ranking.all_down()
    ranking.timed_out(first, 0.0)
    ranking.timed_out(second, 0.0)
    assert not ranking.all_down()  # one lost datagram each is not an upstream gone
    ranking.timed_out(first, 1.0)
    assert not ranking.all_down()
    ranking.timed_out(second, 1.0)
    assert ranking.all_down()
    assert ranking.all_down()  # however long: only an answer ends it
    ranking.answered(second)
    assert not ranking.all_down()
