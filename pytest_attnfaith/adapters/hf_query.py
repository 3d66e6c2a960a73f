"""Counterfactual passes of bidirectional encoders that edit one query row per instance: the edited layer once per
instance, with the query token copied once per edited row.

When: a counterfactual pass over cached hidden states (``hf_hidden``) that edits one query row per row of a
bidirectional layer (no pooled query rows, no capture), whose copies fit the model's positions (``QueryCopies.fits``).
How: editing query row q of layer l changes layer l's output at position q only, so the rows of a pass that share an
instance (its permutations, the heads of the per-head atlas) share layer l. The instance runs it once, on the hidden
states entering l (cached), with its token q appended once per row as extra positions that no query sees (their
``attention_mask`` is 0, so they are padding as keys) and whose own query rows carry the rows' edits; copies sit at
the query's position (``position_ids``) where the model takes them. Each row then continues from layer l + 1 on the
layer's clean output with position q taken from its copy (after the last layer: the output head on those states).
On 6-layer MiniLM with 12 heads this does layer l for 12 edited rows at about the cost of two rows.
Verified: once per layer and session, the first row of the first such pass by the copies and in full; where they
disagree, that layer's passes take the other paths.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters import hf_fast
from pytest_attnfaith.adapters.hf_decoder import copy_index, first_rows
from pytest_attnfaith.adapters.hf_hidden import CachedHiddenPasses
from pytest_attnfaith.adapters.hf_model import agreement
from pytest_attnfaith.adapters.passes import QueryRows
from pytest_attnfaith.adapters.rowcache import per_instance
from pytest_attnfaith.adapters.tap import AttentionTap
from pytest_attnfaith.errors import AttentionUnavailableError


class _Given(nn.Module):
    """Stands in for the layers after the last one: returns the given hidden states."""

    def __init__(self, hidden: Tensor) -> None:
        super().__init__()
        self.hidden = hidden

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.hidden


@contextlib.contextmanager
def leaving(stack: hf_fast.Stack, layer: int) -> Iterator[None]:
    """Raise ``hf_fast.Entered`` with the output of ``layer``: the layers above it never run."""

    def stop(module: nn.Module, args: Any, output: Any) -> None:
        raise hf_fast.Entered(output if isinstance(output, Tensor) else output[0])

    handle = stack.blocks[layer].register_forward_hook(stop)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def after_layer(stack: hf_fast.Stack, layer: int, hidden: Tensor) -> Iterator[None]:
    """Run the model from above ``layer`` on ``hidden`` (its output): the next layers, or the head alone."""
    if layer + 1 < len(stack.blocks):
        with hf_fast.from_layer(stack, layer + 1, hidden):
            yield
        return
    try:
        setattr(stack.parent, stack.attribute, nn.ModuleList([_Given(hidden)]))
        yield
    finally:
        setattr(stack.parent, stack.attribute, stack.blocks)


class QueryCopies:
    """The passes of one session that share an edited layer between the rows of each instance."""

    def __init__(self, model: nn.Module, stack: hf_fast.Stack) -> None:
        self.model = model
        self.stack = stack
        self.verified: dict[int, bool] = {}
        self.difference: dict[int, float] = {}
        self.passes = 0
        self.takes_positions = "position_ids" in inspect.signature(model.forward).parameters
        self.positions = getattr(model.config, "max_position_embeddings", None)

    def fits(self, length: int, slots: Tensor) -> bool:
        """Whether the copies fit the model's positions: they sit at the query's (``position_ids``), or T + copies
        ≤ ``max_position_embeddings``."""
        copies = int(torch.unique(slots, return_counts=True)[1].max()) if len(slots) else 0
        return self.takes_positions or self.positions is None or length + copies <= int(self.positions)

    def run(self, kwargs: dict[str, Any], layer: int, slots: Tensor, entering: Tensor, tap: AttentionTap) -> Any:
        """The model's output for the rows of ``kwargs`` (cached at ``slots``; ``entering`` (G, T, D): the hidden
        states entering ``layer`` of each distinct slot, in ``torch.unique`` order) with the running pass's edit at
        ``layer``: the layer runs on the copies' rows in its place (``tap.standing_in``)."""
        armed = tap.armed
        assert armed is not None
        groups, inverse = torch.unique(slots, return_inverse=True)
        count, rows = len(groups), len(inverse)
        length = kwargs["input_ids"].shape[1]
        copy = copy_index(inverse)
        copies = int(copy.max()) + 1
        query = armed.at.query.clamp(max=length - 1)
        first = first_rows(inverse, count)
        extended = self._extended(kwargs, first, inverse, copy, query, copies, length)
        hidden = torch.cat([entering, entering.new_zeros(count, copies, entering.shape[-1])], dim=1)
        hidden[inverse, length + copy] = entering[inverse, query]
        index = torch.arange(rows, device=inverse.device)
        keys = torch.arange(length, device=inverse.device).expand(rows, length)
        at = QueryRows(owner=index, query=length + copy, position=query, batch=inverse, keys=keys)
        packed = armed.repacked(count, at, causal=False, first_layer=layer)
        out: Tensor | None = None
        with tap.standing_in(packed):
            try:
                with hf_fast.from_layer(self.stack, layer, hidden), leaving(self.stack, layer):
                    self.model(**extended)
            except hf_fast.Entered as entered:
                out = entered.hidden
        if out is None:
            raise AttentionUnavailableError(f"layer {layer} of {type(self.model).__name__} never ran")
        states = out[inverse, :length].clone()
        states[index, query] = out[inverse, length + copy]
        tap.start_at(layer + 1)
        with after_layer(self.stack, layer, states):
            return self.model(**kwargs)

    def _extended(
        self, kwargs: dict[str, Any], first: Tensor, inverse: Tensor, copy: Tensor, query: Tensor, copies: int, length: int
    ) -> dict[str, Any]:
        """One row per instance, its query token appended once per edited row: padding as a key (mask 0), at the
        query's position."""
        rows = len(inverse)
        extended: dict[str, Any] = {}
        for name, value in kwargs.items():
            if isinstance(value, Tensor) and value.dim() >= 2 and value.shape[:2] == (rows, length):
                grown = torch.cat([value[first], value.new_zeros((len(first), copies, *value.shape[2:]))], dim=1)
                grown[inverse, length + copy] = value[torch.arange(rows, device=value.device), query]
                extended[name] = grown
            elif isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == rows:
                extended[name] = value[first]
            else:
                extended[name] = value
        mask = kwargs.get("attention_mask")
        base = mask[first] if isinstance(mask, Tensor) else torch.ones(len(first), length, dtype=torch.long, device=first.device)
        extended["attention_mask"] = torch.cat([base, base.new_zeros(len(first), copies)], dim=1)
        if self.takes_positions and "position_ids" not in kwargs:
            positions = torch.arange(length + copies, device=first.device).expand(len(first), -1).clone()
            positions[inverse, length + copy] = query
            extended["position_ids"] = positions
        return extended


class QueryCopyPasses(CachedHiddenPasses):
    """The adapter's passes that share the edited layer between each instance's rows (on cached hidden states)."""

    _copies: QueryCopies | None = None

    def _forget_session(self) -> None:
        super()._forget_session()
        self._copies = None

    def _shared_layer(self, kwargs: dict[str, Any], layer: int, slots: Tensor) -> Any:
        if not self._copies_apply(kwargs, layer, slots):
            return None
        assert self._hidden is not None
        self._hidden.count(layer)
        return self._with_copies(kwargs, layer, slots)

    def _shared_passes(self) -> int:
        return self._copies.passes if self._copies is not None else 0

    def _copies_apply(self, kwargs: dict[str, Any], layer: int, slots: Tensor) -> bool:
        """Whether this pass may share the edited layer between each instance's rows (``hf_query``): one query row per
        row edited, a bidirectional layer, the copies within the model's positions, not found wrong before."""
        armed, copies = self.tap.armed, self._copies
        if copies is None or armed is None or armed.edit is None or armed.capture or armed.at.pooled:
            return False
        if armed.at.keys is not None or self.layers[layer].causal or copies.verified.get(layer) is False:
            return False
        if not copies.fits(kwargs["input_ids"].shape[1], slots):
            return False
        return layer in copies.verified or self._verify_copies(kwargs, layer, slots)

    def _with_copies(self, kwargs: dict[str, Any], layer: int, slots: Tensor) -> Any:
        assert self._copies is not None and self._hidden is not None
        self._copies.passes += 1
        entering = self._hidden.entering(layer).stored["hidden"][torch.unique(slots)]
        return self._copies.run(kwargs, layer, slots, entering, self.tap)

    def _verify_copies(self, kwargs: dict[str, Any], layer: int, slots: Tensor) -> bool:
        """Once per layer and session: this pass's first row by the copies (on the cached hidden states) and in full;
        agreement also vouches for the cached hidden states entering the layer."""
        copies, armed, hidden = self._copies, self.tap.armed, self._hidden
        assert copies is not None and armed is not None and hidden is not None
        subset = {**kwargs, **{name: value[:1] for name, value in per_instance(kwargs).items()}}
        alone = armed.select(torch.arange(1, device=slots.device))
        entering = hidden.entering(layer).stored["hidden"][slots[:1]]
        with torch.no_grad():
            with self.tap.running(alone):
                reference = self._logits(self.module(**subset), None)
            with self.tap.running(alone):
                shared = self._logits(copies.run(subset, layer, slots[:1], entering, self.tap), None)
        copies.difference[layer], copies.verified[layer] = agreement(shared, reference)
        if copies.verified[layer]:
            hidden.verified.setdefault(layer, True)
        return copies.verified[layer]
