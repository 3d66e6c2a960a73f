"""``integrated_gradients``: Sundararajan et al. (2017) at the embeddings' output, integrated until complete.

Per real token t, IG_t = Σ_d (e_td − b_td) · ∫₀¹ ∂f/∂e_td (b + α(e − b)) dα, with e the embeddings' output on
x, b the baseline and f the scalar the explainer is given (``objective``; default ``decision_objective``: the
float64 score of the class predicted on x on the ``scale`` option — ``"margin"``: z_ŷ − z_r, r the runner-up on
x; ``"probability"``: p_ŷ), the attention **not** detached. ``ig_baseline``: ``"zeros"`` (a zero embedding at
every real position), ``"mask"`` (the embedding of the mask, else pad, token there) or ``"mean"`` (the mean of
the instance's own real embeddings at each real position); other positions keep theirs, so their attribution is
0. Inputs without token ids (images) integrate from the ``baseline`` option at every real position
(``adapters.vision``), the baseline their removals use.

Completeness, Σ_t IG_t = f(x) − f(b), is the explainer's own test. The integral starts as a quadrature of
``ig_steps`` nodes on [0, 1] (``ig_method``, Captum's rules: then equal to Captum's
``LayerIntegratedGradients``, tests) and is refined where the path needs it (adaptive bisection, as QUADPACK
refines): each sub-interval [a, b] of an instance is checked against the exact change of f across it,
|Q_[a,b] − (f(b) − f(a))| (one forward pass per new break point), and the sub-intervals whose local gap
exceeds the instance's tolerance times their width are halved, each half integrated with
``REFINE_NODES`` nodes — until the instance's gap |Σ_t IG_t − (f(x) − f(b))| is within
``ig_tolerance`` = (absolute a, relative r): gap ≤ a + r·|f(x) − f(b)|, or its gradient nodes would exceed
``ig_max_steps``. An instance that does not converge gets NaN scores (counted, with a warning naming its
gap). ``ig_tolerance=None``: the fixed ``ig_steps`` quadrature, gaps reported, nothing NaN.

Every (instance, node) is one row; rows run ``backward_rows`` per pass through ``collect_chunks``; the loop is
over refinement rounds only. ``report.model["explainer"]`` holds the steps and gaps (``notes``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters import vision
from pytest_attnfaith.adapters.chunks import collect_chunks
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.adapters.passes import Forward
from pytest_attnfaith.errors import ConvergenceWarning, user_stacklevel
from pytest_attnfaith.explainers import notes
from pytest_attnfaith.metrics import decision_score
from pytest_attnfaith.session import Context

Objective = Callable[[Forward, Tensor], Tensor]
"""f: (a forward pass over n rows, the instance each row explains (n,)) → the scalar attributed per row (n,),
float64."""

REFINE_NODES = 8
"""Nodes of each half of a halved sub-interval (Gauss–Legendre: exact for polynomials of degree 15)."""


def decision_objective(context: Context) -> Objective:
    """f of each row: the score of its instance's predicted class on the ``scale`` option (``metrics.decision_score``:
    z_ŷ − z_r with r the runner-up on x, or p_ŷ), the scalar gradient × input differentiates too."""

    def score(forward: Forward, instances: Tensor) -> Tensor:
        instances = instances.to(context.predicted.device)
        classes, rivals = context.predicted[instances], context.rivals[instances]
        return decision_score(
            forward.logits, classes.to(forward.logits.device), rivals.to(forward.logits.device), context.options.scale
        )

    return score


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


def attribute(context: Context, objective: Objective | None = None) -> Tensor:
    """IG (B, T) of ``objective`` (None: ``decision_objective``), float64, 0 off the real positions, NaN on the
    instances that did not converge."""
    objective = objective or decision_objective(context)
    path = _Path(context, objective)
    end = objective(context.reference, torch.arange(context.batch.size)).detach().double().cpu()
    start = path.values(torch.arange(context.batch.size), torch.zeros(context.batch.size, dtype=torch.float64))
    pieces = _first_round(path, end, start)
    tolerance = context.options.ig_tolerance
    allowed = torch.full_like(end, float("inf"))
    if tolerance is not None:
        allowed = tolerance[0] + tolerance[1] * (end - start).abs()
        pieces = _refine(path, pieces, end - start, allowed)
    scores, gap, steps = pieces.totals(context.batch.size, end - start)
    failed = ~(gap <= allowed)  # a NaN gap (f undefined) fails too
    scores[failed] = float("nan")
    notes.note(context, _describe(context, end - start, gap, steps, failed))
    return torch.where(context.real, scores.to(context.probs.device), 0.0)


@dataclass
class _Pieces:
    """Sub-intervals [low, high] of the path, each owned by an instance, with f at both ends, their quadrature
    contribution to each token (K, T), and the gradient nodes spent per instance (B,)."""

    owner: Tensor
    low: Tensor
    high: Tensor
    f_low: Tensor
    f_high: Tensor
    contribution: Tensor
    steps: Tensor

    def local_gap(self) -> Tensor:
        """|Q_[a,b] − (f(b) − f(a))| per sub-interval (K,)."""
        return (self.contribution.sum(dim=1) - (self.f_high - self.f_low)).abs()

    def totals(self, size: int, change: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(scores (B, T), completeness gap (B,), gradient nodes (B,))."""
        scores = torch.zeros(size, self.contribution.shape[1], dtype=torch.float64, device=change.device)
        scores.index_add_(0, self.owner.to(change.device), self.contribution.to(change.device))
        return scores, (scores.sum(dim=1) - change).abs(), self.steps


def _first_round(path: _Path, end: Tensor, start: Tensor) -> _Pieces:
    """One sub-interval [0, 1] per instance, integrated with ``ig_steps`` nodes of ``ig_method``."""
    options, size = path.context.options, path.context.batch.size
    owner = torch.arange(size)
    low, high = torch.zeros(size, dtype=torch.float64), torch.ones(size, dtype=torch.float64)
    contribution = path.integrate(owner, low, high, options.ig_steps)
    steps = torch.full((size,), options.ig_steps, dtype=torch.long)
    return _Pieces(owner, low, high, start.cpu(), end.cpu(), contribution, steps)


def _refine(path: _Path, pieces: _Pieces, change: Tensor, allowed: Tensor) -> _Pieces:
    """Halve the sub-intervals whose local gap exceeds ``allowed`` × their width, round after round, until every
    instance is within ``allowed`` or would exceed ``ig_max_steps``."""
    cap = path.context.options.ig_max_steps
    while True:
        _, gap, _ = pieces.totals(len(change), change)
        open_ = gap > allowed
        halve = _to_halve(pieces, open_, allowed)
        cost = torch.zeros_like(pieces.steps).index_add_(0, pieces.owner, halve.long() * 2 * REFINE_NODES)
        affordable = pieces.steps + cost <= cap
        halve &= affordable[pieces.owner]
        if not halve.any():
            return pieces
        pieces = _halved(path, pieces, halve)


def _to_halve(pieces: _Pieces, open_: Tensor, allowed: Tensor) -> Tensor:
    """The sub-intervals of open instances whose local gap exceeds the tolerance density (allowed × width); an open
    instance with none (its local gaps cancel) halves its worst one."""
    local = pieces.local_gap()
    halve = open_[pieces.owner] & (local > allowed[pieces.owner] * (pieces.high - pieces.low))
    stuck = open_ & ~torch.zeros(len(open_), dtype=torch.long).index_add_(0, pieces.owner, halve.long()).bool()
    if stuck.any():
        worst = torch.full(open_.shape, -1.0, dtype=torch.float64).scatter_reduce_(0, pieces.owner, local, "amax")
        halve |= stuck[pieces.owner] & (local == worst[pieces.owner])
    return halve


def _halved(path: _Path, pieces: _Pieces, halve: Tensor) -> _Pieces:
    """``pieces`` with each sub-interval marked in ``halve`` replaced by its two halves (f at the midpoint by one
    forward pass, each half integrated with ``REFINE_NODES`` nodes), kept in owner order."""
    owner, low, high = pieces.owner[halve], pieces.low[halve], pieces.high[halve]
    middle = (low + high) / 2
    f_middle = path.values(owner, middle)
    new_owner = torch.cat([owner, owner])
    new_low, new_high = torch.cat([low, middle]), torch.cat([middle, high])
    order = torch.argsort(new_owner, stable=True)
    contribution = path.integrate(new_owner[order], new_low[order], new_high[order], REFINE_NODES)
    children = _Pieces(
        new_owner[order],
        new_low[order],
        new_high[order],
        torch.cat([pieces.f_low[halve], f_middle])[order],
        torch.cat([f_middle, pieces.f_high[halve]])[order],
        contribution,
        pieces.steps,
    )
    keep = ~halve
    merged = torch.cat([pieces.owner[keep], children.owner])
    order = torch.argsort(merged, stable=True)
    spent = pieces.steps + torch.zeros_like(pieces.steps).index_add_(0, owner, torch.full_like(owner, 2 * REFINE_NODES))
    return _Pieces(
        merged[order],
        torch.cat([pieces.low[keep], children.low])[order],
        torch.cat([pieces.high[keep], children.high])[order],
        torch.cat([pieces.f_low[keep], children.f_low])[order],
        torch.cat([pieces.f_high[keep], children.f_high])[order],
        torch.cat([pieces.contribution[keep], children.contribution])[order],
        spent,
    )


class _Path:
    """The straight path b + α(e − b) of each instance: f at points of it, and f's weighted gradients."""

    def __init__(self, context: Context, objective: Objective) -> None:
        self.context, self.objective = context, objective
        masked = context.options.ig_baseline == "mask" and context.batch.input_ids is not None
        self.baselines = _MaskBaselines(context) if masked else None

    def integrate(self, owner: Tensor, low: Tensor, high: Tensor, steps: int) -> Tensor:
        """Σ over ``steps`` nodes of [low, high] of weight × Σ_d (e − b)_td ∂f/∂e_td, per sub-interval (K, T)."""
        nodes, weights = (torch.from_numpy(values) for values in quadrature(self.context.options.ig_method, steps))
        width = (high - low).unsqueeze(1)
        alphas, scale = (low.unsqueeze(1) + width * nodes).flatten(), (width * weights).flatten()
        rows = owner.repeat_interleave(steps)

        def part(chunk: slice) -> Tensor:
            return self._rows(rows[chunk], alphas[chunk], owner, grad=True) * scale[chunk].unsqueeze(1)

        gradients = collect_chunks(len(rows), self.context.backward_rows, part)
        assert gradients is not None
        out = torch.zeros(len(owner), self.context.batch.length, dtype=torch.float64)
        return out.index_add_(0, torch.arange(len(owner)).repeat_interleave(steps), gradients.cpu())

    def values(self, instances: Tensor, alphas: Tensor) -> Tensor:
        """f at b + α(e − b) for each (instance, α) (n,), without gradients."""
        out = collect_chunks(
            len(instances),
            self.context.options.batch_size,
            lambda chunk: self._rows(instances[chunk], alphas[chunk], instances, grad=False),
        )
        assert out is not None
        return out.cpu()

    def _rows(self, instances: Tensor, alphas: Tensor, upcoming: Tensor, *, grad: bool) -> Tensor:
        """Per row, Σ_d (e − b)_td · ∂f/∂e_td at b + α(e − b) (n, T) with ``grad``, else f there (n,), float64.
        ``upcoming``: the instances of every row of the call, in order (what the mask baselines compute ahead)."""
        context = self.context
        batch = context.batch.select(instances.to(context.batch.device))
        masked = self.baselines.of(instances, upcoming) if self.baselines is not None else None  # a pass of its own
        delta: dict[str, Tensor] = {}

        def interpolate(native: Tensor) -> Tensor:
            base = self._baseline(native, batch, masked)
            delta["value"] = (native - base).detach()
            return base + alphas.to(native).view(-1, 1, 1) * (native - base)

        forward = context.model.forward(batch, grad=grad, capture_embeddings=grad, embeddings=interpolate)
        value = self.objective(forward, instances)
        if not grad:
            return value.detach().double()
        assert forward.embeddings is not None
        found = torch.autograd.grad(value.sum(), forward.embeddings, allow_unused=True) if value.requires_grad else (None,)
        if found[0] is None:  # no gradient path from the output to the embeddings
            return torch.zeros(len(instances), batch.length, dtype=torch.float64)
        return (found[0].double() * delta["value"].double()).sum(dim=-1).cpu()

    def _baseline(self, native: Tensor, batch: Batch, masked: Tensor | None) -> Tensor:
        """b (n, T, D): the mask embeddings, the instance's mean real embedding, or zeros, at the real positions."""
        real = batch.real.to(native.device).unsqueeze(-1)
        if batch.input_ids is None:  # images: the ``baseline`` option, as their removals use it
            baseline = vision.baseline_embeddings(native, real.squeeze(-1), self.context.options.baseline)
            return torch.where(real, baseline, native)
        if masked is not None:
            return masked.to(native)
        if self.context.options.ig_baseline == "mean":
            mean = (native * real).sum(dim=1, keepdim=True) / real.sum(dim=1, keepdim=True).clamp(min=1)
            return torch.where(real, mean, native)
        return native * ~real


def _describe(context: Context, change: Tensor, gap: Tensor, steps: Tensor, failed: Tensor) -> dict[str, object]:
    """``report.model["explainer"]``: the tolerance; per instance f(x) − f(b), the gradient nodes and the completeness
    gap; the instances left NaN (warned)."""
    options = context.options
    count = int(failed.sum())
    if count:
        worst = int(torch.where(failed, gap, -1.0).argmax())
        warnings.warn(
            f"attnfaith: integrated_gradients did not converge on {count} of {len(gap)} instances within "
            f"ig_max_steps={options.ig_max_steps} (worst: instance {worst}, completeness gap {float(gap[worst]):.3g} > "
            f"tolerance {options.ig_tolerance}); their scores are NaN and they are left out of the checks",
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )
    return {
        "name": "integrated_gradients",
        "baseline": options.ig_baseline,
        "method": options.ig_method,
        "tolerance": list(options.ig_tolerance) if options.ig_tolerance is not None else None,
        "changes": change.tolist(),
        "steps": steps.tolist(),
        "mean_steps": float(steps.double().mean()) if len(steps) else None,
        "gaps": gap.cpu().tolist(),
        "max_gap": float(gap.max()) if len(gap) else None,
        "unconverged": count,
    }


class _MaskBaselines:
    """The embeddings' output on x with every real token replaced by the mask (else pad) token, computed for up to
    ``batch_size`` instances at a time (one plain pass): those of the chunk and the next ones the call will reach."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.token = context.removal_token("ig_baseline")
        self.ids = torch.zeros(0, dtype=torch.long)
        self.block: Tensor | None = None

    def of(self, instances: Tensor, upcoming: Tensor) -> Tensor:
        """b (n, T, D) for ``instances`` (a run of ``upcoming``, which is in instance order)."""
        instances = instances.cpu()
        if self.block is None or not torch.isin(instances, self.ids).all():
            ahead = upcoming.cpu().unique()
            ahead = ahead[ahead >= instances.min()]
            self.ids = torch.cat([instances.unique(), ahead]).unique()[: max(self.context.options.batch_size, len(instances))]
            self.block = self._compute(self.ids)
        return self.block[torch.searchsorted(self.ids, instances).to(self.block.device)]

    def _compute(self, ids: Tensor) -> Tensor:
        batch: Batch = self.context.batch
        rows = ids.to(batch.device)
        seen: list[Tensor] = []

        def keep(native: Tensor) -> Tensor:
            seen.append(native.detach())
            return native

        self.context.model.forward(batch.replaced(rows, batch.real[rows], self.token), embeddings=keep)
        return seen[0]
