"""One-token counterfactual passes for causal decoders: the last real token alone, from the edited layer up.

When: a causal LM whose every layer is causal, a pass that edits only the last real token's query row (no pooled
rows, no capture, no gradient to the embeddings, no rollout), with ``shortcuts=True``.
How: no position attends to a later one, so editing the attention of the last real token at layer l changes that
token's hidden states from layer l on and nothing else. The reference pass caches each instance's keys and values of
every layer and the hidden state entering every layer at its last real token (``RowCache``, by the content of its
inputs). A pass over n rows (an instance's permutations, the (instance, head) pairs of the atlas) then runs, per
instance, its last token copied once per row along the query axis, through layers l, l+1, ... and the output head
(with ``targets``, its target rows only): about (L − l)/(L·T) of a full pass. Each copy attends to the instance's real
tokens before the last one (cached) and to itself — its own key and value replace the cached ones of the last token,
which differ from layer l + 1 on — and carries its row's edit. The layers run through the model's own forward: its
list of layers cut to l.., the hidden states entering layer l substituted by a pre-hook (``hf_fast``), a 4-D additive
mask, explicit position ids and a ``DynamicCache`` built from the cached keys and values.
Verified: once per session with an edit (against a full pass), and at every layer without one (against the clean
pass's logits); where they disagree, passes at that layer run in full.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters import hf_fast
from pytest_attnfaith.adapters.hf_hidden import CachedHiddenPasses
from pytest_attnfaith.adapters.hf_model import agreement, layers_text
from pytest_attnfaith.adapters.inputs import last_positions
from pytest_attnfaith.adapters.passes import QueryRows
from pytest_attnfaith.adapters.rowcache import RowCache, per_instance
from pytest_attnfaith.adapters.tap import AttentionTap
from pytest_attnfaith.formatting import plural


@contextlib.contextmanager
def recording_last(stack: hf_fast.Stack, last: Tensor, into: dict[int, Tensor]) -> Iterator[None]:
    """Record, per layer, the hidden state entering it at each row's last real token (layer → (n, D))."""

    def hook(index: int) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = hf_fast._hidden_argument(args, kwargs)
            if hidden is not None:
                into[index] = hidden.detach()[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]

        return record

    handles = [block.register_forward_pre_hook(hook(index), with_kwargs=True) for index, block in enumerate(stack.blocks)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def clean_entries(output: Any, hidden: dict[int, Tensor], layers: int, length: int) -> dict[str, Tensor] | None:
    """What a counterfactual pass needs from a clean pass: keys, values and entering hidden states per layer
    (None where the model's cache does not hold every token of every layer)."""
    cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
    cache_layers = getattr(cache, "layers", None)
    if cache_layers is None or len(cache_layers) < layers or len(hidden) != layers:
        return None
    entries: dict[str, Tensor] = {}
    for index in range(layers):
        keys, values = getattr(cache_layers[index], "keys", None), getattr(cache_layers[index], "values", None)
        if not isinstance(keys, Tensor) or not isinstance(values, Tensor) or keys.dim() != 4 or keys.shape[-2] != length:
            return None
        entries[f"key{index}"], entries[f"value{index}"] = keys.detach(), values.detach()
        entries[f"hidden{index}"] = hidden[index]
    return entries


class DecoderShortcut:
    """The cache of clean passes of one session, and the one-token counterfactual passes over it."""

    def __init__(self, model: nn.Module, stack: hf_fast.Stack, capacity: int) -> None:
        self.model = model
        self.stack = stack
        self.layers = len(stack.blocks)
        self.cache = RowCache(capacity)
        self.verified: dict[int, bool] = {}
        self.difference: dict[int, float] = {}  # per layer: an unedited one-token pass against the clean logits
        self.edited_difference: float | None = None  # once: an edited one-token pass against the full pass
        self.edited_agrees = False
        self.passes = 0

    def run(self, kwargs: dict[str, Any], layer: int, slots: Tensor, tap: AttentionTap) -> Any:
        """The model's output for the rows of ``kwargs`` (cached at ``slots``) with the running pass's edit at
        ``layer``: logits (n, C) at each row's last real token; the copies run in its place (``tap.standing_in``)."""
        armed = tap.armed
        assert armed is not None
        mask = kwargs.get("attention_mask")
        mask = torch.ones_like(kwargs["input_ids"]) if mask is None else mask
        length = mask.shape[1]
        groups, inverse = torch.unique(slots, return_inverse=True)
        count = len(groups)
        copy = copy_index(inverse)
        copies = int(copy.max()) + 1
        last = last_positions(mask)
        first_row = first_rows(inverse, count)
        stored = self.cache.stored
        hidden = stored[f"hidden{layer}"][groups]
        entering = hidden[:, None, :].expand(count, copies, hidden.shape[-1]).contiguous()
        ids = kwargs.get("position_ids")
        position = ids[first_row, last[first_row]] if isinstance(ids, Tensor) else last[first_row]
        keys = torch.arange(length, device=mask.device).expand(len(inverse), length).clone()
        keys[torch.arange(len(inverse), device=mask.device), last] = length + copy
        rows = torch.arange(len(inverse), device=mask.device)
        at = QueryRows(owner=rows, query=copy, position=last, batch=inverse, keys=keys)
        packed = armed.repacked(count, at, causal=True, first_layer=layer)
        cache = self._cache_for(groups, layer)
        additive = self._mask(mask[first_row].bool(), last[first_row], copies, entering.dtype)
        with tap.standing_in(packed), hf_fast.from_layer(self.stack, layer, entering):
            output = self.model(
                inputs_embeds=torch.zeros_like(entering),
                attention_mask=additive,
                position_ids=position[:, None].expand(count, copies),
                cache=cache,
                use_cache=True,
            )
        logits = output.logits if hasattr(output, "logits") else output[0]
        return logits[inverse, copy]

    def _cache_for(self, groups: Tensor, layer: int) -> Any:
        from transformers import DynamicCache

        stored = self.cache.stored
        data = [
            (stored[f"key{j}"][groups], stored[f"value{j}"][groups]) if j >= layer else (None, None) for j in range(self.layers)
        ]
        return DynamicCache(ddp_cache_data=data)

    @staticmethod
    def _mask(mask: Tensor, last: Tensor, copies: int, dtype: torch.dtype) -> Tensor:
        """(G, 1, k, T + k): each copy sees the real tokens before its instance's last one, and itself."""
        count, length = mask.shape
        before = mask & (torch.arange(length, device=mask.device)[None, :] < last[:, None])
        itself = torch.eye(copies, dtype=torch.bool, device=mask.device).expand(count, -1, -1)
        seen = torch.cat([before[:, None, :].expand(count, copies, length), itself], dim=2)
        return torch.where(seen, torch.zeros((), dtype=dtype), torch.finfo(dtype).min)[:, None]


def first_rows(inverse: Tensor, count: int) -> Tensor:
    """Per group of ``inverse`` (``torch.unique``'s), its first row."""
    first = torch.full((count,), len(inverse), dtype=torch.long, device=inverse.device)
    return first.scatter_reduce(0, inverse, torch.arange(len(inverse), device=inverse.device), reduce="amin")


def copy_index(inverse: Tensor) -> Tensor:
    """Per row, its rank among the rows of the same group (0, 1, ... in order of appearance)."""
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse)
    starts = torch.cumsum(counts, 0) - counts
    copy = torch.empty_like(inverse)
    copy[order] = torch.arange(len(inverse), device=inverse.device) - starts[inverse[order]]
    return copy


class DecoderPasses(CachedHiddenPasses):
    """The adapter's one-token passes of causal decoders, over the clean pass's cached keys and values."""

    _decoder: DecoderShortcut | None = None

    def _forget_session(self) -> None:
        super()._forget_session()
        self._decoder = None

    def _run(self, kwargs: dict[str, Any]) -> Any:
        """The last token alone from the chosen layer where this pass allows it, else the other paths."""
        one_token = self._one_token_layer()
        if one_token is not None:
            output = self._one_token(kwargs, one_token)
            if output is not None:
                return output
        return super()._run(kwargs)

    def _one_token_layer(self) -> int | None:
        """The chosen layer, when this pass edits only the last real token's row of a causal decoder."""
        armed = self.tap.armed
        decoder = self._decoder
        if decoder is None or armed is None or armed.edit is None or armed.touches_embeddings:
            return None
        if self.options.aggregation == "rollout" or armed.capture or armed.at.pooled or armed.at.keys is not None:
            return None
        if decoder.verified.get(armed.layer) is False or not torch.equal(armed.at.query, last_positions(armed.mask)):
            return None
        return armed.layer

    def _full(self, kwargs: dict[str, Any]) -> Any:
        """A full pass; the reference pass of a causal decoder also keeps its keys and values for the shortcut."""
        armed = self.tap.armed
        reference = armed is not None and armed.reference and armed.edit is None
        if not reference or self._decoder is None or torch.is_grad_enabled():
            return self.module(**kwargs)
        output, entries = self._clean_pass(kwargs)
        if entries is not None:
            self._decoder.cache.slots(per_instance(kwargs), lambda picked: {k: v[picked] for k, v in entries.items()})
        return output

    def _clean_pass(self, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Tensor] | None]:
        """A full pass that keeps every layer's keys and values and the hidden states at the last real token."""
        assert self._decoder is not None
        mask = kwargs.get("attention_mask")
        length = kwargs["input_ids"].shape[1]
        last = last_positions(mask if mask is not None else torch.ones_like(kwargs["input_ids"]))
        hidden: dict[int, Tensor] = {}
        with recording_last(self._decoder.stack, last, hidden):
            output = self.module(**{**kwargs, "use_cache": True})
        entries = clean_entries(output, hidden, self._decoder.layers, length)
        if entries is not None:
            entries["logits"] = self._logits(output, mask).detach()
        return output, entries

    def _one_token(self, kwargs: dict[str, Any], layer: int) -> Any:
        """The pass as one-token passes from ``layer`` (None: not possible here; the caller runs it otherwise)."""
        decoder = self._decoder
        assert decoder is not None
        rows = per_instance(kwargs)
        slots = decoder.cache.slots(rows, lambda picked: self._clean_rows(kwargs, rows, picked))
        if slots is None or (layer not in decoder.verified and not self._verify_one_token(kwargs, layer, slots)):
            return None
        decoder.passes += 1
        return decoder.run(kwargs, layer, slots, self.tap)

    def _clean_rows(self, kwargs: dict[str, Any], rows: dict[str, Tensor], picked: Tensor) -> dict[str, Tensor] | None:
        """The clean passes of the rows ``picked`` (instances not cached yet), without the tap."""
        subset = {**kwargs, **{name: value[picked.to(value.device)] for name, value in rows.items()}}
        with self.tap.suspended(), torch.no_grad():
            return self._clean_pass(subset)[1]

    def _verify_one_token(self, kwargs: dict[str, Any], layer: int, slots: Tensor) -> bool:
        """The shortcut against the full model, on this pass's first row: once per session with the edit (a full
        pass), and at every layer without it (against the clean pass's logits, kept in the cache)."""
        decoder, armed = self._decoder, self.tap.armed
        assert decoder is not None and armed is not None
        first = torch.arange(1, device=slots.device)
        subset = {**kwargs, **{name: value[:1] for name, value in per_instance(kwargs).items()}}
        alone = armed.select(first)
        plain = replace(alone, edit=None)
        with torch.no_grad():
            if decoder.edited_difference is None:
                with self.tap.running(alone):
                    full = self._logits(self.module(**subset), subset.get("attention_mask"))
                with self.tap.running(alone):
                    one_token = decoder.run(subset, layer, slots[:1], self.tap)
                decoder.edited_difference, decoder.edited_agrees = agreement(one_token, full)
            clean = decoder.cache.stored["logits"][slots[:1]]
            with self.tap.running(plain):
                decoder.difference[layer], agrees = agreement(decoder.run(subset, layer, slots[:1], self.tap), clean)
        decoder.verified[layer] = agrees and decoder.edited_agrees
        return decoder.verified[layer]

    def _forward_parts(self, chosen: int | None) -> list[str]:
        decoder, parts = self._decoder, []
        if decoder is not None and decoder.verified:
            agreed = sorted(layer for layer, ok in decoder.verified.items() if ok)
            disagreed = sorted(layer for layer, ok in decoder.verified.items() if not ok)
            if decoder.passes:
                worst = max([decoder.difference[layer] for layer in agreed] + [decoder.edited_difference or 0.0])
                parts.append(
                    f"one-token passes: the last real token alone from the edited layer up, over the clean pass's cached "
                    f"keys and values ({plural(decoder.passes, 'pass', 'passes')} at {layers_text(agreed)}; agreed with full "
                    f"passes to {worst:.1e} in the logits)"
                )
            if disagreed:
                parts.append(f"full at {layers_text(disagreed)}, where the one-token shortcut disagreed with the full pass")
        return parts + super()._forward_parts(chosen)
