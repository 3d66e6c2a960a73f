"""The decision margin of the logits, and the effect of a counterfactual on the output, per ``scale``.

``scale="margin"`` (the default) measures every effect on the decision margin of the logits, computed in
float64: with C ≥ 2 logits, m_y = z_y − max_{c≠y} z_c; with one binary logit z (class 1 is σ(z)),
m_1 = z and m_0 = −z. Multiplying the logits by T > 0 multiplies every margin by T, so every *relative*
change, every ratio and every ranking below is unchanged: the statistics do not depend on how confident the
output is. ``scale="probability"`` keeps Jain & Wallace's total variation distance between output
distributions (DESIGN.md, Round 1).

Resolution: two outputs whose logits differ by no more than ``tolerance`` (``resolution`` × the reference
logits' magnitude, per instance) are the same output, and the effect between them is exactly 0: what is left
is the rounding of the model's dtype, not a response of the model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.metrics.distances import output_distribution, tvd

SCALES: tuple[str, ...] = ("margin", "probability")
RESOLUTION_ULPS = 8
"""The default ``resolution`` of float32 and wider dtypes: this many machine epsilons, relative to the logits'
magnitude (float32: 9.5e-7). Measured: the same input in batches of other sizes moves a float32 MiniLM's logits by up
to ~1e-6 of their magnitude (``docs/thresholds.md``)."""
HALF_RESOLUTION_ULPS = 2
"""The default ``resolution`` of bf16 and fp16, in their machine epsilons (bf16: 0.0156): their logits are rounded once
from float32 accumulators, so two batches of the same input differ by about one of their ulps, not eight."""


def default_resolution(dtype: torch.dtype) -> float:
    """The ``resolution`` used when the option is None: ``RESOLUTION_ULPS`` epsilons of float32 and wider dtypes,
    ``HALF_RESOLUTION_ULPS`` of half-precision ones."""
    eps = torch.finfo(dtype).eps
    return (HALF_RESOLUTION_ULPS if torch.finfo(dtype).bits <= 16 else RESOLUTION_ULPS) * eps


def as_columns(logits: Tensor) -> Tensor:
    """Logits as (n, K) float64 (one binary logit: K = 1)."""
    logits = logits.double()
    return logits.unsqueeze(1) if logits.dim() == 1 else logits


def margin(logits: Tensor, classes: Tensor) -> Tensor:
    """m (n,), float64: the margin of class ``classes[i]`` in row i — z_y − max_{c≠y} z_c, or ±z for one logit."""
    logits = as_columns(logits)
    classes = classes.to(logits.device)
    if logits.shape[1] == 1:
        return torch.where(classes == 1, logits[:, 0], -logits[:, 0])
    chosen = logits.gather(1, classes.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, classes.unsqueeze(1), float("-inf"))
    return chosen - others.amax(dim=1)


def runner_up(logits: Tensor, classes: Tensor) -> Tensor:
    """The class with the largest logit other than ``classes`` (n,) (for one binary logit: the other class)."""
    logits = as_columns(logits)
    classes = classes.to(logits.device)
    if logits.shape[1] == 1:
        return 1 - classes
    return logits.scatter(1, classes.unsqueeze(1), float("-inf")).argmax(dim=1)


def pair_margin(logits: Tensor, classes: Tensor, rivals: Tensor) -> Tensor:
    """z_y − z_r for fixed classes y and rivals r, differentiable (the margin where r is the runner-up)."""
    logits = logits.unsqueeze(1) if logits.dim() == 1 else logits
    if logits.shape[1] == 1:
        return torch.where(classes.to(logits.device) == 1, logits[:, 0], -logits[:, 0])
    picked = logits.gather(1, torch.stack([classes, rivals], dim=1).to(logits.device))
    return picked[:, 0] - picked[:, 1]


def class_score(logits: Tensor, classes: Tensor, scale: str) -> Tensor:
    """What a class's output is on ``scale``: its margin, or its probability (n,), float64."""
    if scale == "probability":
        return output_distribution(logits).gather(1, classes.to(logits.device).unsqueeze(1)).squeeze(1)
    return margin(logits, classes)


def tolerance(logits: Tensor, resolution: float) -> Tensor:
    """Per row, the smallest change of the logits that is not rounding: ``resolution`` × max_c |z_c| (n,)."""
    return resolution * as_columns(logits).abs().amax(dim=1)


def same_output(reference: Tensor, logits: Tensor, within: Tensor) -> Tensor:
    """Rows whose logits are within ``within`` (n,) of the reference's in every coordinate (n,) bool."""
    return (as_columns(logits) - as_columns(reference)).abs().amax(dim=1) <= within


def output_change(reference: Tensor, logits: Tensor, classes: Tensor, scale: str, within: Tensor) -> Tensor:
    """How far the output moved from ``reference`` to ``logits`` (n,), float64; 0 where they are the same output.

    ``probability``: TVD(p, p'). ``margin``: |m_ŷ − m'_ŷ| in logit units (ŷ = ``classes``, predicted on x)."""
    if scale == "probability":
        moved = tvd(output_distribution(logits), output_distribution(reference))
    else:
        moved = (margin(reference, classes) - margin(logits, classes)).abs()
    return torch.where(same_output(reference, logits, within), 0.0, moved)


def relative_change(reference: Tensor, logits: Tensor, classes: Tensor, scale: str, within: Tensor) -> Tensor:
    """The effect of a counterfactual on the output (n,), float64, in [0, 1].

    ``margin``: min(|m − m'| / |m|, 1), with m the margin of ŷ on x and m' the margin of the same class on the
    counterfactual: 1 when the decision flips (m' ≤ 0) or the margin moves by at least its own size; NaN where
    m is 0 (a tie: no decision to move). ``probability``: TVD(p, p') (Jain & Wallace)."""
    moved = output_change(reference, logits, classes, scale, within)
    if scale == "probability":
        return moved
    base = margin(reference, classes).abs()
    relative = torch.where(base > 0, moved / base.clamp(min=torch.finfo(torch.float64).tiny), float("nan"))
    return torch.where(moved == 0, 0.0, relative).clamp(max=1.0)


def flipped(reference: Tensor, logits: Tensor, classes: Tensor) -> Tensor:
    """Rows where the counterfactual's margin of ŷ is not positive: the decision flipped (n,) bool."""
    return margin(logits, classes) <= 0


def decision_score(logits: Tensor, classes: Tensor, rivals: Tensor, scale: str) -> Tensor:
    """The differentiable output score of class ``classes`` (n,): its probability, or on ``margin`` z_y − z_r with
    r the runner-up on the unedited input (equal to the margin m_y there, and its gradient)."""
    if scale == "probability":
        return output_distribution(logits).gather(1, classes.to(logits.device).unsqueeze(1)).squeeze(1)
    return pair_margin(as_columns(logits), classes, rivals)


def score_gradient(logits: Tensor, classes: Tensor, rivals: Tensor, scale: str, wrt: Tensor) -> Tensor:
    """∂ Σ_i score_i / ∂ ``wrt`` (``decision_score``), in ``wrt``'s shape; zeros where the output has no gradient
    path to ``wrt`` (never an error)."""
    total = decision_score(logits, classes, rivals, scale).sum()
    grad = torch.autograd.grad(total, wrt, allow_unused=True)[0] if total.requires_grad else None
    return torch.zeros_like(wrt) if grad is None else grad
