"""Explainers: one module per importance method, one verb, ``attribute(context) -> (B, T)`` scores.

Scores are float64, 0 off the real positions. ``EXPLAINERS`` maps each name to its ``attribute``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from pytest_attnfaith.adapters.context import Context
from pytest_attnfaith.explainers import attention, gradient_x_input, leave_one_out

Attribute = Callable[[Context], Tensor]

EXPLAINERS: dict[str, Attribute] = {
    "attention": attention.attribute,
    "gradient_x_input": gradient_x_input.attribute,
    "leave_one_out": leave_one_out.attribute,
}

__all__ = ["EXPLAINERS", "Attribute"]
