"""``attention_norm``: norm-based attention (Kobayashi, Kuribayashi, Yokoi & Inui 2020, *Attention is Not Only a
Weight: Analyzing Transformers with Vector Norms*).

An attention layer's output at query i is Σ_h Σ_j α^h_ij f^h(x_j) (plus the projection's bias), with
f^h(x_j) = v^h_j W_o^h the value vector of token j in head h through that head's slice of the output
projection. The score of token j is the norm of its whole contribution, heads summed as the paper's
``||Σαf(x)||``: s_j = ‖Σ_h α^h_qj f^h(x_j)‖₂, at the chosen ``layer`` and the audit's query row q (``query``;
``"all"``: the mean over the real rows); ``head`` is not used. Restricted to the real positions, renormalised.

Needs each layer's value vectors and output projection: Hugging Face models on ``AttentionInterface``
(``adapters.internals``); elsewhere an ``AttentionUnavailableError`` naming what is missing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.adapters import internals
from pytest_attnfaith.adapters.context import Context
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.explainers._derived import per_chunk

NAME = "explainer 'attention_norm'"


def attribute(context: Context) -> Tensor:
    """s (B, T), float64, summing to 1 over the real positions."""
    return per_chunk(context, lambda batch, _: _norms(context, batch))


def _norms(context: Context, batch: Batch) -> Tensor:
    _, layers = internals.record(context.model, batch, NAME, upto=context.model.read_layer())
    layer = layers[-1]
    at = context.model.query_rows(batch.to(layer.weights.device))
    weights = at.rows_of(layer.weights.detach())  # (P, H, T)
    owner = at.owner if at.batch is None else at.batch
    vectors = torch.einsum("pht,phtd->ptd", weights.double(), layer.transformed()[owner].double())
    return at.pool(vectors.norm(dim=-1)[:, None], batch.size)[:, 0]
