"""Model inputs in the Hugging Face convention, validated once and sliced, repeated or shortened.

``input_ids`` (B, T) integers, optional ``attention_mask`` (B, T) of 0/1 and
``special_tokens_mask`` (B, T) of 0/1. The special-tokens mask is never passed to the model;
together with the attention mask it defines the *real* positions, the only ones that enter a
statistic.

Without token ids (``pixel_values`` (B, C, H, W), ``inputs_embeds``, audio features: ``adapters.vision``) the
positions are those of the embeddings' output (B, T, D); a removed position is edited there (``kept``,
``blanked``), not in the inputs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
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

    input_ids: Tensor | None
    attention_mask: Tensor
    real: Tensor
    has_mask: bool
    per_token: dict[str, Tensor] = field(default_factory=dict)
    per_instance: dict[str, Any] = field(default_factory=dict)
    heads: Tensor | None = None
    kept: Tensor | None = None  # without ids: (n, T) the embeddings' output position each position is (deletion)
    blanked: Tensor | None = None  # without ids: (n, T) positions whose embedding the baseline replaces
    grid: tuple[int, int] | None = None  # images: the patch grid (rows, columns) of the non-special positions

    @property
    def size(self) -> int:
        return int(self.real.shape[0])

    @property
    def length(self) -> int:
        return int(self.real.shape[1])

    @property
    def device(self) -> torch.device:
        return self.real.device

    @property
    def ids(self) -> Tensor:
        """``input_ids``; an error for inputs without token ids (images), where token ids are needed."""
        if self.input_ids is None:
            raise AttnFaithError(
                f"these inputs have no 'input_ids' (keys: {sorted(self.per_instance)}); expected token ids here "
                "(perturbed images: pytest_attnfaith.strategies.images)"
            )
        return self.input_ids

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``net(**kwargs)``: everything but the special-tokens mask."""
        kwargs: dict[str, Any] = {} if self.input_ids is None else {"input_ids": self.input_ids}
        if self.has_mask:
            kwargs["attention_mask"] = self.attention_mask
        kwargs.update(self.per_token)
        kwargs.update(self.per_instance)
        return kwargs

    def select(self, index: Tensor | slice) -> Batch:
        """The instances at ``index`` (a slice or a 1-D index tensor), in that order."""
        return replace(
            self,
            input_ids=_maybe(self.input_ids, lambda t: t[index]),
            attention_mask=self.attention_mask[index],
            real=self.real[index],
            per_token={k: v[index] for k, v in self.per_token.items()},
            per_instance={k: v[index] if isinstance(v, Tensor) else v for k, v in self.per_instance.items()},
            heads=_maybe(self.heads, lambda t: t[index]),
            kept=_maybe(self.kept, lambda t: t[index]),
            blanked=_maybe(self.blanked, lambda t: t[index]),
        )

    def gather_positions(self, rows: Tensor, keep: Tensor) -> Batch:
        """Instances ``rows`` with positions ``keep`` (n, T') in that order: token deletion."""
        picked = self.select(rows)

        def take(t: Tensor) -> Tensor:
            index = keep.view(keep.shape + (1,) * (t.dim() - 2)).expand(keep.shape + t.shape[2:])
            return t.gather(1, index)

        positions = torch.arange(self.length, device=keep.device).expand(len(keep), -1)
        # without ids the embeddings' output loses the positions (adapters.vision)
        kept = take(picked.kept if picked.kept is not None else positions) if picked.input_ids is None else None
        return replace(
            picked,
            input_ids=_maybe(picked.input_ids, take),
            attention_mask=take(picked.attention_mask),
            real=take(picked.real),
            per_token={k: take(v) for k, v in picked.per_token.items()},
            kept=kept,
            blanked=_maybe(picked.blanked, take),
        )

    def without(self, rows: Tensor, removed: Tensor) -> Batch:
        """Instance ``rows[i]`` with the positions where ``removed[i]`` (n, T) is true deleted: the rest shifted
        left, the row (and its mask) shortened. Every row must remove as many positions."""
        kept = self.length - (int(removed[0].sum()) if len(removed) else 0)
        keep = (~removed).nonzero()[:, 1].view(len(removed), kept)  # row-major: each row's kept positions in order
        return self.gather_positions(rows, keep)

    def replaced(self, rows: Tensor, removed: Tensor, token_id: int | None) -> Batch:
        """Instance ``rows[i]`` with the token ids where ``removed[i]`` (n, T) is true replaced by ``token_id``;
        without ids, with those positions' embeddings replaced by the baseline (``blanked``)."""
        picked = self.select(rows)
        if picked.input_ids is None:
            return replace(picked, blanked=removed if picked.blanked is None else picked.blanked | removed)
        assert token_id is not None
        return replace(picked, input_ids=picked.input_ids.masked_fill(removed, token_id))

    def to(self, device: torch.device | str) -> Batch:
        def move(t: Tensor) -> Tensor:
            return t.to(device)

        return replace(
            self,
            input_ids=_maybe(self.input_ids, move),
            attention_mask=self.attention_mask.to(device),
            real=self.real.to(device),
            per_token={k: v.to(device) for k, v in self.per_token.items()},
            per_instance={k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.per_instance.items()},
            heads=_maybe(self.heads, move),
            kept=_maybe(self.kept, move),
            blanked=_maybe(self.blanked, move),
        )


def _maybe(value: Tensor | None, fn: Callable[[Tensor], Tensor]) -> Tensor | None:
    return None if value is None else fn(value)


def _binary(name: str, value: Any, shape: torch.Size, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise AttnFaithError(f"inputs[{name!r}] is a {type(value).__name__}; expected a tensor of 0/1 with shape {tuple(shape)}")
    if value.shape != shape:
        raise AttnFaithError(f"inputs[{name!r}] has shape {tuple(value.shape)}; expected {tuple(shape)}, {what}")
    if value.is_floating_point() or value.is_complex():
        if not torch.all((value == 0) | (value == 1)):
            raise AttnFaithError(f"inputs[{name!r}] holds values other than 0 and 1; expected a 0/1 mask")
    elif not torch.all((value == 0) | (value == 1)):
        raise AttnFaithError(f"inputs[{name!r}] holds values other than 0 and 1; expected a 0/1 mask")
    return value


def prepare_batch(inputs: Any) -> Batch:
    """Validate user inputs (a mapping such as a tokenizer's ``BatchEncoding``) into a ``Batch``.

    Inputs without ``input_ids`` (``pixel_values``, ``inputs_embeds``, audio features) need the model to count
    their positions: ``adapters.vision.prepare_positions``, as ``af.audit`` calls it."""
    if not isinstance(inputs, Mapping):
        raise AttnFaithError(
            f"inputs is a {type(inputs).__name__}; expected a mapping with 'input_ids' (B, T) or 'pixel_values' "
            "(B, C, H, W), e.g. a tokenizer's or an image processor's output"
        )
    if "input_ids" not in inputs:
        raise AttnFaithError(
            f"inputs has no 'input_ids' (keys: {sorted(inputs)}); expected integer token ids of shape (B, T), or "
            "pixel_values (B, C, H, W) passed with the model (af.audit(model, inputs)), which counts their positions"
        )
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
    return assemble_batch(inputs, ids, ids.shape, primary="input_ids")


def assemble_batch(
    inputs: Mapping[str, Any],
    ids: Tensor | None,
    shape: torch.Size,
    *,
    primary: str,
    special: Tensor | None = None,
    grid: tuple[int, int] | None = None,
) -> Batch:
    """The ``Batch`` of validated inputs with ``shape`` (B, T) positions: masks checked, the other inputs sorted into
    per-position and per-instance ones (``primary``, the input that holds the positions, is per instance without
    ids). ``special``: the special positions when ``special_tokens_mask`` is not given (None: none)."""
    what = "the shape of input_ids" if ids is not None else f"one value per position of the embeddings' output for {primary}"
    ones = torch.ones(shape, dtype=torch.long, device=inputs[primary].device)
    has_mask = "attention_mask" in inputs and inputs["attention_mask"] is not None
    mask = _binary("attention_mask", inputs["attention_mask"], shape, what) if has_mask else ones
    given = inputs.get("special_tokens_mask")
    special = _binary("special_tokens_mask", given, shape, what) if given is not None else special
    real = mask.bool() & ~(special.bool() if special is not None else torch.zeros_like(mask, dtype=torch.bool))
    empty = ~mask.bool().any(dim=1)
    if bool(empty.any()):  # a row of padding only: the model would attend over nothing (NaN in most models)
        mask = mask.clone()
        mask[empty, 0] = 1  # it sees its first position; it has no real token, so every statistic of it is NaN
    per_token: dict[str, Tensor] = {}
    per_instance: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in ("input_ids", "attention_mask", "special_tokens_mask"):
            continue
        if key != primary and isinstance(value, Tensor) and value.dim() >= 2 and value.shape[:2] == shape:
            per_token[key] = value
        elif isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] != shape[0]:
            raise AttnFaithError(f"inputs[{key!r}] has {value.shape[0]} rows; expected {shape[0]}, one per instance")
        else:
            per_instance[key] = value
    return Batch(
        input_ids=ids,
        attention_mask=mask,
        real=real,
        has_mask=has_mask,
        per_token=per_token,
        per_instance=per_instance,
        grid=grid,
    )


def check_forward_takes(module: Any, batch: Batch) -> None:
    """Raise ``AttnFaithError`` naming an input key that ``module.forward`` does not take (a tokenizer's
    ``token_type_ids`` for a model without them), before any pass runs; a forward with ``**kwargs`` takes any."""
    try:
        parameters = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):  # a builtin or compiled forward: nothing to read
        return
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return
    unknown = [key for key in batch.model_kwargs() if key not in parameters]
    if unknown:
        raise AttnFaithError(
            f"input {unknown[0]!r} is not a parameter of {type(module).__name__}.forward, whose parameters are "
            f"{', '.join(parameters)}; expected inputs with only keys it takes (drop {unknown[0]!r}"
            + (", e.g. tokenizer(..., return_token_type_ids=False))" if unknown[0] == "token_type_ids" else ")")
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
