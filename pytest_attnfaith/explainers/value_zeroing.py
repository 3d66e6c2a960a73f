"""``value_zeroing``: Mohebbi, Zuidema, Chrupała & Alishahi (2023), *Quantifying Context Mixing in Transformers*.

At the chosen ``layer`` c, for each attended token j the value vector of j is set to zero in every head and
block c alone is run again on its original input (the layers below are untouched, as in the paper and in
inseq). The score of j for query i is the cosine distance between i's block output with and without:
C_ij = 1 − cos(x̃_i^{¬j}, x̃_i), each row then normalised to sum to 1 over j, read at the audit's query row
(``query``; ``"all"``: the mean over the real rows). Restricted to the real positions, renormalised.

Cost: one pass recording block c's input, then one run of block c per (instance, attended token), in chunks of
``batch_size`` rows. Needs the block's value vectors and its inputs: Hugging Face models on
``AttentionInterface`` (``adapters.internals``); elsewhere an ``AttentionUnavailableError``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.adapters import internals
from pytest_attnfaith.adapters.chunks import collect_chunks
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.explainers._derived import per_chunk, query_read
from pytest_attnfaith.session import Context

NAME = "explainer 'value_zeroing'"


def attribute(context: Context) -> Tensor:
    """Value-zeroing scores (B, T), float64, summing to 1 over the real positions."""
    return per_chunk(context, lambda batch, _: _scores(context, batch))


def _scores(context: Context, batch: Batch) -> Tensor:
    index = context.model.read_layer()
    _, layers = internals.record(context.model, batch, NAME, upto=index)
    layer = layers[-1]
    assert layer.block_output is not None
    clean = layer.block_output.detach()
    instance, zeroed = batch.attention_mask.to(clean.device).bool().nonzero(as_tuple=True)
    masks = torch.nn.functional.one_hot(zeroed, batch.length).bool()

    def distances(part: slice) -> Tensor:
        rows = instance[part]
        altered = internals.rerun_block(context.model, layer, rows, masks[part], NAME, index)
        return 1.0 - torch.nn.functional.cosine_similarity(altered.double(), clean[rows].double(), dim=-1)

    distance = collect_chunks(len(instance), context.options.batch_size, distances)
    assert distance is not None
    mixing = torch.zeros(batch.size, batch.length, batch.length, dtype=torch.float64, device=clean.device)
    mixing[instance, :, zeroed] = distance  # mixing[b, i, j]: query i, zeroed token j
    total = mixing.sum(dim=-1, keepdim=True)
    return query_read(context, batch, mixing / torch.where(total > 0, total, 1.0))
