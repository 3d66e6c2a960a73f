"""Statistics over instances with their confidence intervals, and the three-state verdict.

A check's statistic is either the **mean** of per-instance values (Kendall τ, an ERASER score) or
the **fraction** of instances flagged. Each comes with a ``confidence``-level interval over the
instances — a seeded bootstrap of the mean (``scipy.stats.bootstrap``, bias-corrected and
accelerated), a Clopper–Pearson interval for a fraction (``scipy.stats.binomtest(...).proportion_ci``)
— and the verdict reads the interval against the threshold: **passed** when all of it lies on the
passing side, **failed** when all of it lies on the failing side, **inconclusive** when it straddles
the threshold. The methods were chosen by their measured coverage (``docs/confidence.md``).

numpy and scipy only: no torch.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.stats

from pytest_attnfaith.results import Verdict

MEAN_METHOD = "BCa"
PROPORTION_METHOD = "exact"  # Clopper–Pearson: at least nominal coverage; Wilson's fell to 0.86 on a rare event
RESAMPLES = 9999
RESAMPLED_VALUES = 2**18
"""Values resampled at once (``scipy.stats.bootstrap``'s ``batch``: resamples per vectorised call, times the values of
each): 2 MB of float64 however many instances, where all 9,999 resamples of 1,000 instances at once held 160 MB (the
resamples and their indices). The draws and the interval are the same, and as fast or faster (1,000 instances: 0.11 s
against 0.41 s; 10,000: 0.68 s)."""
MOST_INSTANCES = 10**8
VERDICTS = ("passed", "failed", "inconclusive")


@dataclass(frozen=True)
class Estimate:
    """A statistic over ``count`` instances with its ``confidence``-level interval (``low``, ``high``).

    ``kind`` is ``"mean"`` (``spread``: the sample standard deviation of the values) or
    ``"fraction"``; ``method`` names how the interval was computed. NaN where undefined."""

    kind: str
    statistic: float
    low: float
    high: float
    confidence: float
    method: str
    count: int
    spread: float = math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return (self.low, self.high)


def nan_summary(values: np.ndarray) -> dict[str, float | int]:
    """Mean, std and median over the defined values, and how many were undefined (NaN)."""
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "undefined": int(values.size)}
    return {
        "mean": float(defined.mean()),
        "std": float(defined.std()),
        "median": float(np.median(defined)),
        "undefined": int(values.size - defined.size),
    }


def mean_interval(values: np.ndarray, confidence: float, seed: int, bounds: tuple[float, float] | None = None) -> Estimate:
    """The mean of the defined (non-NaN) values and its seeded BCa bootstrap interval.

    One defined value has no interval (NaN). Values that are all equal leave the bootstrap nothing to
    resample: with ``bounds`` (the range a value can take, e.g. (−1, 1) for Kendall τ) the interval
    allows the unseen instances that differ — at most the Clopper–Pearson bound u = 1 − (α/2)^(1/n) of
    them, each as far as a bound: [v − (v − lo)·u, v + (hi − v)·u]; without, it is [v, v]."""
    return mean_intervals(np.asarray(values, dtype=np.float64)[None], confidence, seed, bounds)[0]


def mean_intervals(values: np.ndarray, confidence: float, seed: int, bounds: tuple[float, float] | None = None) -> list[Estimate]:
    """``mean_interval`` of each row of ``values`` (R, n); rows with the same defined columns share one vectorised
    bootstrap (the per-head effects of the atlas: one call per layer instead of one per head)."""
    rows = np.asarray(values, dtype=np.float64)
    estimates: list[Estimate | None] = [None] * len(rows)
    pending: dict[bytes, list[int]] = {}
    for index, row in enumerate(rows):
        defined = row[~np.isnan(row)]
        if defined.size < 2 or np.ptp(defined) == 0.0:
            estimates[index] = _small_sample(defined, confidence, bounds)
        else:
            pending.setdefault((~np.isnan(row)).tobytes(), []).append(index)
    for group in pending.values():
        data = rows[group][:, ~np.isnan(rows[group[0]])]
        for index, estimate in zip(group, _bootstrapped(data, confidence, seed), strict=True):
            estimates[index] = estimate
    return [estimate for estimate in estimates if estimate is not None]


def _small_sample(defined: np.ndarray, confidence: float, bounds: tuple[float, float] | None) -> Estimate:
    """No value, one value (no interval), or values that are all equal (bounded by the unseen instances)."""
    count = int(defined.size)
    if count == 0:
        return Estimate("mean", math.nan, math.nan, math.nan, confidence, MEAN_METHOD, 0)
    mean = float(defined.mean())
    if count == 1:
        return Estimate("mean", mean, math.nan, math.nan, confidence, f"bootstrap ({MEAN_METHOD})", 1)
    lo, hi = bounds if bounds is not None else (mean, mean)
    unseen = 1.0 - ((1.0 - confidence) / 2) ** (1.0 / count)
    low, high = mean - (mean - lo) * unseen, mean + (hi - mean) * unseen
    return Estimate("mean", mean, min(low, mean), max(high, mean), confidence, f"bootstrap ({MEAN_METHOD})", count, 0.0)


def _bootstrapped(data: np.ndarray, confidence: float, seed: int) -> list[Estimate]:
    """BCa intervals of the mean of each row of ``data`` (R, n ≥ 2, not constant), one vectorised bootstrap."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scipy.stats.bootstrap(
            (data,),
            np.mean,
            confidence_level=confidence,
            n_resamples=RESAMPLES,
            method=MEAN_METHOD,
            rng=np.random.default_rng(seed),
            axis=-1,
            batch=max(RESAMPLED_VALUES // data.size, 1),
        )
    lows, highs = np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)
    distribution = np.atleast_2d(result.bootstrap_distribution)
    out = []
    for row, low, high, resampled in zip(data, lows, highs, distribution, strict=True):
        mean = float(row.mean())
        if not (math.isfinite(low) and math.isfinite(high)):  # BCa undefined (e.g. one odd value): percentile
            low, high = np.percentile(resampled, [50 * (1 - confidence), 50 * (1 + confidence)])
        spread = float(row.std(ddof=1))
        out.append(
            Estimate(
                "mean",
                mean,
                min(float(low), mean),
                max(float(high), mean),
                confidence,
                f"bootstrap ({MEAN_METHOD})",
                row.size,
                spread,
            )
        )
    return out


def fraction_interval(flagged: int, count: int, confidence: float) -> Estimate:
    """The fraction ``flagged / count`` and its Clopper–Pearson interval (NaN when ``count`` is 0): the beta quantiles
    B(α/2; k, n − k + 1) and B(1 − α/2; k + 1, n − k), what ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``
    finds by root search (equal to 1e-10, ``tests/core/test_confidence.py``), about 20 times faster."""
    method = "Clopper-Pearson"
    if count == 0:
        return Estimate("fraction", math.nan, math.nan, math.nan, confidence, method, 0)
    tail = (1.0 - confidence) / 2
    low = 0.0 if flagged == 0 else float(scipy.stats.beta.ppf(tail, flagged, count - flagged + 1))
    high = 1.0 if flagged == count else float(scipy.stats.beta.ppf(1.0 - tail, flagged + 1, count - flagged))
    return Estimate("fraction", flagged / count, low, high, confidence, method, count)


def decide(estimate: Estimate, threshold: float, higher_is_better: bool) -> Verdict:
    """``passed`` / ``failed`` when the whole interval lies on one side of ``threshold``, else ``inconclusive``.

    The passing side includes the threshold itself (``statistic >= threshold`` or ``<= threshold``)."""
    low, high = estimate.low, estimate.high
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if higher_is_better:
        return "passed" if low >= threshold else "failed" if high < threshold else "inconclusive"
    return "passed" if high <= threshold else "failed" if low > threshold else "inconclusive"


def instances_needed(estimate: Estimate, threshold: float, higher_is_better: bool) -> int | None:
    """About how many instances would decide an inconclusive estimate, were the statistic to stay where it is.

    A mean: n ≈ (z·s / |mean − threshold|)², the normal approximation of the interval's half-width. A
    fraction: the smallest n whose Clopper–Pearson interval at the same fraction excludes the threshold. None when
    no number would (the statistic sits on the threshold) or nothing is known (no or one defined instance)."""
    gap = abs(estimate.statistic - threshold)
    if estimate.count == 0 or not math.isfinite(gap) or gap == 0.0:
        return None
    if estimate.kind == "mean":
        if not math.isfinite(estimate.spread) or estimate.spread == 0.0:
            return None
        z = float(scipy.stats.norm.ppf(0.5 + estimate.confidence / 2))
        return max(math.ceil((z * estimate.spread / gap) ** 2), estimate.count + 1)
    return _fraction_instances(estimate.statistic, estimate.confidence, threshold, higher_is_better, estimate.count)


def _fraction_instances(fraction: float, confidence: float, threshold: float, higher_is_better: bool, start: int) -> int | None:
    def decided(count: int) -> bool:
        estimate = fraction_interval(round(fraction * count), count, confidence)
        return decide(estimate, threshold, higher_is_better) != "inconclusive"

    low, high = start, max(2 * start, start + 1)
    while not decided(high):
        low, high = high, 2 * high
        if high > MOST_INSTANCES:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if decided(middle) else (middle, high)
    return high
