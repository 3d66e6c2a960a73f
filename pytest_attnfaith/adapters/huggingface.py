"""The adapter for Hugging Face ``transformers`` models: ``af.audit(model, tokenizer(texts, ...))``.

Attention is read and replaced through the model's own attention function. On models built on
``AttentionInterface`` the model is switched, for the audit only, to the implementation
``"attnfaith"`` (``hf_interface``): each layer runs the model's eager attention, and the chosen
layer's weights (B, H, Tq, Tk) pass through the tap, which reads the query row and may replace it
in every head; the layer's output is then computed from the (replaced) weights. Models outside the
interface (e.g. DeBERTa-v2) get the softmax inside the chosen layer's attention module intercepted.

Layers are numbered in the order their attention runs in one forward pass (a shared layer, as in
ALBERT, counts once per use). Sequence classifiers give their logits; causal LMs the next-token
distribution at the last real position. Importing this module does not import transformers.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters import hf_decoder, hf_fast, hf_query, vision
from pytest_attnfaith.adapters.base import AttentionModel, QueryRows
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.adapters.rowcache import RowCache, per_instance, row_keys_of
from pytest_attnfaith.adapters.softmax import SoftmaxInterceptor
from pytest_attnfaith.errors import AttentionUnavailableError, AttnFaithError
from pytest_attnfaith.formatting import plural
from pytest_attnfaith.metrics import logits_of

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


@dataclass(frozen=True)
class Layer:
    """One attention layer, in the order it runs: its module, qualified name, heads, causality."""

    name: str
    module: nn.Module
    heads: int
    causal: bool


class HuggingFaceModel(AttentionModel):
    """A ``transformers.PreTrainedModel`` (sequence classifier or causal LM), audited without ``wrap``."""

    kind = "huggingface"

    def __init__(self, model: nn.Module, tokenizer: Any = None, shortcuts: bool = True) -> None:
        _validate(model, tokenizer)
        super().__init__(model, where=type(model).__name__)
        self.config: Any = model.config
        self.shortcuts = shortcuts
        self.tokenizer = tokenizer
        self.path = "interface" if type(model)._can_set_attn_implementation() else "softmax"  # type: ignore[attr-defined]
        self.implementation_before = str(getattr(self.config, "_attn_implementation", None))
        self.layers: list[Layer] = []
        self._probing = False
        self._calls = 0
        self._recorded: list[Tensor] = []
        self._at: QueryRows | None = None
        self._head: TargetHead | None = None
        self._target_words: list[tuple[str, int]] | None = None
        self._loaded_tokenizer = False
        self._stack: hf_fast.Stack | None = None
        self._cache: RowCache | None = None
        self._cache_layer = -1
        self._below: tuple[int, RowCache] | None = None
        self._verified: dict[int, bool] = {}
        self.fast_passes = 0
        self._fast_layers: set[int] = set()
        self._decoder: hf_decoder.DecoderShortcut | None = None
        self._copies: hf_query.QueryCopies | None = None
        self._filling = False

    # -- session --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _install(self) -> Iterator[None]:
        from pytest_attnfaith.adapters import hf_interface

        if self.path == "softmax" and self.options.aggregation == "rollout":
            raise self._no_rollout("aggregation='rollout'", "aggregation='attention'")
        saved = _implementations(self.module)
        self.implementation_before = str(getattr(self.config, "_attn_implementation", None))
        self.layers, self._cache, self._below, self._verified, self.fast_passes = [], None, None, {}, 0
        self._fast_layers = set()
        self._decoder = self._copies = None
        self._head = self._restricted_head()
        try:
            if self.path == "interface":
                self.module.set_attn_implementation(hf_interface.register())  # type: ignore[operator]
            with self.embeddings_hook(), hf_interface.listening(self):
                yield
        finally:
            for config, implementation in saved:
                config._attn_implementation_internal = implementation

    def embeddings_module(self) -> nn.Module:
        if vision.model_input(self.module) != "input_ids":
            return vision.vision_embeddings(self.module)
        try:
            embeddings = self.module.get_input_embeddings()  # type: ignore[operator]
        except NotImplementedError:
            embeddings = None
        if not isinstance(embeddings, nn.Module):
            raise AttentionUnavailableError(
                f"{type(self.module).__name__}.get_input_embeddings() returned no module, so gradient importance has no "
                "embeddings to differentiate; expected a model with input embeddings (or leave 'gradient' out of checks)"
            )
        return embeddings

    # -- the output: target logits ------------------------------------------------------
    def resolve_targets(self, targets: tuple[Any, ...] | None) -> Tensor | None:
        """Token ids or words (a causal LM; words through the tokenizer, first token each), class indices or labels
        (a sequence classifier; labels through ``config.label2id``), checked against the output's size."""
        self._target_words = None
        if targets is None:
            return None
        if isinstance(targets[0], str):
            ids = self._word_ids(targets) if self._generative() else self._label_ids(targets)
        else:
            ids = [int(target) for target in targets]
        size, what = self._output_size()
        outside = [target for target in ids if target >= size]
        if outside:
            raise AttnFaithError(
                f"targets {outside} are out of range: {type(self.module).__name__} has {size} {what}; expected ids below {size}"
            )
        return torch.tensor(ids, dtype=torch.long)

    def _generative(self) -> bool:
        return bool(type(self.module).can_generate())  # type: ignore[attr-defined]

    def _output_size(self) -> tuple[int, str]:
        if not self._generative():
            return int(getattr(self.config, "num_labels", 0)), "classes"
        head = self.module.get_output_embeddings()  # type: ignore[operator]
        if isinstance(head, nn.Linear):
            return int(head.out_features), "tokens in its output vocabulary"
        return int(self.config.get_text_config().vocab_size), "tokens in its vocabulary"

    def _word_ids(self, words: tuple[str, ...]) -> list[int]:
        """Each word's first token (what the next-token distribution at the last real token scores)."""
        tokenizer = self.loaded_tokenizer()
        if tokenizer is None:
            raise AttnFaithError(
                f"targets={list(words)!r} are words, but no tokenizer is known for {type(self.module).__name__}; "
                "expected af.huggingface(model, tokenizer=...) (or a model saved with its tokenizer), or token ids"
            )
        pieces = {word: list(tokenizer.encode(word, add_special_tokens=False)) for word in words}
        empty = [word for word, ids in pieces.items() if not ids]
        if empty:
            raise AttnFaithError(f"targets {empty!r} have no tokens under {type(tokenizer).__name__}; expected words")
        first: dict[int, str] = {}
        for word, ids in pieces.items():
            if ids[0] in first:
                token = tokenizer.convert_ids_to_tokens(ids[0])
                raise AttnFaithError(
                    f"targets {first[ids[0]]!r} and {word!r} both start with token {ids[0]} ({token!r}): the next-token "
                    "distribution cannot tell them apart; expected words whose first tokens differ (or token ids)"
                )
            first[ids[0]] = word
        self._target_words = [(word, len(ids)) for word, ids in pieces.items()]
        return [ids[0] for ids in pieces.values()]

    def _label_ids(self, labels: tuple[str, ...]) -> list[int]:
        known = {str(k): int(v) for k, v in (getattr(self.config, "label2id", None) or {}).items()}
        missing = [label for label in labels if label not in known]
        if missing:
            raise AttnFaithError(
                f"targets {missing!r} are not labels of {type(self.module).__name__}: config.label2id has {sorted(known)}; "
                "expected labels from it, or class indices"
            )
        return [known[label] for label in labels]

    def _restricted_head(self) -> TargetHead | None:
        """A causal LM's output head cut to the target rows (K of V), where it is a linear layer."""
        if self.targets is None or not self._generative():
            return None
        head = self.module.get_output_embeddings()  # type: ignore[operator]
        return TargetHead(head, self.targets) if isinstance(head, nn.Linear) else None

    @contextlib.contextmanager
    def _target_head(self) -> Iterator[None]:
        """The restricted head in place of the model's own for one call (put back on exit)."""
        if self._head is None:
            yield
            return
        original = self.module.get_output_embeddings()  # type: ignore[operator]
        self.module.set_output_embeddings(self._head)  # type: ignore[operator]
        try:
            yield
        finally:
            self.module.set_output_embeddings(original)  # type: ignore[operator]

    def _target_logits(self, logits: Tensor) -> Tensor:
        if self._head is not None:
            return logits  # the restricted head computed the target logits only
        return super()._target_logits(logits)

    def describe_output(self) -> str | dict[str, Any]:
        generative = self._generative()
        if self.targets is None:
            return "next-token distribution at the last real token" if generative else "logits"
        ids = self.targets.tolist()
        if not generative:
            labels = getattr(self.config, "id2label", None) or {}
            named = [labels.get(i) for i in ids]
            return {"distribution": "softmax over the logits of the target classes", "ids": ids, "labels": named}
        tokenizer = self.loaded_tokenizer()
        words = self._target_words
        size, _ = self._output_size()
        return {
            "distribution": "softmax over the next-token logits of the targets at the last real token",
            "ids": ids,
            "tokens": tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else None,
            "words": [word for word, _ in words] if words else None,
            "multi_token": [word for word, count in words if count > 1] if words else [],
            "output_head": f"target rows only ({len(ids)} of {size})" if self._head else f"all {size} rows, then the targets",
        }

    # -- layers ---------------------------------------------------------------------------
    def _prepare(self, batch: Batch) -> None:
        if not self.layers:
            self._find_layers(batch)

    def _find_layers(self, batch: Batch) -> None:
        """Probe one instance to list the attention layers in the order they run."""
        if self.path == "interface":
            self._probing = True
            try:
                with torch.no_grad():
                    self._call(batch.select(slice(0, 1)).to(self.device).model_kwargs())
            finally:
                self._probing = False
        if not self.layers:
            self.path = "softmax"
            self.layers = _blocks(self.module)
        else:
            shortcuts = self.shortcuts and batch.input_ids is not None  # the shortcuts follow token ids
            self._stack = hf_fast.find_stack(self.module, [layer.module for layer in self.layers]) if shortcuts else None
        self.default_query = "last" if any(layer.causal for layer in self.layers) else "first"
        if self._stack is not None and self._generative() and all(layer.causal for layer in self.layers):
            self._decoder = hf_decoder.DecoderShortcut(self.module, self._stack, self.options.batch_size)
        elif self._stack is not None:
            self._copies = hf_query.QueryCopies(self.module, self._stack)

    def chosen_layer(self) -> int:
        count = len(self.layers)
        layer = self.options.layer
        if not -count <= layer < count:
            raise AttnFaithError(
                f"option layer={layer} is out of range: {type(self.module).__name__} has {count} attention layers; "
                f"expected 0..{count - 1}, or -1..-{count} counting from the last"
            )
        return layer % count

    def layer_indices(self) -> list[int]:
        return list(range(len(self.layers)))

    def read_layer(self) -> int:
        return self.chosen_layer()

    def causal_attention(self) -> bool | None:
        return self.layers[self.chosen_layer()].causal if self.layers else None

    def head_count(self, layer: int) -> int:
        return self.layers[layer].heads

    # -- running the model ----------------------------------------------------------------
    def _call(self, kwargs: Mapping[str, Any]) -> Any:
        kwargs = dict(kwargs)
        if "use_cache" in inspect.signature(self.module.forward).parameters:
            kwargs["use_cache"] = False
        self._calls, self._recorded, self._at = 0, [], None
        with self._target_head():
            if self.path == "softmax" and not self._probing:
                self.tap.where = self._where()
                interceptor = SoftmaxInterceptor(self.layers[self.chosen_layer()].module, self.tap)
                with interceptor.installed(), interceptor.active():
                    output = self.module(**kwargs)
            else:
                output = self._run(kwargs)
        return self._logits(output, kwargs.get("attention_mask"))

    def _fast_layer(self) -> int | None:
        """The chosen layer, when passes may start from it (never for gradients to the embeddings or rollout)."""
        replacing = self._capture_embeddings or self._replace_embeddings is not None
        if self._probing or self._stack is None or replacing or self.options.aggregation == "rollout":
            return None
        layer = self.chosen_layer()
        return layer if self._verified.get(layer, True) else None

    def forward_chunked(self, batch: Batch, record_layers: bool = False) -> Any:
        """The reference pass; a causal decoder's also fills the cache of the one-token shortcut."""
        self._filling = True
        try:
            return super().forward_chunked(batch, record_layers)
        finally:
            self._filling = False

    def _run(self, kwargs: dict[str, Any]) -> Any:
        """Run the model: the last token alone from the chosen layer (causal decoders), else from the chosen layer
        on cached hidden states, else in full."""
        one_token = self._one_token_layer()
        if one_token is not None:
            output = self._one_token(kwargs, one_token)
            if output is not None:
                return output
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
        if self._copies_apply(kwargs, layer, slots):
            self.fast_passes += 1
            self._fast_layers.add(layer)
            return self._with_copies(kwargs, layer, slots)
        if layer not in self._verified:  # a counterfactual pass came first at this layer (the atlas)
            self._verify_first_row(kwargs, layer)
        if not self._verified[layer]:
            return self._full(kwargs)
        self.fast_passes += 1
        self._fast_layers.add(layer)
        return self._from_layer(kwargs, layer, cache.stored["hidden"][slots])

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
        assert self._copies is not None and self._cache is not None and self.tap.armed is not None
        self._calls = layer
        self._copies.passes += 1
        groups = torch.unique(slots)
        return self._copies.run(kwargs, self.tap.armed, layer, slots, self._cache.stored["hidden"][groups], self.tap)

    def _verify_copies(self, kwargs: dict[str, Any], layer: int, slots: Tensor) -> bool:
        """Once per layer and session: this pass's first row by the copies (on the cached hidden states) and in full;
        agreement also vouches for the cached hidden states entering the layer."""
        copies, armed, cache = self._copies, self.tap.armed, self._cache
        assert copies is not None and armed is not None and cache is not None
        subset = {**kwargs, **{name: value[:1] for name, value in per_instance(kwargs).items()}}
        alone = armed.select(torch.arange(1, device=slots.device))
        try:
            with torch.no_grad():
                self.tap.arm(alone)
                self._calls = 0
                reference = self._logits(self.module(**subset), None)
                self.tap.arm(alone)
                self._calls = layer
                shared = self._logits(
                    copies.run(subset, alone, layer, slots[:1], cache.stored["hidden"][slots[:1]], self.tap), None
                )
        finally:
            self.tap.arm(armed)
        copies.difference[layer], copies.verified[layer] = _agreement(shared, reference)
        if copies.verified[layer]:
            self._verified.setdefault(layer, True)
        return copies.verified[layer]

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

    # -- causal decoders: the last token alone --------------------------------------------------
    def _one_token_layer(self) -> int | None:
        """The chosen layer, when this pass edits only the last real token's row of a causal decoder."""
        armed = self.tap.armed
        decoder = self._decoder
        if decoder is None or armed is None or armed.edit is None or self._probing or self._capture_embeddings:
            return None
        if self.options.aggregation == "rollout" or armed.capture or armed.at.pooled or armed.at.keys is not None:
            return None
        layer = self.chosen_layer()
        if decoder.verified.get(layer) is False or not torch.equal(armed.at.query, hf_decoder.last_positions(armed.mask)):
            return None
        return layer

    def _full(self, kwargs: dict[str, Any]) -> Any:
        """A full pass; the reference pass of a causal decoder also keeps its keys and values for the shortcut."""
        armed = self.tap.armed
        if not self._filling or self._decoder is None or torch.is_grad_enabled() or (armed is not None and armed.edit):
            return self.module(**kwargs)
        output, entries = self._clean_pass(kwargs)
        if entries is not None:
            self._decoder.cache.slots(per_instance(kwargs), lambda picked: {k: v[picked] for k, v in entries.items()})
        return output

    def _clean_pass(self, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Tensor] | None]:
        """A full pass that keeps every layer's keys and values and the hidden states at the last real token."""
        assert self._decoder is not None and self._stack is not None
        mask = kwargs.get("attention_mask")
        length = kwargs["input_ids"].shape[1]
        last = hf_decoder.last_positions(mask if mask is not None else torch.ones_like(kwargs["input_ids"]))
        hidden: dict[int, Tensor] = {}
        with hf_decoder.recording_last(self._stack, last, hidden):
            output = self.module(**{**kwargs, "use_cache": True})
        entries = hf_decoder.clean_entries(output, hidden, self._decoder.layers, length)
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
        self._calls = layer
        decoder.passes += 1
        return decoder.run(kwargs, self.tap.armed, layer, slots, self.tap)  # type: ignore[arg-type]

    def _clean_rows(self, kwargs: dict[str, Any], rows: dict[str, Tensor], picked: Tensor) -> dict[str, Tensor] | None:
        """The clean passes of the rows ``picked`` (instances not cached yet), without the tap."""
        subset = {**kwargs, **{name: value[picked.to(value.device)] for name, value in rows.items()}}
        armed = self.tap.disarm()
        try:
            self._calls = 0
            with torch.no_grad():
                return self._clean_pass(subset)[1]
        finally:
            self.tap.arm(armed)  # type: ignore[arg-type]

    def _verify_one_token(self, kwargs: dict[str, Any], layer: int, slots: Tensor) -> bool:
        """The shortcut against the full model, on this pass's first row: once per session with the edit (a full
        pass), and at every layer without it (against the clean pass's logits, kept in the cache)."""
        decoder, armed = self._decoder, self.tap.armed
        assert decoder is not None and armed is not None
        first = torch.arange(1, device=slots.device)
        subset = {**kwargs, **{name: value[:1] for name, value in per_instance(kwargs).items()}}
        alone = armed.select(first)
        plain = replace(alone, edit=None)
        try:
            with torch.no_grad():
                if decoder.edited_difference is None:
                    self.tap.arm(alone)
                    self._calls = 0
                    full = self._logits(self.module(**subset), subset.get("attention_mask"))
                    self._calls = layer
                    decoder.edited_difference, decoder.edited_agrees = _agreement(
                        decoder.run(subset, alone, layer, slots[:1], self.tap), full
                    )
                self._calls = layer
                clean = decoder.cache.stored["logits"][slots[:1]]
                decoder.difference[layer], agrees = _agreement(decoder.run(subset, plain, layer, slots[:1], self.tap), clean)
        finally:
            self.tap.arm(armed)
        decoder.verified[layer] = agrees and decoder.edited_agrees
        return decoder.verified[layer]

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

    def attend(
        self, eager: Any, module: nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, **kwargs: Any
    ) -> tuple[Tensor, Tensor | None]:
        """Called by the registered attention function for every layer of every forward pass."""
        from pytest_attnfaith.adapters.hf_interface import weighted_values

        output, weights = eager(module, query, key, value, mask, **kwargs)
        index, self._calls = self._calls, self._calls + 1
        if not isinstance(weights, Tensor) or weights.dim() != 4:
            raise AttentionUnavailableError(
                f"the eager attention of {type(module).__name__} returned no (B, H, Tq, Tk) weights; "
                "expected eager_attention_forward to return (output, weights)"
            )
        if self._probing:
            self.layers.append(
                Layer(_name_of(self.module, module), module, int(weights.shape[1]), bool(getattr(module, "is_causal", False)))
            )
            return output, weights
        chosen = self.chosen_layer()
        if self.options.aggregation == "rollout" and index <= chosen:
            self._recorded.append(weights.detach())
        if index != chosen:
            if self._layer_rows is not None:
                rows = self.tap.peek(weights)
                if rows is not None:
                    self._layer_rows[index] = rows
            return output, weights
        self.tap.where = self._where()
        self._at = self.tap.armed.at if self.tap.armed is not None else None
        replaced = self.tap.apply(weights)
        if replaced is weights:
            return output, weights
        return weighted_values(replaced, value), replaced

    def _logits(self, output: Any, mask: Tensor | None) -> Tensor:
        try:
            logits = logits_of(output)
        except TypeError:
            raise AttnFaithError(
                f"{type(self.module).__name__} returned {type(output).__name__} without logits; "
                "expected a model with a head (sequence classifier or causal LM)"
            ) from None
        if logits.dim() != 3:
            return logits
        if not type(self.module).can_generate():  # type: ignore[attr-defined]
            raise AttnFaithError(
                f"{type(self.module).__name__} returns one row of logits per token {tuple(logits.shape)}; expected a sequence "
                "classifier (logits (B, C)) or a causal LM (the next-token distribution at the last real token is used)"
            )
        positions = torch.arange(logits.shape[1], device=logits.device)
        last = positions.expand(logits.shape[:2]) if mask is None else torch.where(mask.bool(), positions, -1)
        return logits[torch.arange(logits.shape[0], device=logits.device), last.max(dim=1).values.clamp(min=0)]

    # -- what is read ---------------------------------------------------------------------
    def read(self, rows: Tensor, heads: Tensor | None = None) -> Tensor:
        if self.options.aggregation != "rollout":
            return super().read(rows, heads)
        return self._rollout(heads)

    def _rollout(self, heads: Tensor | None) -> Tensor:
        """Abnar & Zuidema: R = Ā_c ⋯ Ā_0 with Ā = ½A + ½I, read at the query rows (chosen layer: ``head``)."""
        at = self._at
        if at is None or len(self._recorded) != self.chosen_layer() + 1:
            raise AttentionUnavailableError(
                f"attention rollout needs layers 0..{self.chosen_layer()}; only {len(self._recorded)} ran"
            )
        length = self._recorded[0].shape[-1]
        eye = torch.eye(length, device=self._recorded[0].device)
        result = eye
        last = len(self._recorded) - 1
        for index, weights in enumerate(self._recorded):
            mixed = super().read(weights.float(), heads) if index == last else weights.float().mean(dim=1)
            result = (0.5 * mixed + 0.5 * eye) @ result
        return at.pool(result[at.owner, at.position][:, None], result.shape[0])[:, 0]

    def rollout(self, batch: Batch) -> Tensor:
        if self.path == "softmax":
            raise self._no_rollout("explainer 'rollout'", "explainer='attention'")
        return super().rollout(batch)

    def _no_rollout(self, what: str, instead: str) -> AttnFaithError:
        return AttnFaithError(
            f"{what} needs every layer's attention: {type(self.module).__name__} is outside transformers' "
            f"AttentionInterface, where only the chosen layer's softmax is intercepted; use {instead}"
        )

    def mask_token_id(self) -> int | None:
        if self.options.mask_token_id is not None:
            return self.options.mask_token_id
        sources = (self.loaded_tokenizer(), self.config)
        for attribute in ("mask_token_id", "pad_token_id"):
            for source in sources:
                value = getattr(source, attribute, None)
                if isinstance(value, int):
                    return value
        return None

    def tokens(self, batch: Batch) -> list[list[str]]:
        if batch.input_ids is None or (tokenizer := self.loaded_tokenizer()) is None:
            return super().tokens(batch)
        out = []
        for row, real in zip(batch.input_ids.tolist(), batch.real.tolist(), strict=True):
            out.append([str(token) for token, keep in zip(tokenizer.convert_ids_to_tokens(row), real, strict=True) if keep])
        return out

    def loaded_tokenizer(self) -> Any:
        """The tokenizer given, else the one saved beside the model's weights (local folders only), else None."""
        if self.tokenizer is None and not self._loaded_tokenizer:
            self._loaded_tokenizer = True
            self.tokenizer = _local_tokenizer(getattr(self.config, "_name_or_path", ""))
        return self.tokenizer

    def describe(self) -> dict[str, Any]:
        chosen = self.chosen_layer() if self.layers else None
        layer = self.layers[chosen] if chosen is not None else None
        return {
            **super().describe(),
            "model_type": getattr(self.config, "model_type", None),
            "config": getattr(self.config, "_name_or_path", "") or None,
            "tokenizer": getattr(self.loaded_tokenizer(), "name_or_path", None),
            "attn_implementation": self.implementation_before,
            "audited_with": "attnfaith (AttentionInterface → eager weights)"
            if self.path == "interface"
            else "softmax interception",
            "layer": chosen,
            "layers": len(self.layers),
            "heads": layer.heads if layer else None,
            "module": layer.name if layer else None,
            "read": self._read_text(),
            "replaced": f"layer {chosen}: {self.replaced_rows()}",
            "query": self._query_text(),
            "output": self.describe_output(),
            "forward": self._forward_text(chosen),
        }

    def _query_text(self) -> str:
        query = self.options.query
        if query == "all":
            return "every real token (the mean of their rows is read)"
        if query == "auto":
            query = self.default_query
        return {"last": "last real token", "first": "first token (CLS)"}.get(str(query), f"position {query}")

    def _forward_text(self, chosen: int | None) -> str:
        """Which passes ran how: the one-token shortcut, cached hidden states (with the edited layer shared), full."""
        parts = []
        decoder = self._decoder
        if decoder is not None and decoder.verified:
            agreed = sorted(layer for layer, ok in decoder.verified.items() if ok)
            disagreed = sorted(layer for layer, ok in decoder.verified.items() if not ok)
            if decoder.passes:
                worst = max([decoder.difference[layer] for layer in agreed] + [decoder.edited_difference or 0.0])
                parts.append(
                    f"one-token passes: the last real token alone from the edited layer up, over the clean pass's cached "
                    f"keys and values ({plural(decoder.passes, 'pass', 'passes')} at {_layers(agreed)}; agreed with full "
                    f"passes to {worst:.1e} in the logits)"
                )
            if disagreed:
                parts.append(f"full at {_layers(disagreed)}, where the one-token shortcut disagreed with the full pass")
        if self.fast_passes:
            shared = self._copies.passes if self._copies is not None else 0
            copied = f"; {shared} ran the edited layer once per instance, the query copied per row" if shared else ""
            parts.append(
                f"counterfactual passes from {_layers(sorted(self._fast_layers))} on cached hidden states "
                f"({plural(self.fast_passes, 'pass', 'passes')}{copied})"
            )
        elif chosen is not None and self._verified.get(chosen) is False:
            parts.append("full (the shortcut from cached hidden states disagreed with the full pass)")
        return "; ".join(parts) + "; others full" if parts else "full"

    def _read_text(self) -> str:
        head = "mean over heads" if self.options.head == "mean" else f"head {self.options.head}"
        if self.options.aggregation == "rollout":
            return f"attention rollout up to layer {self.chosen_layer()} (lower layers: mean over heads; chosen layer: {head})"
        return f"layer {self.chosen_layer()}, {head}"

    def _where(self) -> str:
        layer = self.layers[self.chosen_layer()]
        return f"{type(self.module).__name__} layer {self.chosen_layer()} ({layer.name}, {type(layer.module).__name__})"


class TargetHead(nn.Module):
    """A linear output head restricted to the target rows: z = h W[ids]ᵀ + b[ids], K logits instead of V."""

    def __init__(self, head: nn.Linear, ids: Tensor) -> None:
        super().__init__()
        index = ids.to(head.weight.device)
        self.weight = head.weight.detach()[index]
        self.bias = head.bias.detach()[index] if head.bias is not None else None

    def forward(self, hidden: Tensor) -> Tensor:
        return nn.functional.linear(hidden, self.weight, self.bias)


def huggingface(model: nn.Module, tokenizer: Any = None, *, shortcuts: bool = True) -> HuggingFaceModel:
    """A Hugging Face model for ``af.audit``, with the tokenizer whose tokens the reports show (and that turns
    ``targets`` words into token ids).

    ``af.audit(model, inputs)`` accepts the model itself too; the tokenizer is then the one saved
    beside its weights, if it was loaded from a local folder, else reports show token ids.
    ``shortcuts=False`` runs every pass in full (no cached hidden states, no one-token passes): slower, for checking.
    """
    return HuggingFaceModel(model, tokenizer, shortcuts)


def _layers(numbers: list[int]) -> str:
    """``[5]`` → ``"layer 5"``, ``[0, 1, 2, 5]`` → ``"layers 0-2, 5"``."""
    return f"layer{'s' if len(numbers) > 1 else ''} {_ranges(numbers)}"


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2, 5"``."""
    parts: list[str] = []
    for number in numbers:
        if parts and number == int(parts[-1].rsplit("-", 1)[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{number}"
        else:
            parts.append(str(number))
    return ", ".join(parts)


def _agreement(shortcut: Tensor, full: Tensor) -> tuple[float, bool]:
    """The largest difference between two passes' logits, and whether it is within max(1e-4, 4 ulps of their dtype)
    of their scale (1 + max |z|): float32 passes that differ only in the order of operations agree to about 5e-5
    over SmolLM2's 30 layers; a bf16 logit of 20 is itself rounded to 0.125."""
    difference = float((shortcut.double() - full.double()).abs().max())
    tolerance = max(1e-4, 4 * torch.finfo(full.dtype).eps) * (1 + float(full.double().abs().max()))
    return difference, difference <= tolerance


def _validate(model: nn.Module, tokenizer: Any) -> None:
    from pytest_attnfaith.adapters import is_huggingface_model

    name = type(model).__name__
    if not is_huggingface_model(model):
        raise AttnFaithError(
            f"{name} is not a transformers PreTrainedModel; expected one, or af.wrap(net, ...) for other modules"
        )
    vision.refuse_windowed(model)
    if getattr(model.config, "is_encoder_decoder", False):
        raise AttnFaithError(
            f"{name} is an encoder-decoder model; expected an encoder or decoder with a sequence classification or LM head"
        )
    if model.base_model is model:
        raise AttnFaithError(
            f"{name} is a base model without a head: its output has no logits to compare; load it with "
            "AutoModelForSequenceClassification (logits) or AutoModelForCausalLM (next-token distribution)"
        )
    if tokenizer is not None and not callable(getattr(tokenizer, "convert_ids_to_tokens", None)):
        raise AttnFaithError(
            f"tokenizer is a {type(tokenizer).__name__}; expected a transformers tokenizer (with convert_ids_to_tokens)"
        )


def _implementations(model: nn.Module) -> list[tuple[Any, Any]]:
    """Every config of the model (sub-configs included) with its attention implementation."""
    seen: dict[int, tuple[Any, Any]] = {}
    pending = [getattr(sub, "config", None) for sub in model.modules()]
    while pending:
        config = pending.pop()
        if config is None or id(config) in seen or not hasattr(config, "_attn_implementation_internal"):
            continue
        seen[id(config)] = (config, config._attn_implementation_internal)
        pending.extend(getattr(config, key, None) for key in getattr(config, "sub_configs", {}))
    return list(seen.values())


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next((name for name, sub in model.named_modules() if sub is module), type(module).__name__)


def _blocks(model: nn.Module) -> list[Layer]:
    """Outside the interface: the layers of the largest ``ModuleList`` and the attention module in each."""
    config: Any = model.config
    count = getattr(config, "num_hidden_layers", None)
    lists = [(name, sub) for name, sub in model.named_modules() if isinstance(sub, nn.ModuleList) and len(sub) == count]
    if not lists:
        raise AttentionUnavailableError(
            f"{type(model).__name__} does not use transformers' AttentionInterface and has no list of {count} layers in which "
            "to intercept the attention softmax; wrap it with af.wrap(net, attention='path.to.attention', embeddings=...)"
        )
    prefix, blocks = lists[0]
    heads, causal = int(getattr(config, "num_attention_heads", 1)), bool(getattr(config, "is_decoder", False))
    layers = []
    for index, block in enumerate(blocks):
        name, module = next(((n, m) for n, m in block.named_modules() if "Attention" in type(m).__name__), ("", block))
        layers.append(Layer(f"{prefix}.{index}{'.' + name if name else ''}", module, heads, causal))
    return layers


def _local_tokenizer(path: str) -> Any:
    if not path or not os.path.isdir(path) or not any(os.path.exists(os.path.join(path, f)) for f in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)
