"""Chunked evaluation in bounded memory: the one chunk loop of the package (adapters, explainers and checks)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def collect_chunks(total: int, size: int, compute: Callable[[slice], Tensor]) -> Tensor | None:
    """``compute(part)`` for each chunk of ``size`` rows of ``total``, written into one tensor (None if ``total`` is 0)."""
    out: Tensor | None = None
    for start in range(0, total, size):
        part = slice(start, min(start + size, total))
        out = write_chunk(out, part, compute(part), total)
    return out


def write_chunk(out: Tensor | None, part: slice, values: Tensor, total: int) -> Tensor:
    """Write one chunk's ``values`` into ``out[part]``; the first chunk allocates ``out`` for ``total`` rows.

    One allocation per result instead of a list of per-chunk tensors joined at the end: half the
    peak, and no small long-lived tensors left between the passes' large temporaries."""
    if out is None:
        out = values.new_empty((total, *values.shape[1:]))
    out[part] = values
    return out
