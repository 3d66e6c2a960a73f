"""``erasure``: is removing the top-attended token more harmful than removing another? (Serrano & Smith 2019)

Per instance, the effect (``Context.effect``: relative margin change, or TVD on ``scale="probability"``)
of zeroing the top attention weight and renormalising, minus the mean of the same effect over every other
real position (all of them, never a random one that could be the top). An instance is flagged when the
difference is below ``erasure_margin``; fails when the flagged fraction exceeds ``erasure_threshold``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters import Batch, Edit
from pytest_attnfaith.checks._common import Context, fraction_result
from pytest_attnfaith.results import CheckResult

MEANING = "erasing the most attended token harms the output no more than erasing any other token"


def _erase(rows: Tensor, real: Tensor, position: Tensor) -> Tensor:
    keep = torch.ones_like(rows).scatter_(-1, position.view(-1, 1, 1).expand(-1, rows.shape[1], 1), 0.0)
    kept = rows * keep
    return kept / kept.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(rows.dtype).tiny)


def erasure_effects(context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per instance: the effect of erasing the top position, the mean effect of erasing each other real position."""
    batch = context.batch
    rows, positions = batch.real.nonzero(as_tuple=True)
    informative = batch.real.sum(dim=1)[rows] >= 2
    rows, positions = rows[informative], positions[informative]

    def make(part: slice) -> tuple[Batch, Edit | None]:
        return batch.select(rows[part]), Edit(_erase, {"position": positions[part]})

    logits = context.run_rows(len(rows), make)
    device = context.logits.device
    rows_d, positions_d = rows.to(device), positions.to(device)
    distance = torch.full(batch.real.shape, float("nan"), dtype=torch.float64, device=device)
    distance[rows_d, positions_d] = context.effect(logits, rows_d)
    top = context.attention.argmax(dim=1)
    top_tvd = distance.gather(1, top.unsqueeze(1)).squeeze(1)
    others = distance.scatter(1, top.unsqueeze(1), float("nan"))
    other_mean = torch.nanmean(others, dim=1)
    defined = torch.as_tensor(context.defined(), device=device)
    top_np = torch.where(defined, top_tvd, float("nan")).cpu().numpy()
    other_np = torch.where(defined, other_mean, float("nan")).cpu().numpy()
    return top_np - other_np, top_np, other_np


def run(context: Context) -> CheckResult:
    values, top, others = context.remember("erasure", lambda: erasure_effects(context))
    return fraction_result(
        context,
        "erasure",
        values,
        values < context.options.erasure_margin,
        ~np.isnan(values),
        context.options.erasure_threshold,
        MEANING,
        {"top_effect": top, "other_mean_effect": others},
    )
