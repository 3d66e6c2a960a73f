"""The attention tap: reads and replaces the chosen query rows of an attention tensor as the model computes it.

Every adapter routes the attention tensor it intercepts (a forward hook's output, an intercepted softmax, the
``AttentionInterface`` weights) through ``AttentionTap.apply`` while a pass runs (``running``: a ``Pass``, and the
``Produced`` it records into).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from pytest_attnfaith.adapters.passes import Pass, Produced
from pytest_attnfaith.errors import AttentionUnavailableError, AttnFaithError


class AttentionTap:
    """Reads and replaces the chosen query rows of an attention tensor as the model computes it.

    An adapter's hook passes each attention tensor it intercepts through ``apply``. Accepted
    shapes: (n, Tk) — one distribution per instance; (n, Tk, 1); (n·H, Tq, Tk); (n, H, Tq, Tk).
    A query row's counterfactual lives on the keys it may see: an edited row that puts weight on
    a padded key, or (causal attention) on a later token, is restricted to the visible keys and
    renormalised (rows that need it only; uniform over them if nothing is left).
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.armed: Pass | None = None
        self.produced: Produced | None = None
        self.causal: bool | None = None  # read from the first square attention tensor seen (adapters may say)

    @contextlib.contextmanager
    def running(self, armed: Pass | None) -> Iterator[Produced]:
        """Execute ``armed`` while the block runs (None: read nothing), recording into a fresh ``Produced`` that
        counts layers from ``armed.first_layer``; the pass running before is back on exit."""
        produced = Produced(next_layer=armed.first_layer if armed is not None else 0)
        saved = self.armed, self.produced
        self.armed, self.produced = armed, (produced if armed is not None else None)
        try:
            yield produced
        finally:
            self.armed, self.produced = saved

    @contextlib.contextmanager
    def standing_in(self, packed: Pass) -> Iterator[None]:
        """Execute a shortcut's ``packed`` pass (the running pass's edit on other rows) in place of the running pass,
        whose product then holds what it read (``Produced.absorb``)."""
        outer = self.produced
        with self.running(packed) as inner:
            yield
        if outer is not None:
            outer.absorb(inner)

    def suspended(self) -> contextlib.AbstractContextManager[Produced]:
        """No pass runs inside the block (a verification's plain pass); the running one is back on exit."""
        return self.running(None)

    def start_at(self, layer: int) -> None:
        """The running pass goes on from attention layer ``layer`` (a shortcut runs the model from a cached layer)."""
        if self.produced is not None:
            self.produced.next_layer = layer

    def peek(self, native: Tensor) -> Tensor | None:
        """The rows the armed pass would read from ``native`` (another layer's attention), without editing."""
        armed = self.armed
        if armed is None:
            return None
        attn = self._as_4d(native, armed.size)
        self._check_keys(attn, armed)
        return armed.at.pool(armed.at.rows_of(attn).detach(), armed.real.shape[0])

    def apply(self, native: Tensor) -> Tensor:
        """``native`` with the running pass's edit written into its query rows (and those rows recorded)."""
        armed, produced = self.armed, self.produced
        if armed is None or produced is None:
            return native
        produced.calls += 1
        attn = self._as_4d(native, armed.size)
        self._check_keys(attn, armed)
        if self.causal is None and armed.causal is None:
            tq, tk = attn.shape[-2:]
            self.causal = tq == tk > 1 and bool((attn.detach().triu(1) == 0).all())
        rows = armed.at.rows_of(attn)
        produced.rows = armed.at.pool(rows.detach(), armed.real.shape[0])
        result = attn
        if armed.capture:
            result = produced.captured = attn.detach().requires_grad_(True)
        if armed.edit is not None:
            result = armed.at.write(result, self._edited(armed, rows, attn))
        if armed.detach:
            result = result.detach()
        if result is attn:
            return native
        return result.reshape(native.shape)

    def embed(self, output: Any) -> Tensor | None:
        """The embeddings' output (n, T, D) as the running pass has it: replaced (``Pass.embeddings``) and, when
        capturing, swapped for a leaf (``Produced.embeddings_leaf``); None: left as it is."""
        armed, produced = self.armed, self.produced
        if armed is None or produced is None or not armed.touches_embeddings:
            return None
        if not isinstance(output, Tensor) or output.dim() != 3:
            raise AttentionUnavailableError(
                f"the embeddings module returned {type(output).__name__} "
                f"{tuple(getattr(output, 'shape', ()))}; expected a tensor (B, T, D)"
            )
        if armed.embeddings is not None:
            replaced = armed.embeddings(output)
            if replaced.shape[::2] != output.shape[::2]:  # positions may be deleted (adapters.vision)
                shapes = f"{tuple(replaced.shape)}; expected {tuple(output.shape)}"
                raise AttnFaithError(f"the replaced embeddings have shape {shapes}")
            output = replaced.to(output.dtype)
        if not armed.capture_embeddings:
            return output
        leaf = produced.embeddings_leaf = output.detach().requires_grad_(True)
        return leaf

    def _check_keys(self, attn: Tensor, armed: Pass) -> None:
        tk = attn.shape[-1]
        if armed.at.keys is None and tk != armed.real.shape[1]:
            raise AttentionUnavailableError(
                f"the attention at {self.where} has {tk} key positions but the inputs have {armed.real.shape[1]} tokens; "
                "expected attention over the input tokens (self-attention over input_ids)"
            )

    def _edited(self, armed: Pass, rows: Tensor, attn: Tensor) -> Tensor:
        """The pairs' new rows (P, H, T): the edit, on the keys each row may see, on the heads it may touch."""
        assert armed.edit is not None
        at = armed.at
        visible = armed.mask[at.owner] & self._window(armed)
        edit = armed.edit.select(at.owner) if at.pooled else armed.edit
        new = _restricted(edit(rows, armed.real[at.owner] & visible).to(attn.dtype), visible)
        if armed.heads is None:
            return new
        heads = rows.shape[1]
        alone = torch.arange(heads, device=rows.device) == (armed.heads[at.owner] % heads)[:, None]
        return torch.where(alone[:, :, None], new, rows)

    def _window(self, armed: Pass) -> Tensor:
        """(P, T): the keys each pair's query may see under the layer's causal mask (all keys if it has none)."""
        length = armed.real.shape[1]
        causal = armed.causal if armed.causal is not None else self.causal
        tokens = torch.arange(length, device=armed.real.device)
        if not causal:
            return torch.ones(len(armed.at.owner), length, dtype=torch.bool, device=armed.real.device)
        return tokens[None, :] <= armed.at.position[:, None]

    def _as_4d(self, native: Tensor, size: int) -> Tensor:
        shape = tuple(native.shape)
        if native.dim() == 2 and shape[0] == size:
            return native.view(size, 1, 1, shape[1])
        if (
            native.dim() == 3
            and shape[0] == size
            and shape[2] == 1
            and self.armed is not None
            and shape[1] == self.armed.real.shape[1]
        ):
            return native.view(size, 1, 1, shape[1])
        if native.dim() >= 3:
            lead = 1
            for dim in shape[:-2]:
                lead *= dim
            if lead % size == 0:
                return native.reshape(size, lead // size, shape[-2], shape[-1])
        raise AttentionUnavailableError(
            f"the attention at {self.where} has shape {shape} for a batch of {size}; "
            "expected (B, T) or (B, H, Tq, Tk) (or (B·H, Tq, Tk) as computed inside nn.MultiheadAttention)"
        )


def _restricted(rows: Tensor, visible: Tensor) -> Tensor:
    """Rows (P, H, T) with weight off the visible keys (P, T) moved back onto them: zeroed and renormalised
    (uniform over the visible keys where nothing is left); rows without such weight are returned as they are."""
    inside = visible[:, None, :]
    leaks = torch.where(inside, torch.zeros_like(rows), rows).abs().sum(dim=-1, keepdim=True) > 0
    if not bool(leaks.any()):
        return rows
    kept = torch.where(inside, rows, torch.zeros_like(rows))
    total = kept.sum(dim=-1, keepdim=True)
    flat = inside.to(rows.dtype) / inside.sum(dim=-1, keepdim=True).clamp(min=1).to(rows.dtype)
    return torch.where(leaks, torch.where(total > 0, kept / total.clamp(min=torch.finfo(rows.dtype).tiny), flat), rows)
