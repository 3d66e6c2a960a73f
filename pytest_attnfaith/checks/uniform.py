"""``uniform``: does the output change when attention is made uniform? (Wiegreffe & Pinter 2019, §3.2)

Per instance, the effect of replacing every head's read row by 1/n over the n real positions
(``Context.effect``): on ``scale="margin"`` the relative change of the decision margin, min(|m − m'|/|m|, 1)
(1: the decision flipped); on ``"probability"`` TVD(p, p_uniform). An instance is flagged when the effect
is below ``epsilon`` (the output barely moves); fails when the flagged fraction exceeds ``uniform_threshold``.
"""

from __future__ import annotations

import numpy as np
import torch

from pytest_attnfaith.adapters import Edit
from pytest_attnfaith.checks._common import Context, fraction_result, replace_rows
from pytest_attnfaith.results import CheckResult

MEANING = "the output barely changes when the attention is replaced by a uniform distribution: it is not used"


def uniform_effect(context: Context) -> np.ndarray:
    real = context.real.float()
    uniform = real / real.sum(dim=1, keepdim=True).clamp(min=1.0)
    batch = context.batch
    logits = context.run_rows(batch.size, lambda part: (batch.select(part), Edit(replace_rows, {"weights": uniform[part]})))
    values = context.effect(logits, torch.arange(batch.size)).cpu().numpy()
    return np.where(context.defined(), values, np.nan)


def run(context: Context) -> CheckResult:
    values = context.remember("uniform", lambda: uniform_effect(context))
    return fraction_result(
        context,
        "uniform",
        values,
        values < context.options.epsilon,
        ~np.isnan(values),
        context.options.uniform_threshold,
        MEANING,
    )
