"""``rollout``: attention rollout (Abnar & Zuidema 2020) as an explanation.

R = Ā_c ⋯ Ā_1 Ā_0 with Ā_l = ½ A_l + ½ I (heads averaged below the chosen layer; at it, the ``head``
option), read at the audit's query row and restricted to the real positions, renormalised. The
adapter computes it as ``aggregation="rollout"`` reads it; a model with one attention layer (any
``wrap()``-ed module) has no rollout: ``AttnFaithError``.
"""

from __future__ import annotations

from torch import Tensor

from pytest_attnfaith.metrics import restrict
from pytest_attnfaith.session import Context


def attribute(context: Context) -> Tensor:
    """The rollout row (B, T), float64, summing to 1 over the real positions."""
    return restrict(context.model.rollout(context.batch).double().to(context.probs.device), context.real)
