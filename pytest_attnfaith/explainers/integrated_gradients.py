"""``integrated_gradients``: Sundararajan et al. (2017) at the embeddings' output.

Per real token t, IG_t = Σ_d (e_td − b_td) · ∫₀¹ ∂s_ŷ/∂e_td (b + α(e − b)) dα, with e the embeddings'
output on x, b the baseline, s_ŷ the float64 output score of the class predicted on x (``scale="margin"``:
z_ŷ − z_r, r the runner-up on x; ``"probability"``: p_ŷ) and the
attention **not** detached (the gradient flows through every path). The integral is a quadrature
with ``ig_steps`` nodes (``ig_method``: Captum's ``"gausslegendre"``, ``"riemann_trapezoid"``,
``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"``). ``ig_baseline``: ``"zeros"`` (a zero
embedding at every real position) or ``"mask"`` (the embedding of the mask, else pad, token there);
other positions keep theirs, so their attribution is 0. Inputs without token ids (images) integrate from the
``baseline`` option at every real position (``adapters.vision``), the baseline their removals use. Equal to
Captum's ``LayerIntegratedGradients`` on the embeddings layer (tests). Signed: Σ_t IG_t ≈ s_ŷ(x) − s_ŷ(baseline)
(completeness).

Every (instance, step) is one row; rows run ``backward_rows`` per pass (one backward pass each).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters import vision
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.metrics import score_gradient
from pytest_attnfaith.session import Context


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes α ∈ [0, 1] and weights of ∫₀¹ f(α) dα, as Captum's ``approximation_methods`` define them."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1.0 + nodes), 0.5 * weights
    weights = np.full(steps, 1.0 / steps)
    if method == "riemann_trapezoid":
        weights[[0, -1]] /= 2.0
        return np.linspace(0.0, 1.0, steps), weights
    starts = {"riemann_left": (0.0, 1.0 - 1.0 / steps), "riemann_right": (1.0 / steps, 1.0)}
    low, high = starts.get(method, (0.5 / steps, 1.0 - 0.5 / steps))  # riemann_middle
    return np.linspace(low, high, steps), weights


def attribute(context: Context) -> Tensor:
    """IG (B, T), float64, 0 off the real positions."""
    batch, steps = context.batch, context.options.ig_steps
    nodes, weights = (torch.from_numpy(values) for values in quadrature(context.options.ig_method, steps))
    masked = context.options.ig_baseline == "mask" and batch.input_ids is not None
    baselines = _MaskBaselines(context) if masked else None
    scores = torch.zeros(batch.size, batch.length, dtype=torch.float64, device=context.logits.device)
    total, size = batch.size * steps, context.backward_rows
    for start in range(0, total, size):
        rows = torch.arange(start, min(start + size, total))
        instances, step = rows // steps, rows % steps
        part = _weighted_gradients(context, instances, nodes[step], baselines)
        scores.index_add_(0, instances.to(scores.device), part * weights[step].unsqueeze(1).to(part.device))
    return torch.where(context.real, scores, 0.0)


def _weighted_gradients(context: Context, instances: Tensor, alphas: Tensor, baselines: _MaskBaselines | None) -> Tensor:
    """Per row, Σ_d (e − b)_td · ∂s_ŷ/∂e_td at b + α(e − b) (n, T), float64."""
    batch = context.batch.select(instances.to(context.batch.device))
    masked = baselines.of(instances) if baselines is not None else None  # before the pass: it runs one of its own
    delta: dict[str, Tensor] = {}
    baseline = context.options.baseline if batch.input_ids is None else "zero"

    def interpolate(native: Tensor) -> Tensor:
        real = batch.real.to(native.device)
        unmasked = torch.where(real.unsqueeze(-1), vision.baseline_embeddings(native, real, baseline), native)
        base = masked.to(native) if masked is not None else unmasked
        delta["value"] = (native - base).detach()
        return base + alphas.to(native).view(-1, 1, 1) * (native - base)

    forward = context.model.forward(batch, grad=True, capture_embeddings=True, embeddings=interpolate)
    embeddings = forward.embeddings
    assert embeddings is not None
    scale = context.options.scale
    grad = score_gradient(forward.logits, context.predicted[instances], context.rivals[instances], scale, embeddings)
    return (grad.double() * delta["value"].double()).sum(dim=-1).to(context.logits.device)


class _MaskBaselines:
    """The embeddings' output on x with every real token replaced by the mask (else pad) token, computed for
    ``batch_size`` instances at a time (one plain pass) as the rows reach them."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.token = context.removal_token("ig_baseline")
        self.first = 0
        self.block: Tensor | None = None

    def of(self, instances: Tensor) -> Tensor:
        low, high = int(instances.min()), int(instances.max())
        if self.block is None or low < self.first or high >= self.first + len(self.block):
            self.first, self.block = low, self._compute(low)
        return self.block[instances - self.first]

    def _compute(self, first: int) -> Tensor:
        batch: Batch = self.context.batch
        rows = torch.arange(first, min(first + self.context.options.batch_size, batch.size), device=batch.device)
        seen: list[Tensor] = []

        def keep(native: Tensor) -> Tensor:
            seen.append(native.detach())
            return native

        self.context.model.forward(batch.replaced(rows, batch.real[rows], self.token), embeddings=keep)
        return seen[0]
