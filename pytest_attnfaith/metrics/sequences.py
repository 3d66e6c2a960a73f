"""Anytime-valid confidence sequences for a bounded mean: the hedged-capital betting sequence.

Waudby-Smith & Ramdas (2023), *Estimating means of bounded random variables by betting* (JRSS-B), Theorem 3 with
the predictable plug-in bets of their eq. (26). Observations x_1, x_2, … in [0, 1] (a value in [lo, hi] is mapped
by (x − lo) / (hi − lo)). For a candidate mean m, two bettors play against it:

    K⁺_t(m) = Π_{i≤t} (1 + λ⁺_i(m) (x_i − m)),   K⁻_t(m) = Π_{i≤t} (1 − λ⁻_i(m) (x_i − m)),
    K_t(m)  = max(θ K⁺_t(m), (1 − θ) K⁻_t(m)),  θ = 1/2,

with λ_t = min(√(2 log(2/α) / (σ̂²_{t−1} t log(1 + t))), c), λ⁺_t(m) = min(λ_t, c/m), λ⁻_t(m) = min(λ_t, c/(1 − m)),
c = 1/2, μ̂_t = (1/2 + Σ_{i≤t} x_i)/(t + 1), σ̂²_t = (1/4 + Σ_{i≤t} (x_i − μ̂_i)²)/(t + 1). Under the true mean both
products are nonnegative martingales, so by Ville's inequality P(∃t: K_t(μ) ≥ 1/α) ≤ α: the set
{m : max_{s≤t} K_s(m) < 1/α} (the running intersection over every time, not only where the audit looked) holds
the mean at every t at once with probability ≥ 1 − α. An audit may look after every batch and stop once the set
lies on one side of the threshold, and its verdict keeps the error rate α. The set is an interval (each K_t is
quasi-convex in m); its ends are found on a grid of candidates and refined by bisection, each reported at the
last rejected candidate outside it (conservative by at most ``TOLERANCE``).

Not ``confseq`` (sdist only: a C++ extension to compile, and ``betting.py`` imports matplotlib and multiprocess) nor
``expectation`` (Python ≥ 3.12 only): ``docs/confidence.md``. numpy only, float64, vectorised over candidates × time.
"""

from __future__ import annotations

import math

import numpy as np

from pytest_attnfaith.metrics.statistics import Estimate

METHOD = "betting confidence sequence (hedged capital)"
TRUNCATION = 0.5
GRID = 129
REFINEMENTS = 3
TOLERANCE = 1.0 / (GRID - 1) ** (REFINEMENTS + 1)


def plug_in_bets(x: np.ndarray, alpha: float) -> np.ndarray:
    """λ_t of the hedged sequence (before the m-dependent truncation): predictable, from x_1..x_{t−1} only."""
    t = np.arange(1, x.size + 1, dtype=np.float64)
    mean = (0.5 + np.cumsum(x)) / (t + 1)
    previous_mean = np.concatenate([[0.5], mean[:-1]])
    variance = (0.25 + np.cumsum((x - previous_mean) ** 2)) / (t + 1)
    previous_variance = np.concatenate([[0.25], variance[:-1]])
    return np.minimum(np.sqrt(2.0 * math.log(2.0 / alpha) / (previous_variance * t * np.log1p(t))), TRUNCATION)


def log_capital(x: np.ndarray, candidates: np.ndarray, alpha: float) -> np.ndarray:
    """log K_t(m) for each candidate m (rows) and time t (columns), x in [0, 1]."""
    bets = plug_in_bets(x, alpha)[None, :]
    m = np.asarray(candidates, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore"):
        up = np.minimum(bets, TRUNCATION / m)
        down = np.minimum(bets, TRUNCATION / (1.0 - m))
    centred = x[None, :] - m
    log_up = np.cumsum(np.log1p(up * centred), axis=1) + math.log(0.5)
    log_down = np.cumsum(np.log1p(-down * centred), axis=1) + math.log(0.5)
    return np.maximum(log_up, log_down)


def rejected(values: np.ndarray, threshold: float, confidence: float, bounds: tuple[float, float] = (0.0, 1.0)) -> bool:
    """Whether the sequence of the defined ``values`` has excluded ``threshold``: max_{s≤t} K_s(threshold) ≥ 1/α.

    O(t): what a sequential audit asks after each batch (the interval itself is computed once, when it stops)."""
    x = _unit(values, bounds)
    if x.size == 0:
        return False
    alpha = 1.0 - confidence
    return bool(log_capital(x, np.array([_unit_point(threshold, bounds)]), alpha).max() >= math.log(1.0 / alpha))


def sequence_interval(
    values: np.ndarray,
    confidence: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    kind: str = "mean",
    threshold: float | None = None,
) -> Estimate:
    """The mean of the defined (non-NaN) ``values`` in [``bounds``], in the order observed, with its anytime-valid
    interval at ``confidence`` (the hedged betting sequence, running intersection); NaN with no defined value.
    ``kind``: ``"mean"``, or ``"fraction"`` for 0/1 flags. With ``threshold``: when the sequence has excluded it
    (``rejected``), the interval's near end is moved to the threshold's side (where the grid's conservative end
    could still hold it), so that ``decide`` reads the interval as the test did."""
    defined = np.asarray(values, dtype=np.float64)
    defined = defined[~np.isnan(defined)]
    if defined.size == 0:
        return Estimate(kind, math.nan, math.nan, math.nan, confidence, METHOD, 0)
    lo, hi = bounds
    low, high = (lo + end * (hi - lo) for end in _accepted_range(_unit(defined, bounds), 1.0 - confidence))
    if threshold is not None and low <= threshold <= high and rejected(defined, threshold, confidence, bounds):
        above = (low + high) / 2 > threshold
        low, high = (np.nextafter(threshold, np.inf), high) if above else (low, np.nextafter(threshold, -np.inf))
    mean = float(defined.mean())
    spread = float(defined.std(ddof=1)) if defined.size > 1 else math.nan
    return Estimate(kind, mean, min(low, mean), max(high, mean), confidence, METHOD, int(defined.size), spread)


def _unit(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """The defined values mapped from [lo, hi] onto [0, 1] (clipped against rounding)."""
    x = np.asarray(values, dtype=np.float64)
    return np.clip(_unit_point(x[~np.isnan(x)], bounds), 0.0, 1.0)


def _unit_point(value: float | np.ndarray, bounds: tuple[float, float]) -> float | np.ndarray:
    lo, hi = bounds
    return (value - lo) / (hi - lo)


def _accepted_range(x: np.ndarray, alpha: float) -> tuple[float, float]:
    """The ends of {m ∈ [0, 1] : max_s K_s(m) < 1/α}, each at the last rejected candidate outside it."""
    level = math.log(1.0 / alpha)
    grid = np.linspace(0.0, 1.0, GRID)
    accepted = log_capital(x, grid, alpha).max(axis=1) < level
    if not accepted.any():  # the sequence has left every candidate: keep the empirical mean's neighbours
        centre = float(np.clip(x.mean(), 0.0, 1.0))
        return max(centre - 1.0 / (GRID - 1), 0.0), min(centre + 1.0 / (GRID - 1), 1.0)
    first, last = int(np.argmax(accepted)), int(GRID - 1 - np.argmax(accepted[::-1]))
    low = 0.0 if first == 0 else _refine(x, alpha, level, rejected=grid[first - 1], accepted=grid[first])
    high = 1.0 if last == GRID - 1 else _refine(x, alpha, level, rejected=grid[last + 1], accepted=grid[last])
    return low, high


def _refine(x: np.ndarray, alpha: float, level: float, rejected: float, accepted: float) -> float:
    """Narrow the bracket between a rejected and an accepted candidate; returns the last rejected one."""
    for _ in range(REFINEMENTS):
        points = np.linspace(rejected, accepted, GRID)
        inside = log_capital(x, points, alpha).max(axis=1) < level
        boundary = int(np.argmax(inside))  # the first accepted point from the rejected side (points[-1] is accepted)
        rejected, accepted = float(points[boundary - 1]), float(points[boundary])
    return rejected
