"""Intercept the softmax computed *inside* one module, to read and replace attention that the
module computes inline (``nn.MultiheadAttention``, a transformer block, a layer outside
Hugging Face's ``AttentionInterface``).

While the target module runs, ``F.softmax``, ``torch.softmax``, ``Tensor.softmax`` and
``F.scaled_dot_product_attention`` (rewritten as an explicit softmax so its weights can be
seen) go through the tap; fused fast paths are disabled by a pass-through torch-function mode.
Everything is undone when the forward pass ends, also on error. The functions are patched process-wide once
(``patches``: counted under a lock, routed per thread), so that audits in other threads neither see this tap nor
leave a patch behind.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from pytest_attnfaith.adapters.patches import patch
from pytest_attnfaith.adapters.tap import AttentionTap


class _PassThrough(TorchFunctionMode):
    """Makes ``has_torch_function`` true, which turns off fused kernels (e.g. MHA's fast path)."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


class SoftmaxInterceptor:
    """Routes the softmax of ``module``'s forward through ``tap`` while ``active()`` is entered."""

    def __init__(self, module: nn.Module, tap: AttentionTap, enabled: Callable[[], bool] = lambda: True) -> None:
        self.module = module
        self.tap = tap
        self.enabled = enabled
        self.depth = 0
        self._computing = False
        self._mode: _PassThrough | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Hooks that mark when the target module runs."""

        def enter(module: nn.Module, args: Any) -> None:
            if not self.enabled():
                return
            self.depth += 1
            if self.depth == 1:
                self._mode = _PassThrough()
                self._mode.__enter__()

        def leave(module: nn.Module, args: Any, output: Any) -> None:
            self._leave()

        handles = [self.module.register_forward_pre_hook(enter), self.module.register_forward_hook(leave)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _leave(self) -> None:
        if self.depth == 0:
            return
        self.depth -= 1
        if self.depth == 0 and self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Route this thread's softmax functions through the tap for one forward pass of the whole model (process-wide
        patches, counted: installed while any session needs them, restored by the last; ``patches``)."""
        originals: dict[str, Callable[..., Any]] = {}

        def softmax(input: Tensor, dim: int | None = None, *args: Any, **kwargs: Any) -> Tensor:
            if self._computing:  # re-entered through torch-function dispatch
                return originals["softmax"](input, dim, *args, **kwargs)
            self._computing = True
            try:
                out = originals["softmax"](input, dim, *args, **kwargs)
            finally:
                self._computing = False
            if self.depth == 0 or out.dim() < 2 or dim not in (-1, out.dim() - 1):
                return out
            return self.tap.apply(out)

        def tensor_softmax(input: Tensor, dim: int, dtype: Any = None) -> Tensor:
            if self._computing:  # F.softmax's own body calls Tensor.softmax: end the recursion there
                return originals["tensor_softmax"](input, dim, dtype=dtype)
            return softmax(input, dim, dtype=dtype)

        def sdpa(
            query: Tensor,
            key: Tensor,
            value: Tensor,
            attn_mask: Tensor | None = None,
            dropout_p: float = 0.0,
            is_causal: bool = False,
            scale: float | None = None,
            enable_gqa: bool = False,
        ) -> Tensor:
            if self.depth == 0:
                return originals["sdpa"](
                    query,
                    key,
                    value,
                    attn_mask=attn_mask,
                    dropout_p=dropout_p,
                    is_causal=is_causal,
                    scale=scale,
                    enable_gqa=enable_gqa,
                )
            return _explicit_attention(softmax, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)

        routes: dict[str, tuple[Any, str, Callable[..., Any]]] = {
            "softmax": (F, "softmax", softmax),
            "torch_softmax": (torch, "softmax", softmax),
            "tensor_softmax": (torch.Tensor, "softmax", tensor_softmax),
            "sdpa": (F, "scaled_dot_product_attention", sdpa),
        }
        with contextlib.ExitStack() as stack:
            for key, (owner, name, handler) in routes.items():
                originals[key] = stack.enter_context(patch(owner, name).routed(handler))
            try:
                yield
            finally:
                while self.depth:
                    self._leave()


def _explicit_attention(
    softmax: Callable[..., Tensor],
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None,
    dropout_p: float,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
) -> Tensor:
    """scaled_dot_product_attention with the softmax made visible (same semantics)."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeat, dim=-3)
        value = value.repeat_interleave(repeat, dim=-3)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale
    if is_causal:
        tq, tk = scores.shape[-2], scores.shape[-1]
        causal = torch.ones(tq, tk, dtype=torch.bool, device=scores.device).tril(diagonal=tk - tq)
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    weights = softmax(scores, -1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights @ value
