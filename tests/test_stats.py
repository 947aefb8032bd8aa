"""Paired differences, t intervals and power (zsl_bench.stats) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from zsl_bench import stats

T975_2 = 4.302652729749464  # t quantile 0.975, 2 degrees of freedom
T80_2 = 0.6 / math.sqrt(0.32)  # t quantile 0.8, df 2: (2p-1) / sqrt(2p(1-p))


def test_paired_differences_of_three_units_by_hand():
    p = stats.paired({"a": 11.0, "b": 12.0, "c": 13.0}, {"a": 10.0, "b": 10.0, "c": 10.0})
    assert p.n == 3 and p.mean == pytest.approx(2.0) and p.sd == pytest.approx(1.0)
    half = T975_2 / math.sqrt(3)
    assert (p.lo, p.hi) == (pytest.approx(2 - half), pytest.approx(2 + half)) and p.half_width == pytest.approx(half)
    # df 2: two-sided p = 1 - |t| / sqrt(t^2 + 2), t = 2 / (1 / sqrt 3)
    t = 2 * math.sqrt(3)
    assert p.p == pytest.approx(1 - t / math.sqrt(t * t + 2)) and not p.significant  # p = 0.074


def test_units_missing_on_either_side_are_left_out_and_counted():
    p = stats.paired({"a": 1.0, "b": 2.0, "c": 5.0}, {"a": 0.0, "b": 0.0, "d": 9.0})
    assert p.n == 2 and p.mean == pytest.approx(1.5)
    one = stats.paired({"a": 3.0, "c": 5.0}, {"a": 1.0})
    assert one.n == 1 and one.mean == 2.0 and one.lo is None and one.p is None and one.half_width is None
    assert not one.significant
    none = stats.paired({"c": 5.0}, {"a": 1.0})
    assert none.n == 0 and none.mean is None


def test_constant_differences_and_significance():
    same = stats.paired_from_differences([1.5, 1.5, 1.5])
    assert same.sd == 0.0 and same.lo == same.hi == 1.5 and same.significant
    assert not stats.paired_from_differences([0.0, 0.0]).significant
    big = stats.paired_from_differences([5.0, 5.2, 4.9, 5.1])
    assert big.significant and big.lo > 0
    assert not stats.paired_from_differences([1.0, -1.0, 0.5]).significant


def test_t_interval_and_unit_key():
    lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    assert (lo, hi) == (pytest.approx(2 - T975_2 / math.sqrt(3)), pytest.approx(2 + T975_2 / math.sqrt(3)))
    assert stats.t_interval([4.0]) is None
    assert stats.unit_key({"dataset": "CUB", "seed": "1", "data_seed": 0}) == ("cub", "1", "0")
    assert stats.unit_key({"dataset": "cub", "seed": 1.0, "data_seed": ""}) == ("cub", "1", "")


def test_detectable_difference_and_pairs_needed():
    assert stats.detectable_difference(1.0, 3) == pytest.approx((T975_2 + T80_2) / math.sqrt(3))
    assert stats.detectable_difference(1.0, 1) is None
    for sd in (0.3, 1.31, 4.0, 7.19):
        n = stats.pairs_needed(sd, 2.0)
        assert stats.detectable_difference(sd, n) <= 2.0 < (stats.detectable_difference(sd, n - 1) or math.inf)
    # Checked against the exact noncentral-t power: 0.845 at 6 pairs, 0.725 at 5.
    assert stats.pairs_needed(1.31, 2.0) == 6
    assert stats.pairs_needed(0.0, 2.0) == 2
    assert stats.pairs_needed(1e6, 0.01) is None
    assert stats.pooled_sd([(3, 1.0), (3, 2.0), (1, None)]) == pytest.approx(math.sqrt(2.5))
    assert stats.pooled_sd([(1, None)]) is None
