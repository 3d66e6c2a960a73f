"""Counterfactual passes from the chosen layer up, on the hidden states entering it (cached per instance).

When: a pass that needs no gradient to the embeddings, no rollout and no other layer's rows, on a model whose
layers hang in one ``ModuleList`` (``hf_fast.find_stack``), with ``shortcuts=True``.
How: an edit of layer c cannot change what enters layer c, so the hidden states entering it are cached per
instance (``RowCache``, keyed by the instance's input rows); a pass runs the embeddings, then layers c, c+1, ...
only (``hf_fast.from_layer``). Going up the layers (the per-head atlas), the states entering c are the layer below
run on its own cached states.
Verified: once per layer and session, the shortcut against the full pass on the same rows (the reference pass, or
the first row of the first counterfactual pass at a layer); where they disagree, every pass there runs in full.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pytest_attnfaith.adapters import hf_fast, vision
from pytest_attnfaith.adapters.hf_model import HuggingFaceLayers, layers_text
from pytest_attnfaith.adapters.rowcache import RowCache, per_instance, row_keys_of
from pytest_attnfaith.errors import AttentionUnavailableError
from pytest_attnfaith.formatting import plural
from pytest_attnfaith.metrics import logits_of


class HiddenStates:
    """One session's hidden states entering a layer, per instance: the cache of the layer passes start from, the one
    below it (kept while the next fills), what the verification found per layer, and how many passes used them."""

    def __init__(self, stack: hf_fast.Stack, capacity: int) -> None:
        self.stack = stack
        self.capacity = capacity
        self.layer = -1
        self.cache: RowCache | None = None
        self.below: tuple[int, RowCache] | None = None
        self.verified: dict[int, bool] = {}
        self.passes = 0
        self.layers: set[int] = set()

    def entering(self, layer: int) -> RowCache:
        """The cache of the states entering ``layer``; the previous layer's is kept as ``below``."""
        if self.cache is None or self.layer != layer:
            self.below = (self.layer, self.cache) if self.cache is not None else None
            self.cache, self.layer = RowCache(self.capacity), layer
        return self.cache

    def under(self, layer: int) -> RowCache | None:
        """The cache of the states entering the layer just below ``layer``, if it is the one kept."""
        return self.below[1] if self.below is not None and self.below[0] == layer - 1 else None

    def count(self, layer: int) -> None:
        self.passes += 1
        self.layers.add(layer)


class CachedHiddenPasses(HuggingFaceLayers):
    """The adapter's passes from the chosen layer on cached hidden states (``HiddenStates``, one per session)."""

    _hidden: HiddenStates | None

    def _reset_session(self) -> None:
        super()._reset_session()
        self._hidden = None

    def _found_layers(self) -> None:
        super()._found_layers()
        if not self.shortcuts or vision.model_input(self.module) != "input_ids":  # the shortcuts follow token ids
            return
        stack = hf_fast.find_stack(self.module, [layer.module for layer in self.layers])
        self._hidden = HiddenStates(stack, self.options.batch_size) if stack is not None else None

    def _fast_layer(self) -> int | None:
        """The running pass's layer, when it may start there (not for gradients to the embeddings, rollout, or
        other layers' rows)."""
        armed, hidden = self.tap.armed, self._hidden
        if hidden is None or armed is None or armed.touches_embeddings or armed.record_layers:
            return None
        if self.options.aggregation == "rollout":
            return None
        return armed.layer if hidden.verified.get(armed.layer, True) else None

    def _run(self, kwargs: dict[str, Any]) -> Any:
        """Run the model from the chosen layer on cached hidden states where verified, else in full."""
        layer, hidden = self._fast_layer(), self._hidden
        if layer is None or hidden is None:
            return self._full(kwargs)
        edited = self.tap.armed is not None and self.tap.armed.edit is not None
        if layer not in hidden.verified and not edited and not torch.is_grad_enabled():
            return self._verify(kwargs, layer)
        rows, cache = per_instance(kwargs), hidden.entering(layer)
        slots = cache.slots(rows, lambda picked: {"hidden": self._entering(kwargs, rows, picked, layer)})
        if slots is None:
            return self.module(**kwargs)
        shared = self._shared_layer(kwargs, layer, slots)
        if shared is not None:
            return shared
        if layer not in hidden.verified:  # a counterfactual pass came first at this layer (the atlas)
            self._verify_first_row(kwargs, layer)
        if not hidden.verified[layer]:
            return self._full(kwargs)
        hidden.count(layer)
        return self._from_layer(kwargs, layer, cache.stored["hidden"][slots])

    def _shared_layer(self, kwargs: dict[str, Any], layer: int, slots: Tensor) -> Any:
        """A pass that shares the edited layer between the rows of each instance (``hf_query``); None: not here."""
        return None

    def _forward_parts(self, chosen: int | None) -> list[str]:
        parts, hidden = super()._forward_parts(chosen), self._hidden
        if hidden is not None and hidden.passes:
            shared = self._shared_passes()
            copied = f"; {shared} ran the edited layer once per instance, the query copied per row" if shared else ""
            parts.append(
                f"counterfactual passes from {layers_text(sorted(hidden.layers))} on cached hidden states "
                f"({plural(hidden.passes, 'pass', 'passes')}{copied})"
            )
        elif hidden is not None and chosen is not None and hidden.verified.get(chosen) is False:
            parts.append("full (the shortcut from cached hidden states disagreed with the full pass)")
        return parts

    def _shared_passes(self) -> int:
        """How many passes shared the edited layer between an instance's rows (``hf_query``)."""
        return 0

    def _verify_first_row(self, kwargs: dict[str, Any], layer: int) -> None:
        """Check the shortcut from ``layer`` once, on this pass's first row unedited (a counterfactual pass came
        first: the atlas at a layer other than the reference's)."""
        subset = {**kwargs, **{name: value[:1] for name, value in per_instance(kwargs).items()}}
        with self.tap.suspended(), torch.no_grad():
            self._verify(subset, layer)

    def _verify(self, kwargs: dict[str, Any], layer: int) -> Any:
        """A full pass that records the hidden states entering ``layer`` and checks the shortcut against it once."""
        assert self._hidden is not None
        hidden = self._hidden
        entering: list[Tensor] = []
        with hf_fast.recording(hidden.stack, layer, entering):
            output = self._full(kwargs)
        if len(entering) != 1:
            hidden.verified[layer] = False
            return output
        with self.tap.suspended():
            shortcut = self._from_layer(kwargs, layer, entering[0])
        hidden.verified[layer] = torch.allclose(logits_of(shortcut).float(), logits_of(output).float(), atol=1e-5, rtol=1e-4)
        if hidden.verified[layer]:
            hidden.entering(layer).slots(per_instance(kwargs), lambda picked: {"hidden": entering[0][picked]})
        return output

    def _entering(self, kwargs: dict[str, Any], rows: dict[str, Tensor], picked: Tensor, layer: int) -> Tensor:
        """The hidden states entering ``layer`` for the rows ``picked``: the layer below run on its cached states
        where it has them, else every layer below (plain passes: the running pass reads nothing of them)."""
        assert self._hidden is not None
        subset = {**kwargs, **{name: value[picked.to(value.device)] for name, value in rows.items()}}
        below = self._hidden.under(layer)
        found = below.find(per_instance(subset), row_keys_of(subset)) if below is not None else None
        try:
            with self.tap.suspended(), torch.no_grad(), hf_fast.stopping(self._hidden.stack, layer):
                if found is not None and below is not None and bool((found >= 0).all()):
                    self._from_layer(subset, layer - 1, below.stored["hidden"][found])
                else:
                    self.module(**subset)
        except hf_fast.Entered as entered:
            return entered.hidden
        raise AttentionUnavailableError(f"layer {layer} of {type(self.module).__name__} never ran")

    def _from_layer(self, kwargs: dict[str, Any], layer: int, hidden: Tensor) -> Any:
        """The model from ``layer`` up on ``hidden`` (the states entering it); the running pass counts from there."""
        assert self._hidden is not None
        self.tap.start_at(layer)
        with hf_fast.from_layer(self._hidden.stack, layer, hidden):
            return self.module(**kwargs)
