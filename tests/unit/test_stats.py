"""Aggregates over runs: IQM against hand-computed trimmed means, bootstrap intervals that
cover what they should and shrink with more runs."""

import numpy as np
import pytest

from critic.stats import bootstrap_ci, iqm, summarize


def test_iqm_is_the_trimmed_mean_of_the_middle_half():
    assert iqm([1, 2, 3, 4]) == pytest.approx(2.5)  # floor(4/4) = 1 cut per side: mean(2, 3)
    assert iqm([100, 1, 2, 3, 4, 5, 6, -50]) == pytest.approx(np.mean([2, 3, 4, 5]))  # outliers cut
    assert iqm([7.0]) == 7.0 and iqm([1, 9, 5]) == pytest.approx(5.0)  # n < 4: nothing cut (mean)
    assert iqm([1, 2, 3, 4, 5]) == pytest.approx(3.0)  # one cut per side of five
    # negative control: the plain mean is pulled by the outlier, the IQM is not
    assert np.mean([100, 1, 2, 3, 4, 5, 6, -50]) != pytest.approx(iqm([100, 1, 2, 3, 4, 5, 6, -50]))
    rows = np.array([[1, 2, 3, 4], [10, 20, 30, 40.0]])
    np.testing.assert_allclose(iqm(rows, axis=-1), [2.5, 25.0])
    with pytest.raises(ValueError):
        iqm([])


def test_bootstrap_interval_brackets_the_statistic_and_narrows_with_more_runs():
    rng = np.random.default_rng(0)
    few, many = rng.normal(10, 2, 8), rng.normal(10, 2, 200)
    lo, hi = bootstrap_ci(few)
    assert lo <= iqm(few) <= hi and lo < hi
    lo2, hi2 = bootstrap_ci(many)
    assert hi2 - lo2 < (hi - lo) / 2  # ~5x the runs: much narrower
    assert lo2 < 10 < hi2  # and it covers the true centre here
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    assert bootstrap_ci(few, seed=1) != bootstrap_ci(few, seed=2)  # the resampling is seeded
    assert bootstrap_ci(few, seed=1) == bootstrap_ci(few, seed=1)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(few, level=1.5)


def test_bootstrap_coverage_is_near_nominal():
    # 200 experiments of 10 normal runs: the 95 % interval of the mean covers 0 in most of them
    rng = np.random.default_rng(1)
    mean = lambda x, axis=-1: np.mean(x, axis=axis)  # noqa: E731
    covered = sum(lo <= 0 <= hi for lo, hi in (bootstrap_ci(rng.normal(0, 1, 10), mean, n_boot=500, seed=i)
                                               for i in range(200)))
    assert 0.85 <= covered / 200 <= 0.99  # percentile bootstrap under-covers a little at n = 10


def test_summarize_excludes_diverged_runs_and_names_them():
    s = summarize([1.0, 2.0, float("nan"), 3.0, 4.0])
    assert s["n"] == 4 and s["excluded"] == 1 and s["median"] == 2.5 and s["iqm"] == pytest.approx(2.5)
    assert s["iqm_ci"][0] <= s["iqm"] <= s["iqm_ci"][1] and s["min"] == 1.0 and s["max"] == 4.0
    empty = summarize([float("nan")])
    assert empty["n"] == 0 and empty["iqm"] is None
