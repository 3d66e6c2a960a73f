"""``shapley``: Shapley values of the tokens, sampled (Štrumbelj & Kononenko 2010; Captum's ``ShapleyValueSampling``).

The players are the real tokens, the value of a coalition S is s_ŷ(x_S) — the score of the class
predicted on x (``Context.score``: its margin m_ŷ on ``scale="margin"``, its probability p_ŷ on
``"probability"``), in float64, with every real token outside S removed as the ``removal`` option removes
tokens (``"delete"``: deleted, the row shortened; ``"mask"``: replaced by the mask, else pad, token;
special tokens are never removed). Where deleting every real token leaves nothing to run (no special token:
a wrapped model's rows), v(∅) is the score of the uniform output that carries no evidence (1/C, a margin of 0); each
token is first in 1/n of the permutations, so v(∅) shifts every exact Shapley value by the same amount and
leaves their ranking, all the checks read, unchanged. φ_t is the mean over permutations π of the real tokens of
v(tokens before t in π, and t) − v(tokens before t in π): ``shapley_samples`` permutations drawn at
random (seeded from the audit seed), or all n! of them when n! ≤ ``shapley_samples`` — the exact
Shapley value, equal to Captum's ``ShapleyValues`` (tests). Σ_t φ_t = s_ŷ(x) − s_ŷ(no real token).

Batched: every prefix of every permutation of a chunk of instances is one row through
``Context.run_removed``; v(x) is the audit's reference pass and v(∅) one row per instance.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from functools import cache

import torch
from torch import Tensor

from pytest_attnfaith.explainers import notes
from pytest_attnfaith.session import Context

ROWS_PER_CHUNK = 4
"""Instances per chunk: about ``ROWS_PER_CHUNK × batch_size`` permutations, so that each group of rows of one
length (deletion) fills whole passes."""


def attribute(context: Context) -> Tensor:
    """φ (B, T), float64, 0 off the real positions (and on rows with fewer than two real tokens); the standard
    error of each φ_t and how much of the ranking is within noise go to ``report.model["explainer"]``."""
    if context.options.removal == "mask" and context.batch.input_ids is not None:  # without ids: the baseline
        context.removal_token("removal")  # raises, naming the option, before any row runs
    samples, batch = context.options.shapley_samples, context.batch
    scores = torch.zeros(batch.size, batch.length, dtype=torch.float64, device=context.logits.device)
    errors = torch.zeros_like(scores)
    within = torch.full((batch.size,), float("nan"), dtype=torch.float64, device=scores.device)
    keys = torch.rand(batch.size, samples, batch.length, generator=context.generator("shapley"))  # the same draws at any chunking
    informative = (context.real_count >= 2).nonzero().squeeze(1)
    chunk = max(1, ROWS_PER_CHUNK * context.options.batch_size // samples)
    for start in range(0, len(informative), chunk):
        instances = informative[start : start + chunk]
        marginal, weight = _marginals(context, instances, keys[instances.cpu()].to(scores.device))
        scores[instances], errors[instances] = _mean_and_error(marginal, weight, context.real[instances])
        within[instances] = _within_noise(marginal, scores[instances], context, instances)
    notes.note(context, _describe(context, errors, within))
    return scores


def _marginals(context: Context, instances: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
    """Per instance, permutation and position, the marginal contribution v(prefix + t) − v(prefix) (c, P, T), and
    each permutation's weight (c, P): the value of every prefix of every permutation, batched."""
    real = context.real[instances]
    count, length = real.sum(dim=1), real.shape[1]
    ranks, weight = _permutations(real, keys)
    prefix = torch.arange(length, device=real.device)
    rows = weight.gt(0).unsqueeze(-1) & (prefix >= 1) & (prefix < count.view(-1, 1, 1))
    b, p, j = rows.nonzero(as_tuple=True)
    removed = real[b] & (ranks[b, p] >= j.unsqueeze(1))
    how = context.options.removal
    value = torch.zeros(len(instances), ranks.shape[1], length + 1, dtype=torch.float64, device=real.device)
    value[b, p, j] = context.run_removed(instances[b], removed, how, "removal", scored=True)
    empty = context.run_removed(instances, real, how, "removal", scored=True)  # NaN: nothing left to run
    uniform = context.score(torch.zeros_like(context.logits[instances]), instances)  # the output of all-equal logits
    value[:, :, 0] = torch.where(empty.isnan(), uniform, empty).unsqueeze(1)
    full = context.score(context.logits[instances], instances).unsqueeze(1)
    value.scatter_(2, count.view(-1, 1, 1).expand(-1, ranks.shape[1], 1), full.unsqueeze(-1).expand(-1, ranks.shape[1], 1))
    at = ranks.clamp(max=length - 1)
    return value.gather(2, at + 1) - value.gather(2, at), weight


def _mean_and_error(marginal: Tensor, weight: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
    """φ_t = Σ_π w_π m_πt and its standard error over the permutations, sd_π(m_πt) / √P for P drawn at random
    (0 when all n! are enumerated: φ is exact), 0 off the real positions (c, T) each."""
    phi = (marginal * weight.unsqueeze(-1)).sum(dim=1)
    return torch.where(real, phi, 0.0), torch.where(real, _sampling_error(marginal, real), 0.0)


def _sampling_error(marginal: Tensor, real: Tensor) -> Tensor:
    """sd over the P drawn permutations / √P of ``marginal`` (c, P, ...); 0 for the instances whose n! ≤ P orders
    were all enumerated (their φ is exact) (c, ...)."""
    samples = marginal.shape[1]
    exact = torch.lgamma(real.sum(dim=1).double() + 1.0) <= math.log(samples) + 1e-9  # n! ≤ P
    spread = marginal.std(dim=1, correction=1) / math.sqrt(samples) if samples > 1 else marginal[:, 0] * 0.0
    return torch.where(exact.view((-1,) + (1,) * (spread.dim() - 1)), 0.0, spread)


def _within_noise(marginal: Tensor, phi: Tensor, context: Context, instances: Tensor) -> Tensor:
    """The fraction of adjacent pairs of the top k = ⌈q·n⌉ (q the largest of ``aopc_bins``, in exact arithmetic)
    whose difference φ_(r) − φ_(r+1) is within 2 standard errors of that difference (the SE of the per-permutation
    differences, which share their permutations); NaN with fewer than two tokens in the top k (c,)."""
    real = context.real[instances]
    order = torch.where(real, phi, -math.inf).argsort(dim=1, descending=True)
    ranked = marginal.gather(2, order.unsqueeze(1).expand_as(marginal))
    steps = ranked[:, :, :-1] - ranked[:, :, 1:]
    difference = phi.gather(1, order)
    noisy = (difference[:, :-1] - difference[:, 1:]).abs() <= 2.0 * _sampling_error(steps, real)
    top = _top_sizes(context, real.sum(dim=1))
    pairs = torch.arange(steps.shape[2], device=real.device) < (top - 1).unsqueeze(1)
    counted = pairs.sum(dim=1)
    fraction = (noisy & pairs).sum(dim=1).double() / counted.clamp(min=1)
    return torch.where(counted > 0, fraction, math.nan)


def _top_sizes(context: Context, count: Tensor) -> Tensor:
    """k = ⌈q·n⌉ for the largest ERASER bin q, in integers (q = a/b exactly as written)."""
    share = Fraction(str(max(context.options.aopc_bins)))
    return (share.numerator * count + share.denominator - 1) // share.denominator


def _describe(context: Context, errors: Tensor, within: Tensor) -> dict[str, object]:
    """``report.model["explainer"]``: per instance the standard errors of the real tokens' φ and the fraction of the
    top-k adjacent pairs within noise, and their means."""
    defined = ~within.isnan()
    return {
        "name": "shapley",
        "samples": context.options.shapley_samples,
        "standard_errors": errors,  # (B, T): the report keeps the real positions' rows
        "max_standard_error": float(errors.max()) if errors.numel() else None,
        "within_noise": [None if math.isnan(value) else value for value in within.tolist()],
        "within_noise_mean": float(within[defined].mean()) if defined.any() else None,
        "top_k_bin": max(context.options.aopc_bins),
    }


def _permutations(real: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
    """Per instance and permutation, each position's rank (c, P, T; non-real positions rank after every real
    one) and the permutation's weight (c, P): 1/P for the P drawn from ``keys`` (uniform in [0, 1)), 1/n! for
    each of all n! when n! ≤ P."""
    count, samples = real.sum(dim=1), keys.shape[1]
    keys = torch.where(real.unsqueeze(1), keys, 2.0)
    ranks = keys.argsort(dim=-1).argsort(dim=-1)
    weight = torch.full((real.shape[0], samples), 1.0 / samples, dtype=torch.float64, device=real.device)
    for n in count.unique().tolist():
        if math.factorial(n) > samples:
            continue
        table = _all_orders(n).to(real.device)  # (n!, n): the rank of each real token
        exact = (count == n).nonzero().squeeze(1)
        positions = real[exact].nonzero()[:, 1].view(len(exact), n)
        ranks[exact, : len(table)] = ranks[exact, : len(table)].scatter(
            2, positions.unsqueeze(1).expand(-1, len(table), -1), table.unsqueeze(0).expand(len(exact), -1, -1)
        )
        weight[exact] = 0.0
        weight[exact, : len(table)] = 1.0 / len(table)
    return ranks, weight


@cache
def _all_orders(n: int) -> Tensor:
    """Every permutation of n tokens as the rank of each token (n!, n)."""
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long).argsort(dim=1)
