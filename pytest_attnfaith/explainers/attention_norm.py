"""``attention_norm``: norm-based attention (Kobayashi, Kuribayashi, Yokoi & Inui 2020, *Attention is Not Only a
Weight: Analyzing Transformers with Vector Norms*).

An attention layer's output at query i is Σ_h Σ_j α^h_ij f^h(x_j) (plus the projection's bias), with
f^h(x_j) = v^h_j W_o^h the value vector of token j in head h through that head's slice of the output
projection. The score of token j is the norm of its whole contribution, heads summed as the paper's
``||Σαf(x)||``: s_j = ‖Σ_h α^h_qj f^h(x_j)‖₂, at the chosen ``layer`` and the audit's query row q (``query``;
``"all"``: the mean over the real rows); ``head`` is not used. Restricted to the real positions, renormalised.

Needs each layer's value vectors and output projection: Hugging Face models on ``AttentionInterface``
(``adapters.internals``) and ``wrap()``-ed models whose attention is one ``nn.MultiheadAttention``
(``adapters.mha``); elsewhere an ``AttentionUnavailableError`` naming what is missing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.adapters import internals, mha
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.errors import AttentionUnavailableError
from pytest_attnfaith.explainers._derived import per_chunk
from pytest_attnfaith.session import Context

NAME = "explainer 'attention_norm'"


def attribute(context: Context) -> Tensor:
    """s (B, T), float64, summing to 1 over the real positions."""
    return per_chunk(context, lambda batch, _: _norms(context, batch))


def _norms(context: Context, batch: Batch) -> Tensor:
    weights, transformed = _weights_and_values(context, batch)
    at = context.model.query_rows(batch.to(weights.device))
    rows = at.rows_of(weights.detach())  # (P, H, T)
    owner = at.owner if at.batch is None else at.batch
    vectors = torch.einsum("pht,phtd->ptd", rows.double(), transformed[owner].double())
    return at.pool(vectors.norm(dim=-1)[:, None], batch.size)[:, 0]


def _weights_and_values(context: Context, batch: Batch) -> tuple[Tensor, Tensor]:
    """The chosen layer's weights (n, H, T, T) and f (n, H, T, D): through ``adapters.internals`` on a Hugging Face
    model, through ``adapters.mha`` on a wrapped ``nn.MultiheadAttention``."""
    model = context.model
    attention = getattr(model, "attention_module", None)
    if attention is None:
        _, layers = internals.record(model, batch, NAME, upto=model.read_layer())
        return layers[-1].weights, layers[-1].transformed()
    seen: list[Tensor] = []
    with mha.transformed_values(mha.find(attention, model.tap.where, NAME), seen):
        forward = model.forward(batch, capture_attention=True, embeddings=lambda native: native)
    if forward.captured is None or len(seen) != 1:
        raise AttentionUnavailableError(
            f"{NAME}: the attention at {model.tap.where} ran {len(seen)} times in one pass; expected once"
        )
    return forward.captured, seen[0]
