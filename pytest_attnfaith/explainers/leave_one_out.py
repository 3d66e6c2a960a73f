"""``leave_one_out``: how much the output moves when a token is removed (Li et al. 2016; Jain & Wallace 2019, §4.1).

Per real token t, how far the output moves when token t is **deleted** (sequence shifted left, mask
shortened) — or, with ``loo="mask"``, replaced by ``mask_token_id``: on ``scale="margin"`` |m(x) − m(x₋t)|,
the change of the margin of ŷ (logit units; Kendall τ is unchanged by any per-instance scale); on
``"probability"`` TVD(p(x), p(x₋t)). A change within the resolution is exactly 0. Every distinct (instance,
token) variant runs once (deleting either word of "terrible terrible" is one input), in chunks of
``batch_size``; rows with one real token get 0 (no ranking exists).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.metrics import output_change
from pytest_attnfaith.session import Context


def attribute(context: Context) -> Tensor:
    """|m(x) − m(x₋t)| or TVD(p(x), p(x₋t)) (B, T), float64, per real position t; 0 elsewhere (once per audit)."""
    return context.remember("leave_one_out", lambda: _importance(context))


def _importance(context: Context) -> Tensor:
    batch = context.batch
    rows, positions = batch.real.nonzero(as_tuple=True)
    informative = batch.real.sum(dim=1)[rows] >= 2
    rows, positions = rows[informative], positions[informative]
    importance = torch.zeros(batch.size, batch.length, dtype=torch.float64, device=context.logits.device)
    if len(rows) == 0:
        return importance
    removed = torch.nn.functional.one_hot(positions, batch.length).bool()
    logits = context.run_removed(rows, removed, context.options.loo, "loo")
    rows_d, positions_d = rows.to(importance.device), positions.to(importance.device)
    reference = context.logits[rows_d]
    classes = context.predicted[rows_d]
    importance[rows_d, positions_d] = output_change(reference, logits, classes, context.options.scale, context.tolerance[rows_d])
    return importance
