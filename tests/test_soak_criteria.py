"""The soak's file-descriptor trend: a leak fails it, peaks and short runs do not."""

from __future__ import annotations

import pytest

from benchmarks.soak import Sample, fd_trend


def samples(fds: list[int]) -> list[Sample]:
    return [
        Sample(t=float(t), rss_kb=30_000, fds=n, threads=10, cpu_s=0.0) for t, n in enumerate(fds)
    ]


@pytest.mark.parametrize(
    ("fds", "expected"),
    [
        # one fd leaked per second: the floor climbs
        (list(range(20, 60)), (20, 50)),
        # held hostile connections and forwards in flight come and go: the floor stays
        ([20, 35, 21, 40, 20, 32] * 7, (20, 20)),
        # a burst at the end, as in the run that only had three samples a quarter
        ([21] * 30 + [32, 21, 32, 32, 40, 32, 32, 32, 32, 21], (21, 21)),
    ],
)
def test_fd_trend_judges_the_floor_of_each_quarter(
    fds: list[int], expected: tuple[int, int]
) -> None:
    assert fd_trend(samples(fds), 0.0, float(len(fds) - 1)) == expected


def test_fd_trend_has_nothing_to_judge_with_few_samples_a_quarter() -> None:
    # 12 s with a 3 s warm-up sampled each second: a quarter holds two or three samples
    assert (
        fd_trend(samples([19, 21, 21, 22, 21, 20, 25, 30, 32, 32, 32, 32, 33]), 3.0, 12.0) is None
    )
