"""What one pass reads and replaces, and what it produced.

``Edit``: a counterfactual (a function of the read rows and per-instance parameters). ``QueryRows``: where the read
query rows sit in the attention tensor a layer computes. ``_Armed``: the description of one pass the tap executes
(rows, edit, heads, causality, capture) and the rows it read. ``Forward``: what the pass produced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

EditFn = Callable[..., Tensor]


@dataclass
class Edit:
    """A counterfactual: ``fn(rows, real, **params)`` returns the new rows (n, H, Tk).

    ``params`` are per-instance tensors aligned with the batch, sliced along with it.
    """

    fn: EditFn
    params: dict[str, Tensor] = field(default_factory=dict)

    def chunk(self, part: slice) -> Edit:
        return Edit(self.fn, {name: value[part] for name, value in self.params.items()})

    def select(self, index: Tensor) -> Edit:
        """The edit of instances ``index`` (in that order, repeats allowed)."""
        return Edit(self.fn, {name: value[index.to(value.device)] for name, value in self.params.items()})

    def __call__(self, rows: Tensor, real: Tensor) -> Tensor:
        return self.fn(rows, real, **self.params)


@dataclass
class Forward:
    """One forward pass: output distribution (n, C), attention rows read (n, H, Tk) before any
    edit, the distribution the checks use (n, Tk), and the embeddings' output when captured.

    ``layer_rows``: with ``record_layers``, the rows read at every layer that ran (layer → (n, H, Tk));
    ``captured``: with ``capture_attention``, the chosen layer's whole attention (n, H, Tq, Tk) as a leaf of the
    graph, so that gradients of the output reach it."""

    probs: Tensor
    rows: Tensor
    attention: Tensor
    embeddings: Tensor | None = None
    gap: Tensor | None = None  # binary outputs: log p₁ − log p₀ from the logits, exact where p saturates
    layer_rows: dict[int, Tensor] | None = None
    captured: Tensor | None = None


@dataclass
class QueryRows:
    """Where the read query rows sit in the attention tensor (m, H, Tq, Tk) that a layer computes.

    One *pair* per query row read: ``owner[p]`` the instance it belongs to (an instance's read row is the mean
    over its pairs), ``query[p]`` its index on the tensor's query axis, ``position[p]`` the token it is in the
    instance (for a causal mask), ``batch[p]`` its row of the tensor (None: ``owner``), ``keys[p, t]`` the key
    column that holds token t (None: column t). ``pooled``: some instance has several pairs."""

    owner: Tensor
    query: Tensor
    position: Tensor
    batch: Tensor | None = None
    keys: Tensor | None = None
    pooled: bool = False

    @classmethod
    def one_per_instance(cls, query: Tensor) -> QueryRows:
        return cls(owner=torch.arange(len(query), device=query.device), query=query, position=query)

    @classmethod
    def every_real_row(cls, real: Tensor, mask: Tensor) -> QueryRows:
        """Every real query row (an instance without one: its first attended row), for ``query="all"``."""
        rows = real | (~real.any(dim=1, keepdim=True) & (mask.cumsum(dim=1) == 1) & mask)
        rows[~rows.any(dim=1), 0] = True
        owner, position = rows.nonzero(as_tuple=True)
        return cls(owner=owner, query=position, position=position, pooled=True)

    def rows_of(self, native: Tensor) -> Tensor:
        """The pairs' rows (P, H, T) of the attention tensor, one column per token."""
        batch = self.owner if self.batch is None else self.batch
        rows = native[batch, :, self.query.clamp(max=native.shape[-2] - 1), :]
        if self.keys is not None:
            rows = rows.gather(-1, self.keys[:, None, :].expand(-1, rows.shape[1], -1))
        return rows

    def write(self, native: Tensor, rows: Tensor) -> Tensor:
        """A copy of the attention tensor with the pairs' rows replaced by ``rows`` (P, H, T)."""
        if self.keys is not None:
            index = self.keys[:, None, :].expand(-1, rows.shape[1], -1)
            rows = rows.new_zeros(rows.shape[:2] + native.shape[-1:]).scatter(-1, index, rows)
        batch = self.owner if self.batch is None else self.batch
        result = native.clone()
        result[batch, :, self.query.clamp(max=native.shape[-2] - 1)] = rows
        return result

    def pool(self, rows: Tensor, size: int) -> Tensor:
        """Per instance, the mean of its pairs' rows: (P, H, T) → (size, H, T)."""
        if not self.pooled:
            return rows
        total = rows.new_zeros((size, *rows.shape[1:])).index_add_(0, self.owner, rows)
        count = torch.bincount(self.owner, minlength=size).clamp(min=1).to(rows.dtype)
        return total / count[:, None, None]

    def select(self, index: Tensor) -> QueryRows:
        """The pairs of instances ``index`` (one pair per instance), renumbered 0..len(index)-1."""
        assert not self.pooled and self.batch is None and self.keys is None
        return QueryRows.one_per_instance(self.query[index])


@dataclass
class _Armed:
    """What the tap does during one pass. ``heads[i]``: the only head instance i's edit touches (None: every
    head); ``causal``: whether the layer masks future keys (None: read it from the weights); ``capture``: hand
    the attention on as a leaf of the graph (``captured``)."""

    size: int
    at: QueryRows
    real: Tensor
    mask: Tensor
    edit: Edit | None
    detach: bool
    heads: Tensor | None = None
    causal: bool | None = None
    capture: bool = False
    calls: int = 0
    rows: Tensor | None = None
    captured: Tensor | None = None

    def repacked(self, size: int, at: QueryRows, causal: bool) -> _Armed:
        """The same edit on ``size`` other query rows (``at``), with fresh counters: a shortcut's pass."""
        return _Armed(
            size=size, at=at, real=self.real, mask=self.mask, edit=self.edit, detach=self.detach, heads=self.heads, causal=causal
        )

    def select(self, index: Tensor) -> _Armed:
        """The same pass for instances ``index`` only (one pair per instance)."""
        return _Armed(
            size=len(index),
            at=self.at.select(index),
            real=self.real[index],
            mask=self.mask[index],
            edit=self.edit.select(index) if self.edit is not None else None,
            detach=self.detach,
            heads=self.heads[index] if self.heads is not None else None,
            causal=self.causal,
        )
