"""Counterfactual passes from the chosen layer up, on the hidden states entering it (cached per instance).

When: a pass that needs no gradient to the embeddings nor rollout, on a model whose layers hang in one
``ModuleList`` (``hf_fast.find_stack``), with ``shortcuts=True``.
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

from pytest_attnfaith.adapters import hf_fast
from pytest_attnfaith.adapters.hf_model import HuggingFaceLayers, layers_text
from pytest_attnfaith.adapters.rowcache import RowCache, per_instance, row_keys_of
from pytest_attnfaith.errors import AttentionUnavailableError
from pytest_attnfaith.formatting import plural
from pytest_attnfaith.metrics import logits_of


class CachedHiddenPasses(HuggingFaceLayers):
    """The adapter's passes from the chosen layer on cached hidden states."""

    _stack: hf_fast.Stack | None
    _cache: RowCache | None
    _cache_layer: int
    _below: tuple[int, RowCache] | None
    _verified: dict[int, bool]
    fast_passes: int
    _fast_layers: set[int]

    def _reset_session(self) -> None:
        super()._reset_session()
        self._stack, self._cache, self._cache_layer, self._below = None, None, -1, None
        self._verified, self.fast_passes, self._fast_layers = {}, 0, set()

    def _found_layers(self) -> None:
        super()._found_layers()
        self._stack = hf_fast.find_stack(self.module, [layer.module for layer in self.layers]) if self.shortcuts else None

    def _fast_layer(self) -> int | None:
        """The chosen layer, when passes may start from it (never for gradients to the embeddings or rollout)."""
        replacing = self._capture_embeddings or self._replace_embeddings is not None
        if self._probing or self._stack is None or replacing or self.options.aggregation == "rollout":
            return None
        layer = self.chosen_layer()
        return layer if self._verified.get(layer, True) else None

    def _run(self, kwargs: dict[str, Any]) -> Any:
        """Run the model from the chosen layer on cached hidden states where verified, else in full."""
        layer = self._fast_layer()
        if layer is None:
            return self._full(kwargs)
        edited = self.tap.armed is not None and self.tap.armed.edit is not None
        if layer not in self._verified and not edited and not torch.is_grad_enabled():
            return self._verify(kwargs, layer)
        rows, cache = per_instance(kwargs), self._layer_cache(layer)
        slots = cache.slots(rows, lambda picked: {"hidden": self._entering(kwargs, rows, picked, layer)})
        if slots is None:
            return self.module(**kwargs)
        shared = self._shared_layer(kwargs, layer, slots)
        if shared is not None:
            return shared
        if layer not in self._verified:  # a counterfactual pass came first at this layer (the atlas)
            self._verify_first_row(kwargs, layer)
        if not self._verified[layer]:
            return self._full(kwargs)
        self._count_fast(layer)
        return self._from_layer(kwargs, layer, cache.stored["hidden"][slots])

    def _shared_layer(self, kwargs: dict[str, Any], layer: int, slots: Tensor) -> Any:
        """A pass that shares the edited layer between the rows of each instance (``hf_query``); None: not here."""
        return None

    def _count_fast(self, layer: int) -> None:
        self.fast_passes += 1
        self._fast_layers.add(layer)

    def _forward_parts(self, chosen: int | None) -> list[str]:
        parts = super()._forward_parts(chosen)
        if self.fast_passes:
            shared = self._shared_passes()
            copied = f"; {shared} ran the edited layer once per instance, the query copied per row" if shared else ""
            parts.append(
                f"counterfactual passes from {layers_text(sorted(self._fast_layers))} on cached hidden states "
                f"({plural(self.fast_passes, 'pass', 'passes')}{copied})"
            )
        elif chosen is not None and self._verified.get(chosen) is False:
            parts.append("full (the shortcut from cached hidden states disagreed with the full pass)")
        return parts

    def _shared_passes(self) -> int:
        """How many passes shared the edited layer between an instance's rows (``hf_query``)."""
        return 0

    def _layer_cache(self, layer: int) -> RowCache:
        """The hidden states entering ``layer``; the previous layer's are kept while the next one fills (the atlas
        goes up the layers: each layer's states are the one layer below run on them)."""
        if self._cache is None or self._cache_layer != layer:
            self._below = (self._cache_layer, self._cache) if self._cache is not None else None
            self._cache, self._cache_layer = RowCache(self.options.batch_size), layer
        return self._cache

    def _verify_first_row(self, kwargs: dict[str, Any], layer: int) -> None:
        """Check the shortcut from ``layer`` once, on this pass's first row unedited (a counterfactual pass came
        first: the atlas at a layer other than the reference's)."""
        subset = {**kwargs, **{name: value[:1] for name, value in per_instance(kwargs).items()}}
        armed = self.tap.disarm()
        try:
            with torch.no_grad():
                self._calls = 0
                self._verify(subset, layer)
        finally:
            self.tap.arm(armed)  # type: ignore[arg-type]

    def _verify(self, kwargs: dict[str, Any], layer: int) -> Any:
        """A full pass that records the hidden states entering ``layer`` and checks the shortcut against it once."""
        entering: list[Tensor] = []
        with hf_fast.recording(self._stack, layer, entering):  # type: ignore[arg-type]
            output = self._full(kwargs)
        if len(entering) != 1:
            self._verified[layer] = False
            return output
        armed = self.tap.disarm()
        try:
            shortcut = self._from_layer(kwargs, layer, entering[0])
        finally:
            self.tap.arm(armed)  # type: ignore[arg-type]
        self._verified[layer] = torch.allclose(logits_of(shortcut).float(), logits_of(output).float(), atol=1e-5, rtol=1e-4)
        if self._verified[layer]:
            self._layer_cache(layer).slots(per_instance(kwargs), lambda picked: {"hidden": entering[0][picked]})
        return output

    def _entering(self, kwargs: dict[str, Any], rows: dict[str, Tensor], picked: Tensor, layer: int) -> Tensor:
        """The hidden states entering ``layer`` for the rows ``picked``: the layer below run on its cached states
        where it has them, else every layer below."""
        subset = {**kwargs, **{name: value[picked.to(value.device)] for name, value in rows.items()}}
        below = self._below[1] if self._below is not None and self._below[0] == layer - 1 else None
        found = below.find(per_instance(subset), row_keys_of(subset)) if below is not None else None
        try:
            with torch.no_grad(), hf_fast.stopping(self._stack, layer):  # type: ignore[arg-type]
                if found is not None and below is not None and bool((found >= 0).all()):
                    self._from_layer(subset, layer - 1, below.stored["hidden"][found])
                else:
                    self.module(**subset)
        except hf_fast.Entered as entered:
            return entered.hidden
        raise AttentionUnavailableError(f"layer {layer} of {type(self.module).__name__} never ran")

    def _from_layer(self, kwargs: dict[str, Any], layer: int, hidden: Tensor) -> Any:
        self._calls = layer
        with hf_fast.from_layer(self._stack, layer, hidden):  # type: ignore[arg-type]
            return self.module(**kwargs)
