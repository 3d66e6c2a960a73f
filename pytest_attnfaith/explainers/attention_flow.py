"""``attention_flow``: attention flow (Abnar & Zuidema 2020, *Quantifying Attention Flow in Transformers*).

The layers' attention, heads averaged, with the residual: Ā_l = ½ A_l + ½ I, is a layered graph — node (l, k)
is token k entering layer l, edge (l, k) → (l + 1, i) has capacity Ā_l[i, k]. The score of token j is the
maximum flow from (0, j) (the input token) to (c + 1, q), the audit's query row q (``query``; ``"all"``: the
mean over the real rows) after the chosen ``layer`` c; ``head`` is not used. Restricted to the real positions,
renormalised (the paper normalises each output's flows too).

Batched: the flow problems of every (query row, real source token) are disjoint copies of their instance's graph,
joined into one graph by a super-source (to each problem's source) and a super-sink (from each sink), both of
unbounded capacity; one call of ``scipy.sparse.csgraph.maximum_flow`` (Dinic) solves them all, and each problem's
max flow is the flow on its sink's edge (a maximum flow of disjoint components maximises each). Capacities are
integers: Ā scaled by 2²⁴ and rounded (flows exact to ~1e-6). Problems run in groups of about ``FLOW_EDGES`` edges.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from torch import Tensor

from pytest_attnfaith.adapters import internals
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.explainers._derived import per_chunk
from pytest_attnfaith.session import Context

NAME = "explainer 'attention_flow'"
SCALE = 2**24
FLOW_EDGES = 2_000_000


def attribute(context: Context) -> Tensor:
    """Max-flow scores (B, T), float64, summing to 1 over the real positions."""
    if len(context.model.layer_indices()) < 2:
        raise AttnFaithError(
            f"attention flow (Abnar & Zuidema) runs through the attention of successive layers: {context.model.tap.where} "
            "is the model's one attention layer; use explainer='attention'"
        )
    return per_chunk(context, lambda batch, _: _scores(context, batch))


def _scores(context: Context, batch: Batch) -> Tensor:
    _, layers = internals.record(context.model, batch, NAME, upto=context.model.read_layer())
    stacked = torch.stack([layer.weights.detach().double().mean(dim=1) for layer in layers], dim=1)  # (n, L, T, T)
    eye = torch.eye(batch.length, dtype=torch.float64, device=stacked.device)
    residual = (0.5 * stacked + 0.5 * eye).cpu().numpy()
    at = context.model.query_rows(batch)
    real = batch.real.cpu().numpy()
    owner, query = at.owner.cpu().numpy(), at.query.cpu().numpy()
    pairs, sources = np.nonzero(real[owner])  # one flow problem per (query pair, real source token)
    flows = np.zeros((len(owner), batch.length))
    per_problem = max(_edges(residual.shape[1], batch.length), 1)
    step = max(FLOW_EDGES // per_problem, 1)
    for start in range(0, len(pairs), step):
        part = slice(start, start + step)
        flows[pairs[part], sources[part]] = max_flows(residual[owner[pairs[part]]], sources[part], query[pairs[part]])
    rows = torch.from_numpy(flows).to(batch.real.device)
    return at.pool(rows[:, None], batch.size)[:, 0]


def _edges(layers: int, length: int) -> int:
    return 2 * length + max(layers - 2, 0) * length * length


def max_flows(graphs: np.ndarray, sources: np.ndarray, sinks: np.ndarray) -> np.ndarray:
    """Per problem k, the max flow from token ``sources[k]`` before layer 0 to token ``sinks[k]`` after the last layer
    of ``graphs[k]`` (L, T, T) (row i, column k: capacity from k below to i above), as one disjoint union."""
    count, layers, length, _ = graphs.shape
    inner = (layers - 1) * length  # nodes (1..L-1, t); the source and the sink are nodes of their own
    size = inner + 2
    first, last = np.arange(count) * size, np.arange(count) * size + size - 1
    heads: list[np.ndarray] = []
    tails: list[np.ndarray] = []
    caps: list[np.ndarray] = []

    def add(tail: np.ndarray, head: np.ndarray, cap: np.ndarray) -> None:
        keep = cap > 0
        tails.append(tail[keep])
        heads.append(head[keep])
        caps.append(cap[keep])

    token = np.arange(length)
    problem = np.arange(count)[:, None]
    if layers == 1:
        add(first, last, graphs[problem[:, 0], 0, sinks, sources])
    else:
        add(np.repeat(first, length), (first[:, None] + 1 + token).ravel(), graphs[problem, 0, :, sources[:, None]].ravel())
        for layer in range(1, layers - 1):
            below = first[:, None, None] + 1 + (layer - 1) * length + token[None, None, :]
            above = first[:, None, None] + 1 + layer * length + token[None, :, None]
            add(
                np.broadcast_to(below, graphs[:, layer].shape).ravel(),
                np.broadcast_to(above, graphs[:, layer].shape).ravel(),
                graphs[:, layer].ravel(),
            )
        below = first[:, None] + 1 + (layers - 2) * length + token
        add(below.ravel(), np.repeat(last, length), graphs[problem, layers - 1, sinks[:, None], token].ravel())
    source, sink = count * size, count * size + 1
    unbounded = np.full(count, 4.0)  # above any flow: each sink's inflow is at most 1
    add(np.full(count, source), first, unbounded)
    add(last, np.full(count, sink), unbounded)
    capacity = np.rint(np.concatenate(caps) * SCALE).astype(np.int32)
    graph = csr_matrix((capacity, (np.concatenate(tails), np.concatenate(heads))), shape=(sink + 1, sink + 1))
    flow = maximum_flow(graph, source, sink).flow.tocoo()
    into = flow.col == sink
    inflow = np.zeros(sink + 1)
    inflow[flow.row[into]] = flow.data[into]
    return inflow[last] / SCALE
