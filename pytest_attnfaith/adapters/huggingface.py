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
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters import hf_fast
from pytest_attnfaith.adapters.base import AttentionModel
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.adapters.rowcache import RowCache, per_instance
from pytest_attnfaith.adapters.softmax import SoftmaxInterceptor
from pytest_attnfaith.errors import AttentionUnavailableError, AttnFaithError
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

    def __init__(self, model: nn.Module, tokenizer: Any = None) -> None:
        _validate(model, tokenizer)
        super().__init__(model, where=type(model).__name__)
        self.config: Any = model.config
        self.tokenizer = tokenizer
        self.path = "interface" if type(model)._can_set_attn_implementation() else "softmax"  # type: ignore[attr-defined]
        self.implementation_before = str(getattr(self.config, "_attn_implementation", None))
        self.layers: list[Layer] = []
        self._probing = False
        self._calls = 0
        self._recorded: list[Tensor] = []
        self._query: Tensor | None = None
        self._loaded_tokenizer = False
        self._stack: hf_fast.Stack | None = None
        self._cache: RowCache | None = None
        self._cache_layer = -1
        self._verified: dict[int, bool] = {}
        self.fast_passes = 0

    # -- session --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _install(self) -> Iterator[None]:
        from pytest_attnfaith.adapters import hf_interface

        if self.path == "softmax" and self.options.aggregation == "rollout":
            raise self._no_rollout("aggregation='rollout'", "aggregation='attention'")
        saved = _implementations(self.module)
        self.implementation_before = str(getattr(self.config, "_attn_implementation", None))
        self.layers, self._cache, self._verified, self.fast_passes = [], None, {}, 0
        try:
            if self.path == "interface":
                self.module.set_attn_implementation(hf_interface.register())  # type: ignore[operator]
            with self.embeddings_hook(), hf_interface.listening(self):
                yield
        finally:
            for config, implementation in saved:
                config._attn_implementation_internal = implementation

    def embeddings_module(self) -> nn.Module:
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
            self._stack = hf_fast.find_stack(self.module, [layer.module for layer in self.layers])
        self.default_query = "last" if any(layer.causal for layer in self.layers) else "first"

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

    def head_count(self, layer: int) -> int:
        return self.layers[layer].heads

    # -- running the model ----------------------------------------------------------------
    def _call(self, kwargs: Mapping[str, Any]) -> Any:
        kwargs = dict(kwargs)
        if "use_cache" in inspect.signature(self.module.forward).parameters:
            kwargs["use_cache"] = False
        self._calls, self._recorded, self._query = 0, [], None
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
        return layer if layer > 0 and self._verified.get(layer, True) else None

    def _run(self, kwargs: dict[str, Any]) -> Any:
        """Run the model: from the chosen layer on cached hidden states where possible, else in full."""
        layer = self._fast_layer()
        if layer is None:
            return self.module(**kwargs)
        if layer not in self._verified:
            edited = self.tap.armed is not None and self.tap.armed.edit is not None
            return self.module(**kwargs) if edited or torch.is_grad_enabled() else self._verify(kwargs, layer)
        if not self._verified[layer]:
            return self.module(**kwargs)
        rows, cache = per_instance(kwargs), self._layer_cache(layer)
        slots = cache.slots(rows, lambda picked: {"hidden": self._entering(kwargs, rows, picked, layer)})
        if slots is None:
            return self.module(**kwargs)
        self.fast_passes += 1
        return self._from_layer(kwargs, layer, cache.stored["hidden"][slots])

    def _layer_cache(self, layer: int) -> RowCache:
        if self._cache is None or self._cache_layer != layer:
            self._cache, self._cache_layer = RowCache(self.options.batch_size), layer
        return self._cache

    def _verify(self, kwargs: dict[str, Any], layer: int) -> Any:
        """A full pass that records the hidden states entering ``layer`` and checks the shortcut against it once."""
        entering: list[Tensor] = []
        with hf_fast.recording(self._stack, layer, entering):  # type: ignore[arg-type]
            output = self.module(**kwargs)
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
        """The hidden states entering ``layer`` for the rows ``picked``: the layers below it only."""
        subset = {**kwargs, **{name: value[picked.to(value.device)] for name, value in rows.items()}}
        try:
            with torch.no_grad(), hf_fast.stopping(self._stack, layer):  # type: ignore[arg-type]
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
            return output, weights
        self.tap.where = self._where()
        self._query = self.tap.armed.query if self.tap.armed is not None else None
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
    def read(self, rows: Tensor) -> Tensor:
        if self.options.aggregation != "rollout":
            return super().read(rows)
        return self._rollout()

    def _rollout(self) -> Tensor:
        """Abnar & Zuidema: R = Ā_c ⋯ Ā_0 with Ā = ½A + ½I, read at the query row (chosen layer: ``head``)."""
        if self._query is None or len(self._recorded) != self.chosen_layer() + 1:
            raise AttentionUnavailableError(
                f"attention rollout needs layers 0..{self.chosen_layer()}; only {len(self._recorded)} ran"
            )
        length = self._recorded[0].shape[-1]
        eye = torch.eye(length, device=self._recorded[0].device)
        result = eye
        last = len(self._recorded) - 1
        for index, weights in enumerate(self._recorded):
            mixed = super().read(weights.float()) if index == last else weights.float().mean(dim=1)
            result = (0.5 * mixed + 0.5 * eye) @ result
        return result[torch.arange(result.shape[0], device=result.device), self._query]

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
        tokenizer = self.loaded_tokenizer()
        if tokenizer is None:
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
            "replaced": f"layer {chosen}: the query row of every head",
            "query": "last real token" if self.default_query == "last" else "first token (CLS)",
            "output": "next-token distribution at the last real token" if type(self.module).can_generate() else "logits",  # type: ignore[attr-defined]
            "forward": self._forward_text(chosen),
        }

    def _forward_text(self, chosen: int | None) -> str:
        if self.fast_passes:
            return f"counterfactual passes from layer {chosen} on cached hidden states ({self.fast_passes} passes); others full"
        if chosen is not None and self._verified.get(chosen) is False:
            return "full (the shortcut from cached hidden states disagreed with the full pass)"
        return "full"

    def _read_text(self) -> str:
        head = "mean over heads" if self.options.head == "mean" else f"head {self.options.head}"
        if self.options.aggregation == "rollout":
            return f"attention rollout up to layer {self.chosen_layer()} (lower layers: mean over heads; chosen layer: {head})"
        return f"layer {self.chosen_layer()}, {head}"

    def _where(self) -> str:
        layer = self.layers[self.chosen_layer()]
        return f"{type(self.module).__name__} layer {self.chosen_layer()} ({layer.name}, {type(layer.module).__name__})"


def huggingface(model: nn.Module, tokenizer: Any = None) -> HuggingFaceModel:
    """A Hugging Face model for ``af.audit``, with the tokenizer whose tokens the reports show.

    ``af.audit(model, inputs)`` accepts the model itself too; the tokenizer is then the one saved
    beside its weights, if it was loaded from a local folder, else reports show token ids.
    """
    return HuggingFaceModel(model, tokenizer)


def _validate(model: nn.Module, tokenizer: Any) -> None:
    from pytest_attnfaith.adapters import is_huggingface_model

    name = type(model).__name__
    if not is_huggingface_model(model):
        raise AttnFaithError(
            f"{name} is not a transformers PreTrainedModel; expected one, or af.wrap(net, ...) for other modules"
        )
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
