"""Statistics over timing samples: percentiles with intervals, CDF points, ratio of medians.

Samples come from several fresh processes. An interval that only counted samples would ignore
what differs between processes (memory layout, a neighbour waking up), so every interval here is
the union of a distribution-free order-statistic interval over the pooled samples and a bootstrap
over processes: wide enough for both sources of noise, never narrower than either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

PERCENTILES = (50, 90, 95, 99)
#: evenly spaced quantiles that stand in for a process's samples in the bootstraps: every point
#: carries the same mass, so the pooled points of several processes have the pooled quantiles
_SKETCH = (np.arange(1000) + 0.5) / 1000
_MEDIAN_SKETCH = (np.arange(200) + 0.5) / 200


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval (same unit)."""

    estimate: float
    low: float
    high: float

    @property
    def relative_width(self) -> float:
        """Return ``(high - low) / estimate`` (infinite for a zero estimate)."""
        if self.estimate <= 0:
            return math.inf
        return (self.high - self.low) / self.estimate


def z_value(confidence: float) -> float:
    """Return the two-sided standard-normal quantile for ``confidence`` (1.96 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def percentile_interval(groups: Sequence[NDArray[Any]], percentile: float, confidence: float,
                        *, seed: int = 0, resamples: int = 400) -> Interval:
    """Return the ``percentile`` (0-100) of all samples with its confidence interval.

    ``groups`` holds one array of samples per process (at least one non-empty array).
    """
    pooled = np.sort(np.concatenate([np.asarray(g, dtype=np.float64) for g in groups]))
    n = pooled.size
    q = percentile / 100.0
    estimate = float(np.quantile(pooled, q))
    z = z_value(confidence)
    spread = z * math.sqrt(n * q * (1.0 - q))
    low_rank = max(0, math.floor(n * q - spread) - 1)
    high_rank = min(n - 1, math.ceil(n * q + spread))
    low, high = float(pooled[low_rank]), float(pooled[high_rank])
    if len(groups) >= 3:
        # Between-process noise: resample whole processes (their quantile sketches).
        sketches = np.stack([_sketch(g, _SKETCH) for g in groups])
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(groups), size=(resamples, len(groups)))
        boot = np.quantile(sketches[picks].reshape(resamples, -1), q, axis=1)
        alpha = (1.0 - confidence) / 2.0
        boot_low, boot_high = np.quantile(boot, [alpha, 1.0 - alpha])
        low, high = min(low, float(boot_low)), max(high, float(boot_high))
    return Interval(estimate, min(low, estimate), max(high, estimate))


def mean_interval(groups: Sequence[NDArray[Any]], confidence: float, *, seed: int = 0,
                  resamples: int = 400) -> Interval:
    """Return the mean of all samples with its confidence interval (normal and bootstrap)."""
    arrays = [np.asarray(g, dtype=np.float64) for g in groups]
    pooled = np.concatenate(arrays)
    estimate = float(pooled.mean())
    half = (z_value(confidence) * float(pooled.std(ddof=1)) / math.sqrt(pooled.size)
            if pooled.size > 1 else math.inf)
    low, high = estimate - half, estimate + half
    if len(arrays) >= 3:
        sums = np.array([a.sum() for a in arrays])
        counts = np.array([a.size for a in arrays], dtype=np.float64)
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
        boot = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
        alpha = (1.0 - confidence) / 2.0
        boot_low, boot_high = np.quantile(boot, [alpha, 1.0 - alpha])
        low, high = min(low, float(boot_low)), max(high, float(boot_high))
    return Interval(estimate, min(low, estimate), max(high, estimate))


def cdf_points(samples: NDArray[Any], points: int = 21) -> list[list[float]]:
    """Return ``[[value, quantile], ...]``: the empirical CDF at evenly spaced quantiles plus the
    tail (p95, p99, max), for charting."""
    quantiles = sorted(set(np.linspace(0.0, 1.0, points).round(4).tolist()) | {0.95, 0.99})
    values = np.quantile(np.asarray(samples, dtype=np.float64), quantiles)
    return [[round(float(v), 6), float(q)] for v, q in zip(values, quantiles, strict=True)]


def ratio_of_medians(baseline: Sequence[NDArray[Any]], candidate: Sequence[NDArray[Any]],
                     confidence: float, *, seed: int = 0, resamples: int = 2000) -> Interval:
    """Return candidate median / baseline median with a paired bootstrap interval.

    ``baseline[i]`` and ``candidate[i]`` are the samples of round ``i`` (measured back to back in
    alternating processes). Rounds are resampled as pairs, so a slow minute on the runner moves
    both sides of the ratio together and does not look like a regression.
    """
    if len(baseline) != len(candidate) or not baseline:
        raise ValueError("baseline and candidate need the same, non-zero number of rounds")
    base_sketch = np.stack([_sketch(g, _MEDIAN_SKETCH) for g in baseline])
    cand_sketch = np.stack([_sketch(g, _MEDIAN_SKETCH) for g in candidate])
    estimate = _pooled_median(cand_sketch) / _pooled_median(base_sketch)
    rounds = len(baseline)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, rounds, size=(resamples, rounds))
    # Pooled median of resampled rounds, vectorised: each row is rounds*len(_SKETCH) values.
    base_boot = np.median(base_sketch[picks].reshape(resamples, -1), axis=1)
    cand_boot = np.median(cand_sketch[picks].reshape(resamples, -1), axis=1)
    ratios = cand_boot / base_boot
    # Within-process noise of each median, added in quadrature (matters with very few rounds).
    within = math.hypot(_median_rse(baseline), _median_rse(candidate)) * z_value(confidence)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha])
    low = float(low) - estimate * within
    high = float(high) + estimate * within
    return Interval(float(estimate), min(low, estimate), max(high, estimate))


def _sketch(samples: NDArray[Any], quantiles: NDArray[Any]) -> NDArray[Any]:
    return np.quantile(np.asarray(samples, dtype=np.float64), quantiles)


def _pooled_median(sketches: NDArray[Any]) -> float:
    return float(np.median(sketches.reshape(-1)))


def _median_rse(groups: Sequence[NDArray[Any]]) -> float:
    # Relative standard error of a pooled median: 1.253 * sd / sqrt(n), robust sd from the IQR.
    pooled = np.concatenate([np.asarray(g, dtype=np.float64) for g in groups])
    q1, median, q3 = np.quantile(pooled, [0.25, 0.5, 0.75])
    if median <= 0 or pooled.size < 2:
        return 0.0
    robust_sd = (q3 - q1) / 1.349
    return float(1.253 * robust_sd / math.sqrt(pooled.size) / median)
