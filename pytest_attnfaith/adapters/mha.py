"""Value vectors and output projection of a ``torch.nn.MultiheadAttention`` inside a ``wrap()``-ed model.

A forward pre-hook on the module reads its ``value`` argument; the values are v = value · W_vᵀ + b_v (the third
block of ``in_proj_weight``, or ``v_proj_weight``), split into heads, and each head's value goes through its slice
of ``out_proj``: f^h(x_j) = v^h_j W_o^h (Kobayashi et al. 2020). A wrapped model whose attention is another module
gets an ``AttentionUnavailableError`` naming what is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.errors import AttentionUnavailableError


def find(attention: nn.Module, where: str, what: str) -> nn.MultiheadAttention:
    """The ``nn.MultiheadAttention`` that is, or is the one inside, the wrapped attention module."""
    found = [sub for sub in attention.modules() if isinstance(sub, nn.MultiheadAttention)]
    if len(found) != 1:
        raise AttentionUnavailableError(
            f"{what} needs the attention's value vectors and output projection: the module at {where} "
            f"({type(attention).__name__}) {'holds several' if found else 'is not and holds no'} torch.nn.MultiheadAttention, "
            "so values, output projection, residual and layer norm are missing. Wrap a model whose attention is one "
            "nn.MultiheadAttention, or use a Hugging Face model"
        )
    return found[0]


@contextlib.contextmanager
def transformed_values(module: nn.MultiheadAttention, into: list[Tensor]) -> Iterator[None]:
    """While the block runs, append f (n, H, T, D) of each call of ``module`` to ``into``."""

    def record(mha: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        value = kwargs["value"] if "value" in kwargs else args[2]
        into.append(_transformed(module, value if module.batch_first else value.transpose(0, 1)))

    handle = module.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _transformed(module: nn.MultiheadAttention, value: Tensor) -> Tensor:
    width, heads = module.embed_dim, module.num_heads
    weight = module.in_proj_weight[2 * width :] if module.in_proj_weight is not None else module.v_proj_weight
    bias = module.in_proj_bias[2 * width :] if module.in_proj_bias is not None else None
    with torch.no_grad():
        values = nn.functional.linear(value, weight, bias)  # (n, T, E)
        values = values.view(*values.shape[:2], heads, width // heads).transpose(1, 2)  # (n, H, T, d)
        out = module.out_proj.weight.view(module.out_proj.out_features, heads, width // heads)
        return torch.einsum("nhtv,dhv->nhtd", values, out)
