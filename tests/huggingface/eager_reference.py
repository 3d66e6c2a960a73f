"""An independent implementation of the audit's attention edits, through transformers' own eager attention.

``edited_logits`` registers an attention function (``AttentionInterface``, with the eager mask builder) that runs the
modeling file's ``eager_attention_forward`` and, at one layer, rewrites one query row per instance in the heads asked
for — the full model runs, no cache, no shortcut — and returns the logits at each instance's last real token.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import transformers as tf
from torch import Tensor
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

NAME = "test_reference_edit"
RowsFn = Callable[[Tensor], Tensor]


@dataclass
class _Edit:
    layer: int
    query: Tensor  # (B,) query position edited per instance
    rows: RowsFn  # (B, H, T) original rows -> new rows
    heads: Tensor | None  # (B,) the head edited alone, or None: every head
    layers: dict[int, int]  # id(module) -> its layer: the index of the block of the model's layer list holding it
    every: tuple[Tensor, Tensor] | None = None  # (B, T, T) new rows for the query rows marked (B, T), every head


_EDIT: list[_Edit] = []


def _attention(module, query, key, value, attention_mask, **kwargs):
    eager = sys.modules[type(module).__module__].eager_attention_forward
    output, weights = eager(module, query, key, value, attention_mask, **kwargs)
    if not _EDIT or _EDIT[-1].layers[id(module)] != _EDIT[-1].layer:
        return output, weights
    edit = _EDIT[-1]
    size, heads = weights.shape[:2]
    if edit.every is not None:
        rows, marked = edit.every
        weights = torch.where(marked[:, None, :, None], rows[:, None].to(weights.dtype), weights)
        values = value.repeat_interleave(heads // value.shape[1], dim=1)
        return (weights @ values).transpose(1, 2).contiguous(), weights
    index = torch.arange(size)
    new = edit.rows(weights[index, :, edit.query, :]).to(weights.dtype)
    if edit.heads is not None:
        alone = torch.arange(heads)[None, :] == edit.heads[:, None]
        new = torch.where(alone[:, :, None], new, weights[index, :, edit.query, :])
    weights = weights.clone()
    weights[index, :, edit.query, :] = new
    values = value.repeat_interleave(heads // value.shape[1], dim=1)
    return (weights @ values).transpose(1, 2).contiguous(), weights


AttentionInterface.register(NAME, _attention)
AttentionMaskInterface.register(NAME, eager_mask)


@contextlib.contextmanager
def implementation(model: tf.PreTrainedModel, name: str) -> Iterator[None]:
    """The model in eval mode under attention implementation ``name``; its own implementation and mode put back."""
    configs = [m.config for m in model.modules() if hasattr(m, "config")]
    saved = [(config, config._attn_implementation_internal) for config in configs]
    training = model.training
    model.eval()
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        for config, before in saved:
            config._attn_implementation_internal = before
        model.train(training)


def eager_attentions(model: tf.PreTrainedModel, inputs: dict[str, Tensor]) -> tuple[Tensor, ...]:
    """Every layer's attention (B, H, T, T), as transformers' eager implementation returns it."""
    with implementation(model, "eager"), torch.no_grad():
        return model(**inputs, output_attentions=True).attentions


def layer_of_modules(model: tf.PreTrainedModel) -> dict[int, int]:
    """id(module) -> i for every module inside block i of the model's list of layers (its longest ModuleList)."""
    blocks = max((m for m in model.modules() if isinstance(m, torch.nn.ModuleList)), key=len)
    return {id(sub): index for index, block in enumerate(blocks) for sub in block.modules()}


def last_real(mask: Tensor) -> Tensor:
    positions = torch.arange(mask.shape[1]).expand_as(mask)
    return torch.where(mask.bool(), positions, -1).max(dim=1).values


def edited_logits(
    model: tf.PreTrainedModel,
    inputs: dict[str, Tensor],
    layer: int | None = None,
    rows: RowsFn | None = None,
    query: Tensor | None = None,
    heads: Tensor | None = None,
    every: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """The model's logits (at the last real token for a causal LM) with ``rows`` applied at ``layer`` to one query row
    per instance (``query``, default the last real token), or ``every`` = (new rows (B, T, T), rows to replace (B, T))
    (None: clean)."""
    mask = inputs["attention_mask"]
    if layer is not None:
        position = query if query is not None else last_real(mask)
        _EDIT.append(_Edit(layer, position, rows or (lambda r: r), heads, layer_of_modules(model), every))
    try:
        with implementation(model, NAME), torch.no_grad():
            logits = model(**inputs).logits.double()
    finally:
        _EDIT.clear()
    if logits.dim() == 3:
        logits = logits[torch.arange(logits.shape[0]), last_real(mask)]
    return logits


def uniform_over(real: Tensor) -> RowsFn:
    """Rows → 1/n over each instance's real positions, in every head."""
    weights = real.double() / real.sum(dim=1, keepdim=True)
    return lambda rows: weights[:, None, :].expand_as(rows)


def tvd(p: Tensor, q: Tensor) -> Tensor:
    return 0.5 * (p - q).abs().sum(dim=-1)
