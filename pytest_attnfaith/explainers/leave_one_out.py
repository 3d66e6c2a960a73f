"""``leave_one_out``: how much the output moves when a token is removed (Li et al. 2016; Jain & Wallace 2019, §4.1).

Per real token t, TVD(p(x), p(x₋t)), with token t **deleted** (sequence shifted left, mask shortened)
— or, with ``loo="mask"``, replaced by ``mask_token_id``. Every (instance, token) variant runs in
chunks of ``batch_size``; rows with one real token get 0 (no ranking exists).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.metrics import tvd
from pytest_attnfaith.session import Context


def attribute(context: Context) -> Tensor:
    """TVD(p(x), p(x₋t)) (B, T), float64, per real position t; 0 elsewhere (computed once per audit)."""
    return context.remember("leave_one_out", lambda: _importance(context))


def _importance(context: Context) -> Tensor:
    batch = context.batch
    rows, positions = batch.real.nonzero(as_tuple=True)
    informative = batch.real.sum(dim=1)[rows] >= 2
    rows, positions = rows[informative], positions[informative]
    importance = torch.zeros(batch.size, batch.length, dtype=torch.float64, device=context.probs.device)
    if len(rows) == 0:
        return importance
    removed = torch.nn.functional.one_hot(positions, batch.length).bool()
    probs = context.run_removed(rows, removed, context.options.loo, "loo")
    rows_d, positions_d = rows.to(importance.device), positions.to(importance.device)
    importance[rows_d, positions_d] = tvd(probs, context.probs[rows_d])
    return importance
