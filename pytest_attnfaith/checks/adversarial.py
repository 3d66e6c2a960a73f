"""``adversarial``: is the attention the only one that gives this output? (Jain & Wallace 2019, §4.3)

Per instance, max JSD(α', α̂) over candidate distributions α' whose output stays within ``epsilon`` of the
original — the original attention always among them (JSD 0). On ``scale="margin"`` the bound is the relative
margin change |m'_ŷ − m_ŷ| ≤ ε·|m_ŷ| (ε < 1, so the decision never flips); on ``"probability"`` it is
J&W's TVD(p', p) ≤ ε. An instance is
flagged when the max JSD is at least ``delta``; fails when the flagged fraction exceeds
``adversarial_threshold``.

Two ways to find the candidates (``adversarial_method``):

* ``exact`` — where the output is binary and its logit difference d(α') is linear in α'
  (a linear readout of Σ α'_t h_t, the J&W architecture; verified numerically per instance),
  the bound is a slab lo ≤ d(α') ≤ hi (margin: d·(1 ∓ ε); probability: logit(p₁ ∓ ε)), JSD is convex,
  and its maximum over simplex ∩ slab lies at
  a vertex: one-hot vectors inside the slab, or two-token mixtures on its faces (O(T²),
  vectorised). This is the true optimum.
* ``search`` — J&W's optimiser, batched over instances × ``adversaries``: free logits initialised
  at log(1/n) + 3·N(0, 1), Adam (lr ``adversarial_lr``, amsgrad), loss −JSD(α', α̂) +
  500·ReLU(distance − h) − mean pairwise JSD among the adversaries (distance: TVD with J&W's h = 0.01, or the
  relative margin change with h = ε/5, the same fraction of the bound), up to ``adversarial_steps``
  steps, a chunk of instances at a time, each chunk stopping early once none of its instances' best
  JSD rises by 1e-3 over 100 steps. Every iterate is a real candidate: the best valid one is kept.

``auto`` uses the exact optimum where it applies and the search elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters import Batch, Edit, Forward
from pytest_attnfaith.checks._common import Context, fraction_result, replace_rows
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import binary_logit_gap, margin, tvd
from pytest_attnfaith.results import CheckResult

MEANING = "a very different attention distribution gives the same output: the heat map is not the unique explanation"
LINEARITY_PROBES = 3
LINEARITY_TOLERANCE = 1e-3
HINGE_MARGIN = 0.01
HINGE_WEIGHT = 500.0
PATIENCE = 100  # steps between convergence tests (50 let small chunks stop early: the result depended on batch_size)
CONVERGED = 1e-3  # stop when no instance's best JSD rose by more than this (nats) over PATIENCE steps


def _gap_of(forward: Forward, part: slice) -> Tensor:
    gap = binary_logit_gap(forward.logits)
    assert gap is not None  # two-class outputs only
    return gap


def _gaps_for(context: Context, instances: Tensor, weights: Callable[[slice], Tensor]) -> Tensor:
    """Logit gaps d of ``instances`` with every head's read row replaced by ``weights(part)`` (built per chunk)."""
    batch = context.batch

    def make(part: slice) -> tuple[Batch, Edit | None]:
        return batch.select(instances[part].to(batch.device)), Edit(replace_rows, {"weights": weights(part)})

    return context.run_rows(len(instances), make, read=_gap_of)


def linear_readout(context: Context) -> tuple[Tensor, Tensor]:
    """Per instance: d_t = d(one-hot at t) (B, T) and whether d(α') = Σ α'_t d_t holds (B,)."""
    real = context.real
    size, length = real.shape
    device = context.logits.device
    if binary_logit_gap(context.logits) is None or not bool(context.defined().any()):
        return torch.zeros(size, length, dtype=torch.float64, device=device), torch.zeros(size, dtype=torch.bool, device=device)
    rows, positions = real.nonzero(as_tuple=True)
    vertex = torch.zeros(size, length, dtype=torch.float64, device=device)
    vertex[rows, positions] = _gaps_for(context, rows, lambda part: torch.nn.functional.one_hot(positions[part], length).float())
    generator = context.generator("adversarial-linearity")
    gamma = -torch.log(torch.rand(size * LINEARITY_PROBES, length, generator=generator)).to(device)
    mixtures = torch.where(real.repeat_interleave(LINEARITY_PROBES, 0), gamma, 0.0)
    mixtures = mixtures / mixtures.sum(dim=1, keepdim=True).clamp(min=1e-30)
    instances = torch.arange(size, device=device).repeat_interleave(LINEARITY_PROBES)
    actual = _gaps_for(context, instances, lambda part: mixtures[part])
    predicted = (mixtures * vertex[instances]).sum(dim=1)
    scale = 1.0 + vertex.abs().amax(dim=1)[instances]
    tolerance = max(LINEARITY_TOLERANCE, 8 * torch.finfo(context.model.dtype).eps)  # logits rounded to the model's dtype
    close = ((actual - predicted).abs() <= tolerance * scale).view(size, LINEARITY_PROBES).all(dim=1)
    finite = torch.isfinite(vertex).all(dim=1)
    return vertex, close & finite & (context.real_count >= 2)


def _logit(p: Tensor) -> Tensor:
    return torch.log(p) - torch.log1p(-p)


def slab(gap: Tensor, epsilon: float, scale: str) -> tuple[Tensor, Tensor]:
    """The bounds (lo, hi) (B, 1) on the logit difference d(α') = log p₁ − log p₀ that keep the output within
    ``epsilon``: d·(1 ∓ ε) on ``margin`` (|d| is the margin), logit(p₁ ∓ ε) on ``probability`` (TVD ≤ ε)."""
    if scale == "probability":
        p1 = torch.sigmoid(gap)
        return _logit((p1 - epsilon).clamp(min=0.0)).unsqueeze(1), _logit((p1 + epsilon).clamp(max=1.0)).unsqueeze(1)
    ends = torch.stack([gap * (1.0 - epsilon), gap * (1.0 + epsilon)], dim=1)
    return ends.amin(dim=1, keepdim=True), ends.amax(dim=1, keepdim=True)


def exact_max_jsd(alpha: Tensor, real: Tensor, vertex: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """max JSD(α', α) over α' in simplex ∩ {lo ≤ Σ α'_t d_t ≤ hi}: vertices of the polytope.

    ``alpha`` (B, T) restricted to real positions; ``vertex`` d_t; ``lo``, ``hi`` (B, 1) the slab (``slab``).
    """
    log2 = math.log(2.0)
    # one-hot candidates e_i inside the slab
    m_single = 0.5 * (alpha + 1.0)
    single = 0.5 * (-torch.log(m_single)) + 0.5 * ((1 - alpha) * log2 + torch.xlogy(alpha, alpha) - torch.xlogy(alpha, m_single))
    inside = real & (vertex >= lo) & (vertex <= hi)
    best = torch.where(inside, single, torch.zeros_like(single)).amax(dim=1)
    # two-token mixtures λ e_i + (1 − λ) e_j on a face d = bound
    di, dj = vertex.unsqueeze(2), vertex.unsqueeze(1)
    ai, aj = alpha.unsqueeze(2), alpha.unsqueeze(1)
    pair = real.unsqueeze(2) & real.unsqueeze(1) & ~torch.eye(real.shape[1], dtype=torch.bool, device=real.device)
    for bound in (lo, hi):
        with torch.no_grad():
            lam = (bound.unsqueeze(2) - dj) / (di - dj)
        valid = pair & torch.isfinite(lam) & (lam > 0) & (lam < 1)
        lam = torch.where(valid, lam, torch.zeros_like(lam))
        value = _pair_jsd(lam, 1 - lam, ai, aj)
        best = torch.maximum(best, torch.where(valid, value, torch.zeros_like(value)).amax(dim=(1, 2)))
    return best


def _pair_jsd(wi: Tensor, wj: Tensor, ai: Tensor, aj: Tensor) -> Tensor:
    """JSD(α', α) for α' supported on {i, j} with weights wi, wj (closed form, O(1) per pair)."""
    mi, mj = 0.5 * (wi + ai), 0.5 * (wj + aj)
    kl_candidate = torch.xlogy(wi, wi) - torch.xlogy(wi, mi) + torch.xlogy(wj, wj) - torch.xlogy(wj, mj)
    rest = (1 - ai - aj).clamp(min=0.0)
    kl_original = rest * math.log(2.0) + torch.xlogy(ai, ai) - torch.xlogy(ai, mi) + torch.xlogy(aj, aj) - torch.xlogy(aj, mj)
    return (0.5 * kl_candidate + 0.5 * kl_original).clamp(min=0.0)


def search_max_jsd(context: Context, instances: Tensor) -> Tensor:
    """J&W's adversarial search for ``instances``, batched over instances × adversaries.

    Whole instances are optimised together, ``batch_size // adversaries`` per chunk, each chunk to
    convergence before the next (Adam is elementwise, so this is the same optimisation as one big
    batch): the chunk's upstream pass is computed once and memory stays bounded by the chunk."""
    count = context.options.adversaries
    real = context.real[instances]
    noise = torch.randn((len(instances) * count, real.shape[1]), generator=context.generator("adversarial-search"))
    per_chunk = max(context.options.batch_size // count, 1)
    parts = [
        _search_chunk(context, chunk, noise[start * count : (start + len(chunk)) * count].to(real.device))
        for start, chunk in zip(range(0, len(instances), per_chunk), instances.split(per_chunk), strict=True)
    ]
    return torch.cat(parts)


def _search_chunk(context: Context, instances: Tensor, noise: Tensor) -> Tensor:
    """The search for one chunk of instances (``noise``: N(0, 1) per adversary and position)."""
    options = context.options
    count = options.adversaries
    real = context.real[instances].repeat_interleave(count, 0)
    alpha = context.attention[instances].repeat_interleave(count, 0)
    repeated = instances.repeat_interleave(count)
    hinge = HINGE_MARGIN if options.scale == "probability" else options.epsilon / 5.0
    n = real.sum(dim=1, keepdim=True).float()
    logits = (torch.log(1.0 / n) + 3.0 * noise).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=options.adversarial_lr, amsgrad=True)
    best = torch.zeros(len(instances), device=real.device)
    checkpoint = best.clone()
    batch = context.batch.select(instances.repeat_interleave(count).to(context.batch.device))
    for step in range(options.adversarial_steps):
        optimizer.zero_grad()
        candidate = torch.softmax(logits.masked_fill(~real, float("-inf")), dim=1)
        forward = context.model.forward(batch, Edit(replace_rows, {"weights": candidate}), grad=True)
        distance = _distance(context, forward, repeated)
        divergence = _masked_jsd(candidate, alpha, real)
        spread = _mean_pairwise_jsd(candidate.view(-1, count, candidate.shape[1]), real.view(-1, count, candidate.shape[1]))
        loss = (-divergence + HINGE_WEIGHT * torch.relu(distance - hinge)).sum() - spread.sum()
        loss.backward(inputs=[logits])
        optimizer.step()
        found = torch.where(distance <= options.epsilon, divergence, torch.zeros_like(divergence)).detach()
        best = torch.maximum(best, found.view(-1, count).amax(dim=1))
        if (step + 1) % PATIENCE == 0:
            if float((best - checkpoint).max()) < CONVERGED:
                break
            checkpoint = best.clone()
    return best


def _distance(context: Context, forward: Forward, instances: Tensor) -> Tensor:
    """How far each candidate's output is from its instance's, differentiably: TVD, or the relative margin change
    |m' − m| / |m| of the predicted class (unclipped)."""
    device = forward.logits.device
    if context.options.scale == "probability":
        return tvd(forward.probs, context.probs[instances.to(context.probs.device)].to(device))
    classes = context.predicted[instances.to(context.predicted.device)].to(device)
    original = margin(context.logits[instances.to(context.logits.device)].to(device), classes)
    return (margin(forward.logits, classes) - original).abs() / original.abs()


def _masked_jsd(p: Tensor, q: Tensor, real: Tensor) -> Tensor:
    """JSD over the real positions only, with finite gradients (padding contributes nothing)."""
    p = torch.where(real, p, torch.zeros_like(p))
    q = torch.where(real, q, torch.zeros_like(q))
    m = torch.where(real, 0.5 * (p + q), torch.ones_like(p))
    safe_p = torch.where(real, p, torch.ones_like(p))
    safe_q = torch.where(real, q, torch.ones_like(q))
    kl_p = (p * (torch.log(safe_p.clamp(min=1e-30)) - torch.log(m.clamp(min=1e-30)))).sum(dim=-1)
    kl_q = (q * (torch.log(safe_q.clamp(min=1e-30)) - torch.log(m.clamp(min=1e-30)))).sum(dim=-1)
    return (0.5 * kl_p + 0.5 * kl_q).clamp(min=0.0)


def _mean_pairwise_jsd(candidates: Tensor, real: Tensor) -> Tensor:
    """Mean JSD over pairs of the K adversaries of each instance (B, K, T) -> (B,)."""
    count = candidates.shape[1]
    if count < 2:
        return torch.zeros(candidates.shape[0], device=candidates.device)
    pairwise = _masked_jsd(candidates.unsqueeze(2), candidates.unsqueeze(1), real.unsqueeze(2))
    return pairwise.sum(dim=(1, 2)) / (count * (count - 1))


def max_jsd(context: Context) -> tuple[np.ndarray, np.ndarray]:
    """Per instance, the max JSD (NaN with < 2 real tokens) and the method used ("exact"/"search")."""
    method = context.options.adversarial_method
    size = context.batch.size
    device = context.probs.device
    defined = torch.as_tensor(context.defined(), device=device)
    exact = torch.zeros(size, dtype=torch.bool, device=device)
    values = torch.full((size,), float("nan"), dtype=torch.float64, device=device)
    if method in ("auto", "exact"):
        vertex, exact = linear_readout(context)
        if method == "exact" and bool((defined & ~exact).any()):
            bad = int((defined & ~exact).nonzero()[0])
            raise AttnFaithError(
                f"adversarial_method='exact' needs a binary output whose logit is linear in the attention; instance {bad} "
                "is not (use adversarial_method='auto' or 'search')"
            )
        solvable = exact.nonzero().flatten()
        gap = binary_logit_gap(context.logits)  # None for more than two classes: then none is solvable
        lo, hi = slab(gap if gap is not None else context.logits[:, 0], context.options.epsilon, context.options.scale)
        pairs_per_chunk = max(context.options.batch_size // context.real.shape[1], 1)  # (n, T, T) ≤ batch_size × T
        for part in solvable.split(pairs_per_chunk):
            values[part] = exact_max_jsd(
                context.attention[part].double(),
                context.real[part],
                vertex[part],
                lo[part],
                hi[part],
            )
    todo = (defined & ~exact).nonzero().flatten()
    if len(todo):
        with torch.enable_grad():
            values[todo] = search_max_jsd(context, todo).to(values.dtype)
    methods = np.where(exact.cpu().numpy(), "exact", np.where(defined.cpu().numpy(), "search", "undefined"))
    return values.detach().cpu().numpy(), methods


def run(context: Context) -> CheckResult:
    values, methods = context.remember("adversarial", lambda: max_jsd(context))
    return fraction_result(
        context,
        "adversarial",
        values,
        values >= context.options.delta,
        ~np.isnan(values),
        context.options.adversarial_threshold,
        MEANING,
        {
            "method": methods.tolist(),
            "exact": int((methods == "exact").sum()),
            "searched": int((methods == "search").sum()),
            "adversaries": context.options.adversaries,
        },
    )
