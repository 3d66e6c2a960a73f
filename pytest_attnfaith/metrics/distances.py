"""Output distributions and the distances between them, per row, in float64.

The output distribution is computed from the model's logits in float64 whatever the model's
dtype: float32 softmax turns distinct logits into ties (and changes Kendall τ). Positions outside
``real`` (padding, special tokens) never enter a statistic.
"""

from __future__ import annotations

from typing import Any

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
    """p in float64: softmax over C logits (B, C); for one binary logit z (B,) or (B, 1), p = [1 − σ(z), σ(z)]
    (class 1 is σ(z), as ``BCEWithLogitsLoss`` trains it)."""
    logits = logits.double()
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.dim() == 1:
        positive = torch.sigmoid(logits)
        return torch.stack([1.0 - positive, positive], dim=1)
    if logits.dim() == 2:
        return torch.softmax(logits, dim=1)
    raise ValueError(f"logits of shape {tuple(logits.shape)}; expected (B, C), (B,) or (B, 1)")


def binary_logit_gap(logits: Tensor) -> Tensor | None:
    """d = log p₁ − log p₀ in float64 for a two-class output (z for one logit z, as p = [1 − σ(z), σ(z)]);
    None for more classes. Exact where p itself rounds to 0 or 1."""
    logits = logits.double()
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.dim() == 1:
        return logits
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


def distribution_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a row of attention weights computed in ``dtype`` may sum: 4 ulps of 1 (at least 1e-3).

    Each weight rounded to ``dtype`` carries a relative error of at most half an ulp, so the row's sum is
    within ½·eps of 1 in exact arithmetic; bf16 (eps 2⁻⁷) gives 0.031, fp16 0.0039, float32 1e-3."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return max(1e-3, 4.0 * eps)
