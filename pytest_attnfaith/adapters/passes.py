"""What one pass reads and replaces, and what it produced.

``Edit``: a counterfactual (a function of the read rows and per-instance parameters). ``QueryRows``: where the read
query rows sit in the attention tensor a layer computes. ``Pass``: the frozen description of one pass (layer, rows,
edit, heads, causality, capture) that the tap executes; ``Produced``: what the tap read while it ran. ``Forward``:
what the adapter returns for the pass.
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
    edit, the distribution the checks use (n, Tk), the logits, and the embeddings' output when captured.

    ``layer_rows``: with ``record_layers``, the rows read at every layer that ran (layer → (n, H, Tk));
    ``captured``: with ``capture_attention``, the chosen layer's whole attention (n, H, Tq, Tk) as a leaf of the
    graph, so that gradients of the output reach it."""

    probs: Tensor
    rows: Tensor
    attention: Tensor
    logits: Tensor  # (n, K) float64: the logits the output is made of (``targets``' columns; K = 1 for one binary logit)
    embeddings: Tensor | None = None
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


@dataclass(frozen=True)
class Pass:
    """What one pass reads and replaces; the adapter executes it and never changes it.

    ``at``: the query rows read (and replaced) at ``layer``, the layer the options chose; ``edit``: the counterfactual
    written into them (None: read only); ``heads[i]``: the only head instance i's edit touches (None: every head);
    ``causal``: whether the layer masks future keys (None: read it from the weights); ``capture``: hand the attention
    on as a leaf of the graph; ``embeddings``: what replaces the embeddings' output; ``capture_embeddings``: hand it on
    as a leaf; ``record_layers``: also read the query rows of every layer that runs; ``reference``: the reference pass,
    whose by-products (a causal decoder's keys and values) later passes may reuse; ``first_layer``: the layer the pass
    starts from (a shortcut's pass over cached hidden states)."""

    size: int
    at: QueryRows
    real: Tensor
    mask: Tensor
    edit: Edit | None = None
    detach: bool = False
    heads: Tensor | None = None
    causal: bool | None = None
    layer: int = 0
    capture: bool = False
    capture_embeddings: bool = False
    embeddings: Callable[[Tensor], Tensor] | None = None
    record_layers: bool = False
    reference: bool = False
    first_layer: int = 0

    @property
    def touches_embeddings(self) -> bool:
        """Whether the pass replaces or differentiates the embeddings (no shortcut may skip them)."""
        return self.capture_embeddings or self.embeddings is not None

    def repacked(self, size: int, at: QueryRows, *, causal: bool, first_layer: int) -> Pass:
        """The same edit on ``size`` other query rows (``at``), from ``first_layer``: a shortcut's pass."""
        return Pass(
            size=size,
            at=at,
            real=self.real,
            mask=self.mask,
            edit=self.edit,
            detach=self.detach,
            heads=self.heads,
            causal=causal,
            layer=self.layer,
            first_layer=first_layer,
        )

    def select(self, index: Tensor) -> Pass:
        """The same pass for instances ``index`` only (one pair per instance), from the first layer."""
        return Pass(
            size=len(index),
            at=self.at.select(index),
            real=self.real[index],
            mask=self.mask[index],
            edit=self.edit.select(index) if self.edit is not None else None,
            detach=self.detach,
            heads=self.heads[index] if self.heads is not None else None,
            causal=self.causal,
            layer=self.layer,
        )


@dataclass
class Produced:
    """What one pass produced: ``calls``, how often the read attention was computed (once, in a sound pass);
    ``rows`` (n, H, Tk), the query rows read before any edit; ``captured`` / ``embeddings_leaf``, the leaves handed
    on; ``layer_rows``, with ``record_layers``, the rows read at every layer that ran; ``next_layer``, the index of
    the next attention layer to run (``Pass.first_layer`` at the start; a shortcut that runs the model from a cached
    layer sets it); ``recorded``, every layer's weights up to the read one (rollout)."""

    calls: int = 0
    rows: Tensor | None = None
    captured: Tensor | None = None
    embeddings_leaf: Tensor | None = None
    layer_rows: dict[int, Tensor] = field(default_factory=dict)
    next_layer: int = 0
    recorded: list[Tensor] = field(default_factory=list)

    def absorb(self, inner: Produced) -> None:
        """Count a shortcut's pass (run for this one) as this pass's reading."""
        self.calls += inner.calls
        self.rows = inner.rows
