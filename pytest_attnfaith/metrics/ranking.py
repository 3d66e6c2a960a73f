"""Kendall τ-b between two scorings of the same tokens, per row (scipy)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.stats
from torch import Tensor


def kendall_tau(x: Tensor | np.ndarray, y: Tensor | np.ndarray, real: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kendall τ-b and its two-sided p-value per row, over the real positions (scipy).

    Rows with fewer than two real positions or constant scores give NaN (never an error).
    """
    xs, ys, keep = (_numpy(t) for t in (x, y, real))
    xs = np.where(keep, xs.astype(np.float64), np.nan)
    ys = np.where(keep, ys.astype(np.float64), np.nan)
    if xs.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        result = scipy.stats.kendalltau(xs, ys, axis=1, nan_policy="omit", variant="b")
    tau = np.atleast_1d(np.asarray(result.statistic, dtype=np.float64))
    pvalue = np.atleast_1d(np.asarray(result.pvalue, dtype=np.float64))
    return tau, np.where(np.isnan(tau), np.nan, pvalue)


def _numpy(values: Tensor | np.ndarray) -> np.ndarray:
    if not isinstance(values, Tensor):
        return np.asarray(values)
    values = values.detach().cpu()
    return (values.double() if values.is_floating_point() else values).numpy()
