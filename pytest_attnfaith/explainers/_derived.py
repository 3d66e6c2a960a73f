"""What the attention-derived explainers share: per-chunk evaluation over the instances, and reading the audit's
query row(s) out of a (n, Tq, Tk) matrix of token-to-token scores."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pytest_attnfaith.adapters.chunks import collect_chunks
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.metrics import restrict
from pytest_attnfaith.session import Context


def per_chunk(context: Context, compute: Callable[[Batch, slice], Tensor], *, rows: int | None = None) -> Tensor:
    """``compute(chunk, part)`` (n, T) over the batch, ``rows`` instances at a time (default ``batch_size``; ``part``:
    the chunk's rows), as float64 scores restricted to the real positions and renormalised to sum to 1 (0 elsewhere;
    all 0 stays 0)."""
    batch, device = context.batch, context.probs.device
    out = collect_chunks(
        batch.size, rows or context.options.batch_size, lambda part: compute(batch.select(part), part).to(device)
    )
    assert out is not None
    return restrict(torch.where(context.real, out.double(), 0.0), context.real)


def query_read(context: Context, batch: Batch, matrix: Tensor) -> Tensor:
    """The audit's query row(s) of ``matrix`` (n, Tq, Tk) per instance (n, Tk): the first or last real token, a
    given position, or with ``query="all"`` the mean over every real row."""
    at = context.model.query_rows(batch.to(matrix.device))
    return at.pool(at.rows_of(matrix[:, None]), matrix.shape[0])[:, 0]
