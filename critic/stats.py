"""Aggregate statistics over independent runs (seeds, or members of one batched run).

The practice of rliable (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice"): report the interquartile mean (IQM, the mean of the middle 50 % of
runs: robust to an outlier seed, less noisy than the median) with a 95 % percentile-bootstrap
confidence interval, beside the median and the mean.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def iqm(x: Sequence[float] | np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean: the mean after trimming 25 % of the values from each end (the
    ``trim_mean(x, 0.25)`` of SciPy, which rliable uses: floor(n / 4) values cut per side)."""
    a = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    n = a.shape[axis]
    if n == 0:
        raise ValueError("iqm of no values")
    cut = int(math.floor(0.25 * n))
    kept = np.take(a, np.arange(cut, n - cut), axis=axis)
    out = kept.mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_ci(x: Sequence[float] | np.ndarray, stat: Callable[..., np.ndarray | float] = iqm,
                 n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over runs: resample the runs with replacement
    ``n_boot`` times (vectorised; ``stat`` takes ``axis``), take the (1 - level) / 2 quantiles.
    One run gives a degenerate interval (its value twice)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1-D array of per-run values, got shape {a.shape}")
    if not 0 < level < 1:
        raise ValueError(f"invalid value for 'level': {level} (allowed: a number in (0, 1))")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    boots = np.asarray(stat(a[idx], axis=-1), dtype=np.float64)
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def summarize(values: Sequence[float], level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """``{n, median, mean, iqm, iqm_ci, mean_ci, min, max}`` of per-run values (NaN values,
    e.g. a diverged run's, are left out and counted in ``excluded``)."""
    a = np.asarray(values, dtype=np.float64)
    finite = a[np.isfinite(a)]
    out: dict = {"n": int(finite.size), "excluded": int(a.size - finite.size), "level": level}
    if finite.size == 0:
        return {**out, "median": None, "mean": None, "iqm": None, "iqm_ci": None, "mean_ci": None,
                "min": None, "max": None}
    return {**out, "median": float(np.median(finite)), "mean": float(finite.mean()), "iqm": iqm(finite),
            "iqm_ci": list(bootstrap_ci(finite, iqm, n_boot, level, seed)),
            "mean_ci": list(bootstrap_ci(finite, _mean, n_boot, level, seed)),
            "min": float(finite.min()), "max": float(finite.max())}
