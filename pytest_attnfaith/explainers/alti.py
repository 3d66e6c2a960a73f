"""``alti``: Aggregation of Layer-wise Token-to-token Interactions (Ferrando, Gállego & Costa-jussà 2022,
*Measuring the Mixing of Contextual Information in the Transformer*).

Per layer l, the attention sublayer's output at token i decomposes over the input tokens j:
T_i(x_j) = Σ_h α^h_ij f^h(x_j) + [i = j] x_i (f^h(x_j) = v^h_j W_o^h, the value through its head's slice of the
output projection; x_i the residual, the hidden state entering the block). Post-LN blocks (BERT) pass the sum
through the layer norm, linear given the token's σ_i: T_i(x_j) ← γ ⊙ (T_i(x_j) − mean(T_i(x_j))) / σ_i (the paper's
decomposition); pre-LN blocks (Llama, GPT-2) normalise before the values, so the sum is the residual stream
itself. With y_i the sublayer's output (biases included), the contribution is
c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁), each row normalised to sum to 1 (the authors' ``min_sum`` with the
resultant's norm). Layers are aggregated by rollout without added identity (the residual is already in C):
R = C_c ⋯ C_0 up to the chosen ``layer`` c, read at the audit's query row (``query``); ``head`` is not used.
Restricted to the real positions, renormalised.

Needs every layer's values, output projection, residual and layer norm: Hugging Face models on
``AttentionInterface`` (``adapters.internals``); elsewhere an ``AttentionUnavailableError``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters import internals
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.errors import AttentionUnavailableError
from pytest_attnfaith.explainers._derived import per_chunk, query_read
from pytest_attnfaith.session import Context

NAME = "explainer 'alti'"


def attribute(context: Context) -> Tensor:
    """ALTI rollout row (B, T), float64, summing to 1 over the real positions."""
    return per_chunk(context, lambda batch, _: _scores(context, batch))


def _scores(context: Context, batch: Batch) -> Tensor:
    _, layers = internals.record(context.model, batch, NAME, upto=context.model.read_layer())
    rollout: Tensor | None = None
    for layer in layers:
        mixing = contributions(layer)
        rollout = mixing if rollout is None else mixing @ rollout
    assert rollout is not None
    return query_read(context, batch, rollout)


def contributions(layer: internals.LayerRecord) -> Tensor:
    """C (n, T, T), float64, rows summing to 1: c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁), normalised."""
    entering, projected = layer.block_input, layer.projected
    if entering is None or projected is None or layer.projection is None:
        raise AttentionUnavailableError(
            f"{NAME} needs the residual (the hidden states entering the block) and the output projection around "
            f"{type(layer.module).__name__}; the block did not expose them"
        )
    residual, stream = entering.detach().double(), (entering.detach() + projected.detach()).double()
    mixed = torch.einsum("nhij,nhjd->nijd", layer.weights.detach().double(), layer.transformed().double())
    eye = torch.eye(mixed.shape[1], dtype=mixed.dtype, device=mixed.device)
    terms = mixed + eye[None, :, :, None] * residual[:, :, None, :]
    if any(torch.equal(given, entering) for _, given, _ in layer.norms):  # pre-LN: the stream is the output
        output = stream
    else:
        norm, output = _post_norm(layer, stream)
        terms = _linearised(norm, terms, stream)
    distance = (output[:, :, None, :] - terms).abs().sum(dim=-1)
    scores = (output.abs().sum(dim=-1, keepdim=True) - distance).clamp(min=0.0)
    total = scores.sum(dim=-1, keepdim=True)
    return scores / torch.where(total > 0, total, 1.0)


def _post_norm(layer: internals.LayerRecord, stream: Tensor) -> tuple[nn.Module, Tensor]:
    """The layer norm applied to residual + projection (post-LN) and its output."""
    for module, given, output in layer.norms:
        if given.shape == stream.shape and torch.allclose(given.double(), stream, rtol=1e-4, atol=1e-5):
            return module, output.detach().double()
    raise AttentionUnavailableError(
        f"{NAME}: around {type(layer.module).__name__}, no layer norm takes the block's input (pre-LN) or the residual "
        "plus the attention's projection (post-LN); expected one of the two transformer layouts"
    )


def _linearised(norm: nn.Module, terms: Tensor, stream: Tensor) -> Tensor:
    """Each term through the norm as the linear map it is for the token's own σ_i: γ ⊙ (t − mean t) / σ_i
    (LayerNorm), γ ⊙ t / rms_i (RMSNorm, no centring)."""
    weight = getattr(norm, "weight", None)
    eps = float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-5)))
    gamma = weight.detach().double() if isinstance(weight, Tensor) else torch.ones(stream.shape[-1], dtype=torch.float64)
    if isinstance(norm, nn.LayerNorm) or getattr(norm, "bias", None) is not None:
        scale = (stream.var(dim=-1, unbiased=False) + eps).sqrt()
        terms = terms - terms.mean(dim=-1, keepdim=True)
    else:
        scale = (stream.pow(2).mean(dim=-1) + eps).sqrt()
    return gamma * terms / scale[:, :, None, None]
