"""ERASER's comprehensiveness and sufficiency (DeYoung et al. 2020), judged against random orderings.

Per instance, ŷ the class predicted on x, n its real tokens, for each bin q ∈ ``aopc_bins`` with
k = ⌈q·n⌉ and the top-k tokens of the scores under test (ties by position, earlier first):

    comprehensiveness = mean_q [s(x) − s(x without its top-k tokens)]
    sufficiency       = mean_q [s(x) − s(only its top-k tokens, special tokens always kept)]

with s the level of the output for ŷ: on ``scale="probability"`` its probability p_ŷ (ERASER's definition);
on ``scale="margin"`` its margin relative to the unedited one, s(x') = clip(m_ŷ(x')/|m_ŷ(x)|, 0, 2) (so
s(x) = 1, a flipped decision is 0, each difference lies in [−1, 1], and a change within the resolution is 0).

Tokens are removed as ``removal`` says (``Context.run_removed``: deleted, or replaced by the mask
token). The same values for ``random_orderings`` orderings of the same real tokens drawn at random
(seeded) give each instance a matched baseline; the check's statistic is the mean paired gain over it
(comprehensiveness: explainer − random; sufficiency: random − explainer) with its bootstrap interval,
which must reach the ``<check>_threshold`` margin: the verdict reads "better than chance". Instances
with fewer than two real tokens, or whose scores are NaN (an explainer that could not compute them), are
undefined (NaN, counted), never ranked. Every distinct (instance, ordering, k)
row runs once, batched; the random orderings' rows are shared by every explanation tested on the same
inputs (``Context.remember``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.checks._common import Context, mean_result
from pytest_attnfaith.metrics import mean_interval
from pytest_attnfaith.results import CheckResult


def run(context: Context, name: str, meaning: str) -> CheckResult:
    """``name`` is ``"comprehensiveness"`` or ``"sufficiency"``."""
    explained, explained_after = curves(context, name, ranks_of(context.scores, context.real).unsqueeze(0))
    unscored = (context.scores.isnan() & context.real).any(dim=1)  # an explainer's NaN (e.g. IG not converged)
    explained, explained_after = (
        explained.masked_fill(unscored, torch.nan),
        explained_after.masked_fill(unscored[:, None], torch.nan),
    )
    random, random_after = context.remember(f"{name}:random", lambda: curves(context, name, random_ranks(context)))
    value, baseline = explained[0], random.mean(dim=0)
    gain = value - baseline if name == "comprehensiveness" else baseline - value
    options = context.options
    details = {
        "bins": list(options.aopc_bins),
        "removal": options.removal,
        "random_orderings": options.random_orderings,
        "random": {**_summary(context, f"{name}:random", baseline), "per_instance": baseline.cpu().numpy()},
        "gain": gain.cpu().numpy(),
        "curve": _curve(context, explained_after[0], random_after),
    }
    return mean_result(
        context,
        name,
        gain.cpu().numpy(),
        getattr(options, f"{name}_threshold"),
        "mean gain over random orderings",
        meaning,
        details,
        reported=value.cpu().numpy(),
    )


def ranks_of(scores: Tensor, real: Tensor) -> Tensor:
    """Each position's rank by descending score among the real positions (ties: earlier first), (B, T); the
    other positions rank after every real one."""
    keyed = torch.where(real, scores.double(), -torch.inf)
    order = torch.sort(keyed, dim=1, descending=True, stable=True).indices
    return order.argsort(dim=1)


def random_ranks(context: Context) -> Tensor:
    """``random_orderings`` uniformly random orderings of each instance's real tokens, as ranks (R, B, T)."""
    batch = context.batch
    keys = torch.rand(context.options.random_orderings, batch.size, batch.length, generator=context.generator("orderings"))
    keys = torch.where(context.real.cpu(), keys, 2.0)
    return keys.argsort(dim=-1).argsort(dim=-1).to(context.real.device)


def curves(context: Context, name: str, ranks: Tensor) -> tuple[Tensor, Tensor]:
    """For each ordering (O, B, T) of ranks: the ERASER value per instance (O, B) and the level s after the edit of each
    bin (O, B, Q); NaN for instances with fewer than two real tokens. Each distinct (ordering, instance, k) edit
    runs once."""
    real, count = context.real, context.real_count
    sizes = bin_sizes(context.options.aopc_bins, count)  # k = ⌈q·n⌉, (B, Q)
    o, b, q = torch.meshgrid(*(torch.arange(n, device=real.device) for n in (ranks.shape[0], *sizes.shape)), indexing="ij")
    defined = count[b] >= 2
    edits, inverse = torch.unique(torch.stack([o[defined], b[defined], sizes[b, q][defined]], dim=1), dim=0, return_inverse=True)
    o, b, k = edits.unbind(dim=1)
    top = real[b] & (ranks[o, b] < k.unsqueeze(1))
    removed = top if name == "comprehensiveness" else real[b] & ~top
    edited = context.run_removed(b, removed, context.options.removal, "removal", scored=True)
    after = torch.full(defined.shape, float("nan"), dtype=torch.float64, device=context.logits.device)
    after[defined.to(after.device)] = level(context, edited, b)[inverse.to(after.device)]
    full = full_level(context).view(1, -1, 1)  # s(x), (1, B, 1)
    return (full - after).mean(dim=-1), after


def bin_sizes(bins: tuple[float, ...], count: Tensor) -> Tensor:
    """k = ⌈q·n⌉ per instance and bin (B, Q), in exact arithmetic (q read from its shortest decimal repr: 0.28 ·
    25 is 7, where floating point gives 7.000000000000001 and so 8)."""
    exact = [Fraction(repr(q)) for q in bins]
    table = torch.tensor(
        [[math.ceil(q * n) for q in exact] for n in range(int(count.max()) + 1 if len(count) else 1)], dtype=torch.long
    )
    return table.to(count.device)[count]


def full_level(context: Context) -> Tensor:
    """s(x) per instance (B,): p_ŷ(x), or 1 (the margin relative to itself)."""
    if context.options.scale == "probability":
        return context.score(context.logits, torch.arange(context.batch.size))
    return torch.ones(context.batch.size, dtype=torch.float64, device=context.logits.device)


def level(context: Context, scores: Tensor, instances: Tensor) -> Tensor:
    """s(x') of edited rows of ``instances`` from their scores (``Context.score``): p_ŷ, or the clipped relative
    margin; within the resolution of the unedited margin, exactly 1."""
    if context.options.scale == "probability":
        return scores
    instances = instances.to(scores.device)
    full = context.score(context.logits, torch.arange(context.batch.size))[instances]
    relative = (scores / full.abs()).clamp(min=0.0, max=2.0)
    return torch.where((scores - full).abs() <= context.tolerance[instances], 1.0, relative)


def _summary(context: Context, purpose: str, values: Tensor) -> dict[str, Any]:
    estimate = mean_interval(values.cpu().numpy(), context.options.confidence, context.seed(f"interval:{purpose}"))
    return {"mean": estimate.statistic, "interval": list(estimate.interval)}


def _curve(context: Context, explained: Tensor, random: Tensor) -> dict[str, Any]:
    """Mean level s (p_ŷ, or the relative margin) over the defined instances at fraction 0 and after each bin's
    edit: the explanation's, the random orderings' mean, and the band (the central ``confidence`` range of the
    random orderings' means)."""
    defined = torch.isfinite(explained).all(dim=1)
    full = [float(full_level(context)[defined].mean())]
    per_ordering = random[:, defined].mean(dim=1).cpu().numpy()  # (R, Q)
    coverage = context.options.confidence
    with np.errstate(invalid="ignore"):
        low, high = np.quantile(per_ordering, [(1 - coverage) / 2, (1 + coverage) / 2], axis=0)
    return {
        "fraction": [0.0, *context.options.aopc_bins],
        "explainer": full + explained[defined].mean(dim=0).tolist(),
        "random": full + per_ordering.mean(axis=0).tolist(),
        "random_low": full + low.tolist(),
        "random_high": full + high.tolist(),
    }
