"""Independent references for the attention-derived explainers on a BERT encoder, following the authors' own
formulas (read, not copied, from gorokoba560/norm-analysis-of-transformer, mt-upc/transformer-contributions,
inseq's ``ValueZeroing``, samiraabnar/attention_flow and Chefer et al.'s Eq. 5): the model runs under transformers'
``eager`` attention with ``output_attentions`` / ``output_hidden_states``, the values, output projection and
layer norms are read with forward hooks on ``attention.self.value``, ``attention.output.dense`` and
``attention.output.LayerNorm``, one instance and one source token at a time (loops: this is a reference).

Each function returns the full (B, T) row of the query position ``query`` (the [CLS] row) of the given ``layer``
(rollout-style methods: layers 0..layer), unnormalised; the test restricts and renormalises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import networkx as nx
import numpy as np
import torch
import transformers as tf
from torch import Tensor


@contextlib.contextmanager
def eager(model: tf.PreTrainedModel) -> Iterator[None]:
    before, training = model.config._attn_implementation_internal, model.training
    model.eval()
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.config._attn_implementation_internal = before
        model.train(training)


def _run(model: Any, inputs: dict[str, Tensor]) -> tuple[Any, dict[str, list[Any]]]:
    """The forward with every layer's value output, dense output, LayerNorm input and output recorded."""
    seen: dict[str, list[Any]] = {"value": [], "ln_in": [], "ln_out": []}

    def norm(module: Any, args: Any, output: Tensor) -> None:
        seen["ln_in"].append(args[0])
        seen["ln_out"].append(output)

    hooks = []
    for layer in model.bert.encoder.layer:
        hooks.append(layer.attention.self.value.register_forward_hook(lambda m, a, o: seen["value"].append(o)))
        hooks.append(layer.attention.output.LayerNorm.register_forward_hook(norm))
    try:
        with eager(model), torch.no_grad():
            output = model(**inputs, output_attentions=True, output_hidden_states=True)
    finally:
        for hook in hooks:
            hook.remove()
    return output, seen


def _transformed(model: Any, layer: int, values: Tensor) -> Tensor:
    """Kobayashi's f(x): (B, H, T, D), the value vectors through each head's slice of the dense weight."""
    config = model.config
    heads, width = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    value = values.view(values.shape[0], values.shape[1], heads, width).permute(0, 2, 1, 3)
    dense = model.bert.encoder.layer[layer].attention.output.dense.weight.view(config.hidden_size, heads, width)
    return torch.einsum("bhsv,dhv->bhsd", value, dense)


def attention_norm(model: Any, inputs: dict[str, Tensor], layer: int, query: int = 0) -> Tensor:
    """‖Σ_h α^h_qj f^h(x_j)‖ (the authors' ``summed_weighted_norm``)."""
    output, seen = _run(model, inputs)
    weighted = torch.einsum("bhks,bhsd->bhksd", output.attentions[layer], _transformed(model, layer, seen["value"][layer]))
    return weighted.sum(dim=1).norm(dim=-1)[:, query]


def alti(model: Any, inputs: dict[str, Tensor], layer: int, query: int = 0) -> Tensor:
    """ALTI as mt-upc compute it for post-LN encoders: -L1(T_i(x_j) − y_i), ``min_sum`` with the resultant's L1
    norm, rollout by products of the per-layer matrices (no identity added)."""
    output, seen = _run(model, inputs)
    joint = None
    for index in range(layer + 1):
        hidden = output.hidden_states[index]
        summed = torch.einsum("bhks,bhsd->bhksd", output.attentions[index], _transformed(model, index, seen["value"][index])).sum(
            1
        )
        residual = torch.einsum("sk,bsd->bskd", torch.eye(hidden.shape[1]), hidden)
        norm = model.bert.encoder.layer[index].attention.output.LayerNorm
        dense = model.bert.encoder.layer[index].attention.output.dense
        centring = torch.eye(hidden.shape[-1]) - 1 / hidden.shape[-1]
        transform = centring @ torch.diag(norm.weight)
        std = 1 / (seen["ln_in"][index] + norm.eps).std(-1, unbiased=False)[..., None]
        vectors = torch.einsum("...e,ef->...f", summed + residual, transform) * std[:, :, None]
        resultant = (
            torch.einsum("...e,ef->...f", summed + residual, transform).sum(2) + dense.bias @ transform
        ) * std + norm.bias
        importance = -(vectors - resultant[:, :, None]).abs().sum(-1)
        scores = (importance + resultant.abs().sum(-1)[..., None]).clamp(min=0)
        contributions = scores / scores.sum(-1, keepdim=True)
        joint = contributions if joint is None else contributions @ joint
    assert joint is not None
    return joint[:, query]


def value_zeroing(model: Any, inputs: dict[str, Tensor], layer: int, query: int = 0) -> Tensor:
    """Inseq's value zeroing at one layer: per token j a full forward with j's value vector zeroed at ``layer`` (its
    block output read; the blocks above are irrelevant), 1 − cos against the clean block output, rows normalised."""
    output, _ = _run(model, inputs)
    clean = output.hidden_states[layer + 1]
    size, length = inputs["input_ids"].shape
    scores = torch.zeros(size, length, length, dtype=torch.float64)  # 1 − cos in float32 cancels (inseq: float32)
    block = model.bert.encoder.layer[layer]
    for token in range(length):

        def zero(module: Any, args: Any, out: Tensor, token: int = token) -> Tensor:
            out = out.clone()
            out[:, token] = 0
            return out

        seen: list[Tensor] = []

        def keep(module: Any, args: Any, out: Any, seen: list[Tensor] = seen) -> None:
            seen.append(out[0] if isinstance(out, tuple) else out)

        hooks = [block.attention.self.value.register_forward_hook(zero), block.register_forward_hook(keep)]
        try:
            with eager(model), torch.no_grad():
                model(**inputs)
        finally:
            for hook in hooks:
                hook.remove()
        scores[:, :, token] = 1 - torch.nn.functional.cosine_similarity(seen[0].double(), clean.double(), dim=-1)
    scores = scores * inputs["attention_mask"][:, None, :]  # padded keys: no value zeroed (the package skips them)
    total = scores.sum(-1, keepdim=True)
    return (scores / torch.where(total == 0, 1, total))[:, query]


def attention_gradient(model: Any, inputs: dict[str, Tensor], layer: int, query: int = 0) -> Tensor:
    """Chefer et al.'s Eq. 5 at one layer: E_h[(∇A ⊙ A)⁺], the gradient of p_ŷ (float64) w.r.t. the eager weights."""
    with eager(model):
        output = model(**inputs, output_attentions=True)
        weights = output.attentions[layer]
        probs = torch.softmax(output.logits.double(), dim=-1)
        chosen = probs.gather(1, probs.argmax(1, keepdim=True)).sum()
        grad = torch.autograd.grad(chosen, weights)[0]
    return (grad * weights).clamp(min=0).mean(1)[:, query].detach()


def attention_flow(model: Any, inputs: dict[str, Tensor], layer: int, query: int = 0) -> Tensor:
    """Abnar & Zuidema's flow with networkx: Ā = ½A + ½I (heads averaged), per instance one layered graph, the max
    flow from each input token to the query node above ``layer``."""
    output, _ = _run(model, inputs)
    size, length = inputs["input_ids"].shape
    flows = torch.zeros(size, length)
    for b in range(size):
        graph = nx.DiGraph()
        for index in range(layer + 1):
            residual = 0.5 * output.attentions[index][b].mean(0).numpy() + 0.5 * np.eye(length)
            for i in range(length):
                for k in range(length):
                    if residual[i, k] > 0:
                        graph.add_edge((index, k), (index + 1, i), capacity=float(residual[i, k]))
        for token in range(length):
            if graph.has_node((0, token)):
                flows[b, token] = nx.maximum_flow_value(graph, (0, token), (layer + 1, query))
    return flows
