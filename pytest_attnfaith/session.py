"""The session of one audit: the only owner of its state, shared by the explainers and the checks.

``opened(model, inputs, options)`` opens it: the adapter in session (the model restored on exit), the batch on its
device, the attention sink excluded or kept (decided once, here), and the reference forward pass (original
attention, original output; its attention checked to be a distribution). ``Context`` carries the audit's options,
that sink decision, the reference pass and the memo of what is computed once per inputs. The adapters below it
receive only what a pass reads and replaces (their ``Reading``), never the options."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters import as_attention_model, prepare_batch
from pytest_attnfaith.adapters.base import AttentionModel
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.adapters.outputs import check_distribution
from pytest_attnfaith.adapters.passes import Edit, Forward
from pytest_attnfaith.adapters.sink import exclude_sink, excluded
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import restrict
from pytest_attnfaith.options import Options

Value = TypeVar("Value")

BACKWARD_COST = 4
"""A pass that backpropagates to the embeddings keeps every activation of the model: measured on J&W's
BiLSTM (``benchmarks/RESULTS.md``), a gradient pass over 64 rows peaks near the resident memory of a
plain pass over 256 rows. Such passes run ``batch_size // 4`` rows, so ``batch_size`` bounds memory
alike. (The adversarial search backpropagates only through what the attention feeds.)"""


@dataclass
class Context:
    """One audit's shared state. ``explanation`` is the (B, T) scoring under test (None: the attention read);
    ``memo`` holds what is computed once and reused by every explanation tested on the same inputs
    (``dataclasses.replace(context, explanation=...)`` keeps the same dict); ``sink_excluded``: whether the session
    excluded the first attended token (``sink`` option) from the batch."""

    model: AttentionModel
    batch: Batch
    options: Options
    reference: Forward
    explanation: Tensor | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    sink_excluded: bool = False

    def remember(self, key: str, compute: Callable[[], Value]) -> Value:
        """``compute()`` once per context, under ``key``: what depends on the inputs alone, not on the scores
        under test (an explainer's importance, a check's counterfactual values). The per-head atlas pre-fills
        it with what does not depend on the head."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]  # type: ignore[no-any-return]

    @property
    def probs(self) -> Tensor:
        """p (B, C), float64: the output distribution of the reference pass."""
        return self.reference.probs

    @property
    def real(self) -> Tensor:
        return self.batch.real.to(self.probs.device)

    @property
    def real_count(self) -> Tensor:
        return self.real.sum(dim=1)

    @property
    def attention(self) -> Tensor:
        """α̂ (B, T), float64: the read attention restricted to the real positions, renormalised."""
        return restrict(self.reference.attention.double(), self.real)

    @property
    def scores(self) -> Tensor:
        """The scoring the agreement and ERASER checks test: the explanation, else the attention read."""
        return self.explanation if self.explanation is not None else self.attention

    @property
    def predicted(self) -> Tensor:
        return self.probs.argmax(dim=1)

    def generator(self, purpose: str) -> torch.Generator:
        """A CPU generator seeded from the audit seed and ``purpose`` (same seed, same draws)."""
        return torch.Generator().manual_seed(self.seed(purpose))

    def seed(self, purpose: str) -> int:
        """An integer seed derived from the audit seed and ``purpose`` (a check's name, "interval:<check>", ...)."""
        offset = sum(ord(c) * (i + 1) for i, c in enumerate(purpose))
        return self.options.seed * 1_000_003 + offset

    @property
    def backward_rows(self) -> int:
        """Rows per pass that backpropagates to the embeddings: ``batch_size // BACKWARD_COST`` (at least 1)."""
        return max(self.options.batch_size // BACKWARD_COST, 1)

    def defined(self) -> np.ndarray:
        """Instances with at least two real positions (a counterfactual exists)."""
        return (self.real_count >= 2).cpu().numpy()

    def run_rows(
        self,
        total: int,
        make: Callable[[slice], tuple[Batch, Edit | None]],
        read: Callable[[Forward, slice], Tensor] | None = None,
    ) -> Tensor:
        """``read(forward, part)`` (default: the output distributions) of ``total`` derived rows, chunk by chunk."""
        out = self.model.run_rows(total, make, read)
        if out is None:
            return torch.zeros(0, self.probs.shape[1], dtype=self.probs.dtype, device=self.probs.device)
        return out.to(self.probs.device)

    def run_removed(self, instances: Tensor, removed: Tensor, how: str, option: str, classes: Tensor | None = None) -> Tensor:
        """The output of instance ``instances[i]`` with the positions where ``removed[i]`` (n, T) is true removed:
        ``how="delete"`` deletes them (the rest shifted left, the row T − r long, as leave-one-out deletes),
        ``"mask"`` replaces their ids with the model's mask (or pad) token. Returns the distributions (n, C), or
        with ``classes`` (n,) the probability of each row's class (n,). A row left with no visible position (every
        one deleted) is not run: NaN. Deleted rows run in groups of equal length. ``option`` names the option that
        chose ``how``, for its error."""
        batch = self.batch
        instances, removed = instances.to(batch.input_ids.device), removed.to(batch.input_ids.device)
        token = self.removal_token(option) if how == "mask" else None

        def edit(rows: Tensor) -> Batch:
            if token is not None:
                return batch.replaced(instances[rows], removed[rows], token)
            return batch.without(instances[rows], removed[rows])

        if token is not None:
            groups = [torch.arange(len(instances), device=instances.device)]
        else:
            visible = (batch.attention_mask.bool()[instances] & ~removed).any(dim=1)
            lengths = torch.where(visible, batch.length - removed.sum(dim=1), -1)
            groups = [(lengths == length).nonzero().squeeze(1) for length in lengths.unique().tolist() if length >= 0]
        shape = (len(instances),) if classes is not None else (len(instances), self.probs.shape[1])
        out = torch.full(shape, float("nan"), dtype=self.probs.dtype, device=self.probs.device)
        for group in groups:
            if len(group):
                out[group.to(out.device)] = self.run_rows(len(group), _chunks_of(group, edit), _picker(classes, group))
        return out

    def removal_token(self, option: str) -> int:
        """The id that replaces a removed token (``<option>="mask"``): the model's mask, else pad token."""
        token = self.model.mask_token_id()
        if token is None:
            raise AttnFaithError(
                f"option {option}='mask' needs a mask or pad token id: this model has none; "
                f"set mask_token_id or use {option}='delete'"
            )
        return token


@contextlib.contextmanager
def opened(model: Any, inputs: Any, options: Options) -> Iterator[Context]:
    """The audit's session on ``model`` and ``inputs``: adapter in session, batch on its device, the reference
    pass (its attention checked to be a distribution), the sink excluded per ``sink``; the model restored on exit."""
    adapter = as_attention_model(model)
    batch = prepare_batch(inputs)
    with adapter.session(options):
        batch = batch.to(adapter.device)
        adapter.check_inputs(batch)
        sink = excluded(options.sink, adapter.attention_is_causal(batch))
        if sink:
            batch = exclude_sink(batch)
        reference = adapter.forward_chunked(batch, record_layers=options.per_head)
        check_distribution(reference, batch, adapter.tap.where)
        yield Context(adapter, batch, options, reference, sink_excluded=sink)


def _chunks_of(rows: Tensor, edit: Callable[[Tensor], Batch]) -> Callable[[slice], tuple[Batch, Edit | None]]:
    """A ``run_rows`` maker of the edited rows ``rows[part]`` (no attention edit)."""
    return lambda part: (edit(rows[part]), None)


def _picker(classes: Tensor | None, rows: Tensor) -> Callable[[Forward, slice], Tensor] | None:
    """A ``run_rows`` reader of the probability of ``classes[rows]`` for each row (None: the whole distribution)."""
    if classes is None:
        return None
    picked = classes[rows.to(classes.device)]

    def pick(forward: Forward, part: slice) -> Tensor:
        return forward.probs.gather(1, picked[part].to(forward.probs.device).unsqueeze(1)).squeeze(1)

    return pick
