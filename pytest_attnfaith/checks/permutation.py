"""``permutation``: does the output change when the attention is shuffled? (Jain & Wallace 2019, §4.2)

Per instance, the median over P random permutations (among the real positions, all else fixed)
of the effect on the output (``Context.effect``: on ``scale="margin"`` the relative margin change
min(|m − m'|/|m|, 1); on ``"probability"`` TVD(p, p_perm)). An instance is flagged when its median is below
``epsilon``; only
instances whose attention is peaked (max α̂ ≥ ``peak``) are judged, since permuting a flat
distribution cannot change anything (all instances are judged if none is peaked, as the report
says). Fails when the flagged fraction exceeds ``permutation_threshold``. J&W Fig. 2–4 plot the
median TVD against max attention in the bins [0, .25, .5, .75, 1].
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters import Batch, Edit, Forward
from pytest_attnfaith.checks._common import Context, fraction_result
from pytest_attnfaith.results import CheckResult

MEANING = "the output barely changes when the attention is shuffled: the heat map is decorative"
BINS = (0.0, 0.25, 0.5, 0.75, 1.0)


def permutation_index(real: Tensor, generator: torch.Generator) -> Tensor:
    """Per row, a random permutation of the real positions; other positions map to themselves."""
    rows, length = real.shape
    position = torch.arange(length, dtype=torch.float64).expand(rows, length)
    keys = torch.where(real.cpu(), torch.rand(rows, length, generator=generator, dtype=torch.float64), 2.0 + position)
    order = keys.argsort(dim=1, stable=True)
    slots = torch.where(real.cpu(), position - length, position).argsort(dim=1, stable=True)
    index = torch.empty_like(order).scatter_(1, slots, order)
    return index.to(real.device)


def _permute(rows: Tensor, real: Tensor, index: Tensor) -> Tensor:
    return rows.gather(-1, index.unsqueeze(1).expand_as(rows))


def median_permutation_effect(context: Context) -> np.ndarray:
    """Median effect of ``permutations`` shuffles per instance (NaN with < 2 real tokens)."""
    count = context.options.permutations
    generator = context.generator("permutation")
    batch = context.batch

    def instances(part: slice) -> Tensor:
        return torch.arange(part.start, part.stop) // count

    def make(part: slice) -> tuple[Batch, Edit | None]:
        chunk = batch.select(instances(part).to(batch.device))
        return chunk, Edit(_permute, {"index": permutation_index(chunk.real, generator)})

    def distance(forward: Forward, part: slice) -> Tensor:
        return context.effect(forward.logits, instances(part))

    distances = context.run_rows(batch.size * count, make, read=distance)
    medians = np.median(distances.view(batch.size, count).cpu().numpy(), axis=1)
    return np.where(context.defined(), medians, np.nan)


def binned_medians(max_attention: np.ndarray, values: np.ndarray) -> list[dict[str, float | int]]:
    """J&W's figure data: per max-attention bin, the count and median of the per-instance medians."""
    out = []
    for lo, hi in itertools.pairwise(BINS):
        inside = (max_attention >= lo) & ((max_attention < hi) | (hi == BINS[-1])) & ~np.isnan(values)
        out.append(
            {
                "lo": lo,
                "hi": hi,
                "count": int(inside.sum()),
                "median": float(np.median(values[inside])) if inside.any() else float("nan"),
            }
        )
    return out


def run(context: Context) -> CheckResult:
    options = context.options
    values = context.remember("permutation", lambda: median_permutation_effect(context))
    defined = ~np.isnan(values)
    max_attention = context.attention.max(dim=1).values.cpu().numpy()
    peaked = defined & (max_attention >= options.peak)
    judged_all = not peaked.any()
    eligible = defined if judged_all else peaked
    return fraction_result(
        context,
        "permutation",
        values,
        values < options.epsilon,
        eligible,
        options.permutation_threshold,
        MEANING,
        {
            "max_attention": max_attention,
            "bins": binned_medians(max_attention, values),
            "peaked": int(peaked.sum()),
            "judged_all_instances": judged_all,
            "permutations": options.permutations,
        },
    )
