"""The Hugging Face adapter's model: its attention layers (found by probing one pass), the attention function
every layer calls (``attend``), the logits it returns, rollout, and the description in ``report.model``.

Attention is read and replaced through the model's own attention function. On models built on
``AttentionInterface`` the model is switched, for the audit only, to the implementation
``"attnfaith"`` (``hf_interface``): each layer runs the model's eager attention, and the chosen
layer's weights (B, H, Tq, Tk) pass through the tap, which reads the query row and may replace it
in every head; the layer's output is then computed from the (replaced) weights. Models outside the
interface (e.g. DeBERTa-v2) get the softmax inside the chosen layer's attention module intercepted.

Layers are numbered in the order their attention runs in one forward pass (a shared layer, as in
ALBERT, counts once per use). Sequence classifiers give their logits; causal LMs the next-token
distribution at the last real position. Every pass runs in full here; the shortcuts (``hf_hidden``,
``hf_query``, ``hf_decoder``) override ``_run``. Importing this module does not import transformers.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters import vision
from pytest_attnfaith.adapters.hf_text import HuggingFaceText
from pytest_attnfaith.adapters.inputs import Batch, last_positions
from pytest_attnfaith.adapters.passes import Pass, Produced
from pytest_attnfaith.adapters.recognise import is_huggingface_model
from pytest_attnfaith.adapters.softmax import SoftmaxInterceptor
from pytest_attnfaith.errors import AttentionUnavailableError, AttnFaithError
from pytest_attnfaith.metrics import logits_of


@dataclass(frozen=True)
class Layer:
    """One attention layer, in the order it runs: its module, qualified name, heads, causality."""

    name: str
    module: nn.Module
    heads: int
    causal: bool


class HuggingFaceLayers(HuggingFaceText):
    """A ``transformers.PreTrainedModel`` (sequence classifier or causal LM) run in full, pass by pass."""

    kind = "huggingface"

    def __init__(self, model: nn.Module, tokenizer: Any = None, shortcuts: bool = True) -> None:
        _validate(model, tokenizer)
        super().__init__(model, tokenizer, shortcuts)
        self.shortcuts = shortcuts
        self.path = "interface" if type(model)._can_set_attn_implementation() else "softmax"  # type: ignore[attr-defined]
        self.implementation_before = str(getattr(self.config, "_attn_implementation", None))
        self._reset_session()

    def _reset_session(self) -> None:
        """Forget what the previous session found (each shortcut extends this with its own caches)."""
        self.layers: list[Layer] = []

    def _found_layers(self) -> None:
        """Called once the layers of a model on the ``AttentionInterface`` are known."""

    @contextlib.contextmanager
    def _install(self) -> Iterator[None]:
        from pytest_attnfaith.adapters import hf_interface

        if self.path == "softmax" and self.options.aggregation == "rollout":
            raise self._no_rollout("aggregation='rollout'", "aggregation='attention'")
        saved = _implementations(self.module)
        self.implementation_before = str(getattr(self.config, "_attn_implementation", None))
        self._reset_session()
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

    def _prepare(self, batch: Batch) -> None:
        if not self.layers:
            self._find_layers(batch)

    def _find_layers(self, batch: Batch) -> None:
        """Probe one instance to list the attention layers in the order they run (``LayerProbe``)."""
        if self.path == "interface":
            from pytest_attnfaith.adapters.hf_interface import listening

            probe = LayerProbe(self.module)
            kwargs = _without_cache(self.module, batch.select(slice(0, 1)).to(self.device).model_kwargs())
            with listening(probe), self.tap.suspended(), torch.no_grad(), torch.random.fork_rng(devices=[]):
                self.module(**kwargs)  # the audit's seeded RNG stays untouched
            self.layers = probe.layers
        if not self.layers:
            self.path = "softmax"
            self.layers = _blocks(self.module)
        else:
            self._found_layers()
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

    def read_layer(self) -> int:
        return self.chosen_layer()

    def causal_attention(self) -> bool | None:
        return self.layers[self.chosen_layer()].causal if self.layers else None

    def head_count(self, layer: int) -> int:
        return self.layers[layer].heads

    def _call(self, kwargs: Mapping[str, Any]) -> Any:
        kwargs = _without_cache(self.module, kwargs)
        self.tap.where = self._where()
        with self._target_head():
            if self.path == "softmax":
                interceptor = SoftmaxInterceptor(self.layers[self.chosen_layer()].module, self.tap)
                with interceptor.installed(), interceptor.active():
                    output = self.module(**kwargs)
            else:
                output = self._run(kwargs)
        return self._logits(output, kwargs.get("attention_mask"))

    def _run(self, kwargs: dict[str, Any]) -> Any:
        """Run the model on the ``AttentionInterface`` path (the shortcuts override this)."""
        return self._full(kwargs)

    def _full(self, kwargs: dict[str, Any]) -> Any:
        """A full pass."""
        return self.module(**kwargs)

    def attend(
        self, eager: Any, module: nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, **kwargs: Any
    ) -> tuple[Tensor, Tensor | None]:
        """Called by the registered attention function for every layer of every forward pass: the running pass
        (``tap``) reads and may replace the weights of its layer, records other layers' rows or weights it asks for."""
        from pytest_attnfaith.adapters.hf_interface import weighted_values

        output, weights = eager_weights(eager, module, query, key, value, mask, **kwargs)
        armed, produced = self.tap.armed, self.tap.produced
        if armed is None or produced is None:
            return output, weights
        index, produced.next_layer = produced.next_layer, produced.next_layer + 1
        if self.options.aggregation == "rollout" and index <= armed.layer:
            produced.recorded.append(weights.detach())
        if index != armed.layer:
            if armed.record_layers:
                produced.layer_rows[index] = self.tap.peek(weights)  # type: ignore[assignment]
            return output, weights
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
        real = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device) if mask is None else mask
        return logits[torch.arange(logits.shape[0], device=logits.device), last_positions(real).to(logits.device)]

    def read_pass(self, armed: Pass, produced: Produced, heads: Tensor | None) -> Tensor:
        if self.options.aggregation != "rollout":
            return super().read_pass(armed, produced, heads)
        return self._rollout(armed, produced, heads)

    def _rollout(self, armed: Pass, produced: Produced, heads: Tensor | None) -> Tensor:
        """Abnar & Zuidema: R = Ā_c ⋯ Ā_0 with Ā = ½A + ½I, read at the query rows (chosen layer: ``head``)."""
        recorded = produced.recorded
        if len(recorded) != armed.layer + 1:
            raise AttentionUnavailableError(f"attention rollout needs layers 0..{armed.layer}; only {len(recorded)} ran")
        length = recorded[0].shape[-1]
        eye = torch.eye(length, device=recorded[0].device)
        result = eye
        for index, weights in enumerate(recorded):
            mixed = self.read(weights.float(), heads) if index == armed.layer else weights.float().mean(dim=1)
            result = (0.5 * mixed + 0.5 * eye) @ result
        at = armed.at
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
        if isinstance(query, int) and query < 0:
            return f"position {query} (counted from the end of the inputs)"
        return {"last": "last real token", "first": "first token (CLS)"}.get(str(query), f"position {query}")

    def _forward_text(self, chosen: int | None) -> str:
        """Which passes ran how: the shortcuts' parts (``_forward_parts``), the others full."""
        parts = self._forward_parts(chosen)
        return "; ".join(parts) + "; others full" if parts else "full"

    def _forward_parts(self, chosen: int | None) -> list[str]:
        """What each shortcut did in this session, in words (none here)."""
        return []

    def _read_text(self) -> str:
        head = "mean over heads" if self.options.head == "mean" else f"head {self.options.head}"
        if self.options.aggregation == "rollout":
            return f"attention rollout up to layer {self.chosen_layer()} (lower layers: mean over heads; chosen layer: {head})"
        return f"layer {self.chosen_layer()}, {head}"

    def _where(self) -> str:
        layer = self.layers[self.chosen_layer()]
        return f"{type(self.module).__name__} layer {self.chosen_layer()} ({layer.name}, {type(layer.module).__name__})"


def _validate(model: nn.Module, tokenizer: Any) -> None:
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


class LayerProbe:
    """The listener of the probing pass: lists the attention layers in the order they run."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers: list[Layer] = []

    def attend(
        self, eager: Any, module: nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, **kwargs: Any
    ) -> tuple[Tensor, Tensor | None]:
        output, weights = eager_weights(eager, module, query, key, value, mask, **kwargs)
        causal = bool(getattr(module, "is_causal", False))
        self.layers.append(Layer(_name_of(self.model, module), module, int(weights.shape[1]), causal))
        return output, weights


def eager_weights(
    eager: Any, module: nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, **kwargs: Any
) -> tuple[Tensor, Tensor]:
    """The model's eager attention: its output and weights (B, H, Tq, Tk), checked to be there."""
    output, weights = eager(module, query, key, value, mask, **kwargs)
    if not isinstance(weights, Tensor) or weights.dim() != 4:
        raise AttentionUnavailableError(
            f"the eager attention of {type(module).__name__} returned no (B, H, Tq, Tk) weights; "
            "expected eager_attention_forward to return (output, weights)"
        )
    return output, weights


def _without_cache(model: nn.Module, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a pass, with ``use_cache=False`` where the model takes it (no key-value cache)."""
    kwargs = dict(kwargs)
    if "use_cache" in inspect.signature(model.forward).parameters:
        kwargs["use_cache"] = False
    return kwargs


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


def agreement(shortcut: Tensor, full: Tensor) -> tuple[float, bool]:
    """The largest difference between two passes' logits, and whether it is within max(1e-4, 4 ulps of their dtype)
    of their scale (1 + max |z|): float32 passes that differ only in the order of operations agree to about 5e-5
    over SmolLM2's 30 layers; a bf16 logit of 20 is itself rounded to 0.125."""
    difference = float((shortcut.double() - full.double()).abs().max())
    tolerance = max(1e-4, 4 * torch.finfo(full.dtype).eps) * (1 + float(full.double().abs().max()))
    return difference, difference <= tolerance


def layers_text(numbers: list[int]) -> str:
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
