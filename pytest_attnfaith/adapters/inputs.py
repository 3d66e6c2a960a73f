"""Model inputs in the Hugging Face convention, validated once and sliced, repeated or shortened.

``input_ids`` (B, T) integers, optional ``attention_mask`` (B, T) of 0/1 and
``special_tokens_mask`` (B, T) of 0/1. The special-tokens mask is never passed to the model;
together with the attention mask it defines the *real* positions, the only ones that enter a
statistic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.errors import AttnFaithError


@dataclass(frozen=True)
class Batch:
    """Validated inputs. ``real[b, t]`` is true where position t of instance b enters statistics.

    ``heads[b]`` (never passed to the model), when set, is the attention head that instance b's read row
    comes from and that its counterfactuals edit alone (the per-head atlas repeats each instance per head)."""

    input_ids: Tensor
    attention_mask: Tensor
    real: Tensor
    has_mask: bool
    per_token: dict[str, Tensor] = field(default_factory=dict)
    per_instance: dict[str, Any] = field(default_factory=dict)
    heads: Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``net(**kwargs)``: everything but the special-tokens mask."""
        kwargs: dict[str, Any] = {"input_ids": self.input_ids}
        if self.has_mask:
            kwargs["attention_mask"] = self.attention_mask
        kwargs.update(self.per_token)
        kwargs.update(self.per_instance)
        return kwargs

    def select(self, index: Tensor | slice) -> Batch:
        """The instances at ``index`` (a slice or a 1-D index tensor), in that order."""
        return replace(
            self,
            input_ids=self.input_ids[index],
            attention_mask=self.attention_mask[index],
            real=self.real[index],
            per_token={k: v[index] for k, v in self.per_token.items()},
            per_instance={k: v[index] if isinstance(v, Tensor) else v for k, v in self.per_instance.items()},
            heads=self.heads[index] if self.heads is not None else None,
        )

    def gather_positions(self, rows: Tensor, keep: Tensor) -> Batch:
        """Instances ``rows`` with positions ``keep`` (n, T') in that order: token deletion."""
        picked = self.select(rows)

        def take(t: Tensor) -> Tensor:
            index = keep.view(keep.shape + (1,) * (t.dim() - 2)).expand(keep.shape + t.shape[2:])
            return t.gather(1, index)

        return replace(
            picked,
            input_ids=take(picked.input_ids),
            attention_mask=take(picked.attention_mask),
            real=take(picked.real),
            per_token={k: take(v) for k, v in picked.per_token.items()},
        )

    def without(self, rows: Tensor, removed: Tensor) -> Batch:
        """Instance ``rows[i]`` with the positions where ``removed[i]`` (n, T) is true deleted: the rest shifted
        left, the row (and its mask) shortened. Every row must remove as many positions."""
        kept = self.length - (int(removed[0].sum()) if len(removed) else 0)
        keep = (~removed).nonzero()[:, 1].view(len(removed), kept)  # row-major: each row's kept positions in order
        return self.gather_positions(rows, keep)

    def replaced(self, rows: Tensor, removed: Tensor, token_id: int) -> Batch:
        """Instance ``rows[i]`` with the token ids where ``removed[i]`` (n, T) is true replaced by ``token_id``."""
        picked = self.select(rows)
        return replace(picked, input_ids=picked.input_ids.masked_fill(removed, token_id))

    def to(self, device: torch.device | str) -> Batch:
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            real=self.real.to(device),
            per_token={k: v.to(device) for k, v in self.per_token.items()},
            per_instance={k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.per_instance.items()},
            heads=self.heads.to(device) if self.heads is not None else None,
        )


def _binary(name: str, value: Any, shape: torch.Size) -> Tensor:
    if not isinstance(value, Tensor):
        raise AttnFaithError(f"inputs[{name!r}] is a {type(value).__name__}; expected a tensor of 0/1 with shape {tuple(shape)}")
    if value.shape != shape:
        raise AttnFaithError(f"inputs[{name!r}] has shape {tuple(value.shape)}; expected {tuple(shape)}, the shape of input_ids")
    if value.is_floating_point() or value.is_complex():
        if not torch.all((value == 0) | (value == 1)):
            raise AttnFaithError(f"inputs[{name!r}] holds values other than 0 and 1; expected a 0/1 mask")
    elif not torch.all((value == 0) | (value == 1)):
        raise AttnFaithError(f"inputs[{name!r}] holds values other than 0 and 1; expected a 0/1 mask")
    return value


def prepare_batch(inputs: Any) -> Batch:
    """Validate user inputs (a mapping such as a tokenizer's ``BatchEncoding``) into a ``Batch``."""
    if not isinstance(inputs, Mapping):
        raise AttnFaithError(
            f"inputs is a {type(inputs).__name__}; expected a mapping with 'input_ids' (B, T), "
            "e.g. a tokenizer's output or {'input_ids': ids, 'attention_mask': mask}"
        )
    if "input_ids" not in inputs:
        raise AttnFaithError(f"inputs has no 'input_ids' (keys: {sorted(inputs)}); expected integer token ids of shape (B, T)")
    ids = inputs["input_ids"]
    meta = [key for key, value in inputs.items() if isinstance(value, Tensor) and value.is_meta]
    if meta:
        raise AttnFaithError(
            f"inputs {meta} are on the meta device: they have shapes but no values; expected tensors on a real device "
            "(e.g. tokenizer(texts, return_tensors='pt'))"
        )
    if not isinstance(ids, Tensor):
        raise AttnFaithError(f"inputs['input_ids'] is a {type(ids).__name__}; expected an integer tensor of shape (B, T)")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise AttnFaithError(f"inputs['input_ids'] has dtype {ids.dtype}; expected integer token ids (torch.long)")
    if ids.dim() != 2:
        raise AttnFaithError(f"inputs['input_ids'] has shape {tuple(ids.shape)}; expected (B, T)")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise AttnFaithError(
            f"inputs['input_ids'] is empty (shape {tuple(ids.shape)}); expected at least one instance and one token"
        )
    has_mask = "attention_mask" in inputs and inputs["attention_mask"] is not None
    mask = _binary("attention_mask", inputs["attention_mask"], ids.shape) if has_mask else torch.ones_like(ids)
    special = inputs.get("special_tokens_mask")
    special = _binary("special_tokens_mask", special, ids.shape) if special is not None else torch.zeros_like(ids)
    real = mask.bool() & ~special.bool()
    empty = ~mask.bool().any(dim=1)
    if bool(empty.any()):  # a row of padding only: the model would attend over nothing (NaN in most models)
        mask = mask.clone()
        mask[empty, 0] = 1  # it sees its first position; it has no real token, so every statistic of it is NaN
    per_token: dict[str, Tensor] = {}
    per_instance: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in ("input_ids", "attention_mask", "special_tokens_mask"):
            continue
        if isinstance(value, Tensor) and value.dim() >= 2 and value.shape[:2] == ids.shape:
            per_token[key] = value
        elif isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] != ids.shape[0]:
            raise AttnFaithError(f"inputs[{key!r}] has {value.shape[0]} rows; expected {ids.shape[0]}, one per instance")
        else:
            per_instance[key] = value
    return Batch(
        input_ids=ids,
        attention_mask=mask,
        real=real,
        has_mask=has_mask,
        per_token=per_token,
        per_instance=per_instance,
    )


def check_token_ids(ids: Tensor, vocabulary: int | None) -> None:
    """Every id in [0, ``vocabulary``) (None: at least non-negative), else the package's error naming the first id
    outside, where it is, and the range (raised before any pass, instead of an index error inside the model)."""
    outside = ids < 0 if vocabulary is None else (ids < 0) | (ids >= vocabulary)
    if not bool(outside.any()):
        return
    instance, position = (int(i) for i in outside.nonzero()[0])
    value = int(ids[instance, position])
    allowed = f"[0, {vocabulary})" if vocabulary is not None else "ids >= 0"
    raise AttnFaithError(
        f"inputs['input_ids'] holds {value} at instance {instance}, position {position} ({int(outside.sum())} ids "
        f"outside the model's vocabulary {allowed}); expected ids from this model's tokenizer (a padding label such as "
        "-100, or another model's tokenizer, gives such ids)"
    )


def check_weights(module: nn.Module) -> None:
    """The model's weights hold values: none on the meta device (a model built without loading them)."""
    meta = next((name for name, value in module.state_dict().items() if value.is_meta), None)
    if meta is not None:
        raise AttnFaithError(
            f"the model's weights are on the meta device ({meta!r} has a shape but no values); expected a model with "
            "loaded weights (load a state dict after model.to_empty(device='cpu'), or load it with from_pretrained)"
        )


def query_position(query: int, length: int) -> int:
    """The position of option ``query`` in inputs of ``length`` positions: 0..T-1, or -1..-T from the end."""
    if not -length <= query < length:
        raise AttnFaithError(
            f"option query={query} is outside the inputs' {length} positions; expected 0..{length - 1}, or "
            f"-1..-{length} counting from the end, or 'first', 'last', 'auto' or 'all'"
        )
    return query % length


def last_positions(mask: Tensor) -> Tensor:
    """Per row, the last position with ``mask == 1`` (0 for a row without any): the last real token a causal model
    reads, whose next-token distribution is the output, and ``query="last"``. The one place this is computed."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, -1).max(dim=1).values.clamp(min=0)
