"""``leave_one_out``: how much the output moves when a token is removed (Li et al. 2016; Jain & Wallace 2019, §4.1).

Per real token t, TVD(p(x), p(x₋t)), with token t **deleted** (sequence shifted left, mask shortened)
— or, with ``loo="mask"``, replaced by ``mask_token_id``. Every (instance, token) variant runs in
chunks of ``batch_size``; rows with one real token get 0 (no ranking exists).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from pytest_attnfaith.adapters import Batch, Edit
from pytest_attnfaith.adapters.context import Context
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import tvd


def attribute(context: Context) -> Tensor:
    """TVD(p(x), p(x₋t)) (B, T), float64, per real position t; 0 elsewhere."""
    batch = context.batch
    rows, positions = batch.real.nonzero(as_tuple=True)
    informative = batch.real.sum(dim=1)[rows] >= 2
    rows, positions = rows[informative], positions[informative]
    mask_id = context.model.mask_token_id() if context.options.loo == "mask" else None
    if context.options.loo == "mask" and mask_id is None:
        raise AttnFaithError("option loo='mask' needs a mask or pad token id: this model has none; use loo='delete'")

    def make(part: slice) -> tuple[Batch, Edit | None]:
        r, t = rows[part], positions[part]
        if mask_id is not None:
            picked = batch.select(r)
            ids = picked.input_ids.clone()
            ids[torch.arange(len(r)), t] = mask_id
            return replace(picked, input_ids=ids), None
        return batch.delete_positions(r, t), None

    importance = torch.zeros(batch.size, batch.length, dtype=torch.float64, device=context.probs.device)
    if batch.length < 2 or len(rows) == 0:
        return importance
    probs = context.run_rows(len(rows), make)
    rows_d, positions_d = rows.to(importance.device), positions.to(importance.device)
    importance[rows_d, positions_d] = tvd(probs, context.probs[rows_d])
    return importance
