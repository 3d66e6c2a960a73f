"""``attention_gradient``: attention weighted by the gradient of the output with respect to it (Chefer, Gur &
Wolf 2021, *Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers*,
Eq. 5, at one layer).

Ā = E_h[(∇A ⊙ A)⁺]: at the chosen ``layer``, each head's attention A^h times ∂p_ŷ/∂A^h (p_ŷ the float64
probability of the class predicted on the unedited input), negative values clipped, averaged over heads as the
paper does, read at the audit's query row (``query``; ``"all"``: the mean over the real rows); ``head`` is not
used. Restricted to the real positions, renormalised (an output with no gradient path to the attention: all 0).

Works wherever the audit reads the attention (every adapter, ``wrap()`` included): the chosen layer's attention is
a leaf of the graph for one backward pass per ``batch_size // 4`` instances.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.explainers._derived import per_chunk
from pytest_attnfaith.session import Context


def attribute(context: Context) -> Tensor:
    """Ā's query row (B, T), float64, summing to 1 over the real positions (0 without a gradient path)."""
    return per_chunk(context, lambda batch, part: _relevance(context, batch, context.predicted[part]), rows=context.backward_rows)


def _relevance(context: Context, batch: Batch, predicted: Tensor) -> Tensor:
    forward = context.model.forward(batch, capture_attention=True)
    captured = forward.captured
    assert captured is not None
    chosen = forward.probs.gather(1, predicted.unsqueeze(1).to(forward.probs.device)).sum()
    grad = torch.autograd.grad(chosen, captured, allow_unused=True)[0] if chosen.requires_grad else None
    if grad is None:
        return torch.zeros(batch.size, batch.length, dtype=torch.float64)
    relevance = (grad.double() * captured.detach().double()).clamp(min=0.0)  # (n, H, Tq, Tk)
    at = context.model.query_rows(batch.to(relevance.device))
    return at.pool(at.rows_of(relevance).mean(dim=1, keepdim=True), batch.size)[:, 0]
