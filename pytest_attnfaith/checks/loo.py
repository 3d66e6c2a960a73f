"""``loo``: does attention rank tokens as leave-one-out does? (Jain & Wallace 2019, §4.1)

Per instance, Kendall τ-b between α̂ and the leave-one-out importance TVD(p(x), p(x₋t)), with
token t deleted (sequence shifted left, mask shortened) — or, with ``loo="mask"``, replaced by
``mask_token_id``. All (instance, token) variants are run in chunks of ``batch_size``. Fails when
the mean τ is below ``loo_threshold``. J&W Table 2 (BiLSTM): SST .29, IMDB .34, AG News .37.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from pytest_attnfaith.adapters import Batch, Edit
from pytest_attnfaith.checks._common import Context, tau_result
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import tvd
from pytest_attnfaith.results import CheckResult

MEANING = "attention ranks tokens differently from leave-one-out: removing the tokens it highlights barely changes the output"


def loo_importance(context: Context) -> torch.Tensor:
    """TVD(p(x), p(x₋t)) per real position t (B, T); 0 elsewhere."""
    batch = context.batch
    rows, positions = batch.real.nonzero(as_tuple=True)
    informative = batch.real.sum(dim=1)[rows] >= 2  # with one real token, tau is undefined anyway
    rows, positions = rows[informative], positions[informative]
    length = batch.length
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

    importance = torch.zeros(batch.size, length, dtype=context.probs.dtype, device=context.probs.device)
    if length < 2:
        return importance
    probs = context.run_rows(len(rows), make)
    rows_d, positions_d = rows.to(importance.device), positions.to(importance.device)
    importance[rows_d, positions_d] = tvd(probs, context.probs[rows_d])
    return importance


def run(context: Context) -> CheckResult:
    return tau_result(
        context, "loo", loo_importance(context), context.options.loo_threshold, MEANING, {"variant": context.options.loo}
    )
