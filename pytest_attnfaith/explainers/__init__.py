"""Explainers: one module per importance method, one verb, ``attribute(context) -> (B, T)`` scores.

Scores are float64, 0 off the real positions. ``EXPLAINERS`` maps each name to its ``attribute``;
``resolve`` turns a name or a user callable ``fn(inputs) -> (B, T)`` into a named ``attribute``.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.explainers import (
    alti,
    attention,
    attention_flow,
    attention_gradient,
    attention_norm,
    custom,
    gradient_x_input,
    integrated_gradients,
    leave_one_out,
    notes,
    rollout,
    shapley,
    value_zeroing,
)
from pytest_attnfaith.options import EXPLAINER_NAMES
from pytest_attnfaith.session import Context

Attribute = Callable[[Context], Tensor]

EXPLAINERS: dict[str, Attribute] = {
    "attention": attention.attribute,
    "rollout": rollout.attribute,
    "gradient_x_input": gradient_x_input.attribute,
    "integrated_gradients": integrated_gradients.attribute,
    "leave_one_out": leave_one_out.attribute,
    "shapley": shapley.attribute,
    "attention_norm": attention_norm.attribute,
    "value_zeroing": value_zeroing.attribute,
    "alti": alti.attribute,
    "attention_gradient": attention_gradient.attribute,
    "attention_flow": attention_flow.attribute,
}
assert tuple(EXPLAINERS) == EXPLAINER_NAMES


def resolve(explainer: Any, inputs: Mapping[str, Any]) -> tuple[str, Attribute]:
    """``(name, attribute)`` of a registry name or of a callable ``fn(inputs) -> (B, T)`` (named by its ``__name__``)."""
    if isinstance(explainer, str):
        if explainer not in EXPLAINERS:
            close = difflib.get_close_matches(explainer, EXPLAINER_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AttnFaithError(
                f"unknown explainer {explainer!r}{hint}; expected one of {EXPLAINER_NAMES} or a callable fn(inputs) -> (B, T)"
            )
        return explainer, EXPLAINERS[explainer]
    if callable(explainer):
        name = callable_name(explainer)
        return name, custom.from_callable(explainer, inputs, name)
    raise AttnFaithError(
        f"explainer is a {type(explainer).__name__}; expected a name {EXPLAINER_NAMES} or a callable fn(inputs) -> (B, T)"
    )


def callable_name(fn: Callable[..., Any]) -> str:
    """A callable's ``__name__`` (a ``functools.partial``'s function's; an object's class name)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return str(getattr(fn, "__name__", type(fn).__name__))


__all__ = ["EXPLAINERS", "Attribute", "callable_name", "notes", "resolve"]
