"""Pure statistics on batches: output distributions, TVD, JSD, Kendall tau-b.

All functions take batched tensors (or arrays) and return one value per row. Positions outside
``real`` (padding, special tokens) never enter a statistic.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.stats
import torch
from torch import Tensor


def logits_of(output: Any) -> Tensor:
    """The logits a model returned: a tensor, or an object / mapping with ``logits``."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, dict):
        logits = output.get("logits")
    if logits is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        logits = output[0]
    if not isinstance(logits, Tensor):
        raise TypeError(
            f"the model returned {type(output).__name__}; expected logits (B, C), (B,) or (B, 1), or an object with .logits"
        )
    return logits


def output_distribution(logits: Tensor) -> Tensor:
    """p: softmax over C logits (B, C); for one binary logit z (B,) or (B, 1), p = [σ(z), 1 − σ(z)]."""
    logits = logits.float()
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.dim() == 1:
        positive = torch.sigmoid(logits)
        return torch.stack([positive, 1.0 - positive], dim=1)
    if logits.dim() == 2:
        return torch.softmax(logits, dim=1)
    raise ValueError(f"logits of shape {tuple(logits.shape)}; expected (B, C), (B,) or (B, 1)")


def binary_logit_gap(logits: Tensor) -> Tensor | None:
    """d = log p₁ − log p₀ in float64 for a two-class output (−z for one logit z, as p = [σ(z), 1 − σ(z)]);
    None for more classes. Exact where p itself rounds to 0 or 1."""
    logits = logits.double()
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.dim() == 1:
        return -logits
    if logits.dim() == 2 and logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    return None


def tvd(p: Tensor, q: Tensor) -> Tensor:
    """Total variation distance over the last axis: TVD(p, q) = ½ Σ_c |p_c − q_c|."""
    return 0.5 * (p - q).abs().sum(dim=-1)


def kl(p: Tensor, q: Tensor) -> Tensor:
    """KL(p ‖ q) in nats over the last axis; 0·log 0 = 0."""
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(dim=-1)


def jsd(p: Tensor, q: Tensor) -> Tensor:
    """Jensen–Shannon divergence in nats over the last axis (bounded by ln 2)."""
    m = 0.5 * (p + q)
    return (0.5 * kl(p, m) + 0.5 * kl(q, m)).clamp(min=0.0)


def restrict(weights: Tensor, real: Tensor) -> Tensor:
    """Attention restricted to the real positions and renormalised to sum to 1 per row."""
    kept = torch.where(real, weights, torch.zeros_like(weights))
    total = kept.sum(dim=-1, keepdim=True)
    return kept / total.clamp(min=torch.finfo(kept.dtype).tiny)


def kendall_tau(x: Tensor | np.ndarray, y: Tensor | np.ndarray, real: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kendall τ-b and its two-sided p-value per row, over the real positions (scipy).

    Rows with fewer than two real positions or constant scores give NaN (never an error).
    """
    xs, ys, keep = (np.asarray(t.detach().cpu() if isinstance(t, Tensor) else t) for t in (x, y, real))
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
