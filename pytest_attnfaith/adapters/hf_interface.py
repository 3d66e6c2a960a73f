"""The attention function pytest-attnfaith registers with ``transformers.AttentionInterface``.

While an audit runs, the audited model is switched to the implementation ``"attnfaith"``: every
attention layer then calls ``attention()`` below, which runs the model's own eager attention
(the ``eager_attention_forward`` of the model's modeling file) and hands the weights to the
adapter in session, which may read them, replace them, or leave them alone. The matching
``AttentionMaskInterface`` entry builds the eager (additive) masks, so that causal and padding
masks reach the eager function (without it transformers passes no mask at all).

Importing this module imports transformers; it is only imported by the Hugging Face adapter.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from pytest_attnfaith.errors import AttentionUnavailableError

IMPLEMENTATION = "attnfaith"
_REGISTERING = threading.Lock()
EagerFn = Callable[..., tuple[Tensor, Tensor | None]]


class Listener(Protocol):
    def attend(
        self, eager: EagerFn, module: nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, **kwargs: Any
    ) -> tuple[Tensor, Tensor | None]: ...


_thread = threading.local()
"""Per thread, the adapters in session (innermost last): a model's attention calls reach the audit of its thread."""


def _listeners() -> list[Listener]:
    listeners: list[Listener] | None = getattr(_thread, "listeners", None)
    if listeners is None:
        listeners = _thread.listeners = []
    return listeners


def register() -> str:
    """Register the attention function and its mask builder (idempotent, once per process); return the name."""
    with _REGISTERING:
        if IMPLEMENTATION not in AttentionInterface._global_mapping:
            AttentionInterface.register(IMPLEMENTATION, attention)
            AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)
    return IMPLEMENTATION


class listening:  # noqa: N801 - used as a context manager, like contextlib's
    """Route the registered attention function to ``listener`` while the block runs."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def __enter__(self) -> None:
        _listeners().append(self.listener)

    def __exit__(self, *exc: object) -> None:
        _listeners().remove(self.listener)


def eager_function(module: nn.Module) -> EagerFn:
    """The eager attention of the modeling file that defines ``module``'s class."""
    eager = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if eager is None:
        raise AttentionUnavailableError(
            f"{type(module).__name__} ({type(module).__module__}) defines no eager_attention_forward, so its attention "
            "weights cannot be computed explicitly; expected a transformers model whose modeling file has one"
        )
    return eager


def attention(
    module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None, **kwargs: Any
) -> tuple[Tensor, Tensor | None]:
    """``AttentionInterface`` entry: the model's eager attention, seen by the adapter in session."""
    eager = eager_function(module)
    listeners = _listeners()
    if not listeners:
        return eager(module, query, key, value, attention_mask, **kwargs)
    return listeners[-1].attend(eager, module, query, key, value, attention_mask, **kwargs)


def weighted_values(weights: Tensor, value: Tensor) -> Tensor:
    """Attention output (B, Tq, H, D) from weights (B, H, Tq, Tk) and values (B, Hkv, Tk, D), GQA included."""
    heads, kv_heads = weights.shape[1], value.shape[1]
    if heads != kv_heads:
        value = value.repeat_interleave(heads // kv_heads, dim=1)
    return (weights.to(value.dtype) @ value).transpose(1, 2).contiguous()
