"""The session of one audit: the only owner of its state, shared by the explainers and the checks.

``opened(model, inputs, options)`` opens it: the adapter in session (the model restored on exit), the batch on its
device, the attention sink excluded or kept (decided once, here), and the reference forward pass (original
attention, original output; its attention checked to be a distribution). ``Context`` carries the audit's options,
that sink decision, the reference pass and the memo of what is computed once per inputs. The adapters below it
receive only what a pass reads and replaces (their ``Reading``), never the options."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters import as_attention_model, prepare_batch, vision
from pytest_attnfaith.adapters.base import AttentionModel
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.adapters.outputs import check_distribution
from pytest_attnfaith.adapters.passes import Edit, Forward
from pytest_attnfaith.adapters.sink import exclude_sink, excluded
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import class_score, default_resolution, relative_change, restrict, runner_up, tolerance
from pytest_attnfaith.options import Options

Value = TypeVar("Value")

BACKWARD_COST = 4
"""A pass that backpropagates to the embeddings keeps every activation of the model: measured on J&W's
BiLSTM (``benchmarks/RESULTS.md``), a gradient pass over 64 rows peaks near the resident memory of a
plain pass over 256 rows. Such passes run ``batch_size // 4`` rows, so ``batch_size`` bounds memory
alike. (The adversarial search backpropagates only through what the attention feeds.)"""


EDITED_CHUNKS = 16
"""``Context.run_removed`` edits and runs its rows in parts of ``16 × batch_size``: the edited inputs and the keys that
find identical ones are built per part (leave-one-out of 1,000 instances of 24 tokens held 26 MB of them at once)."""


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
    def logits(self) -> Tensor:
        """z (B, K), float64: the logits of the reference pass (the ``targets``' columns)."""
        return self.reference.logits

    @property
    def rivals(self) -> Tensor:
        """Per instance, the runner-up class on the unedited input (the other side of the margin)."""
        return runner_up(self.logits, self.predicted)

    @property
    def resolution(self) -> float:
        """The ``resolution`` option, else ``metrics.default_resolution`` of the model's dtype."""
        if self.options.resolution is not None:
            return self.options.resolution
        return default_resolution(self.model.dtype)

    @property
    def tolerance(self) -> Tensor:
        """Per instance, the smallest change of its logits that is not rounding (B,): resolution × max |z|."""
        return tolerance(self.logits, self.resolution)

    def effect(self, logits: Tensor, instances: Tensor) -> Tensor:
        """The effect on instance ``instances[i]``'s output of the counterfactual whose logits are ``logits[i]``, on
        the ``scale`` option (``metrics.relative_change``: relative margin change, or TVD), 0 below the resolution."""
        instances = instances.to(self.logits.device)
        return relative_change(
            self.logits[instances],
            logits.to(self.logits.device),
            self.predicted[instances],
            self.options.scale,
            self.tolerance[instances],
        )

    def score(self, logits: Tensor, instances: Tensor) -> Tensor:
        """The output score of instance ``instances[i]``'s predicted class in ``logits[i]``: its margin, or (``scale=
        "probability"``) its probability."""
        instances = instances.to(logits.device)
        return class_score(logits, self.predicted.to(logits.device)[instances], self.options.scale)

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
        """``read(forward, part)`` (default: the logits, float64) of ``total`` derived rows, chunk by chunk."""
        out = self.model.run_rows(total, make, read)
        if out is None:
            return torch.zeros(0, self.logits.shape[1], dtype=self.logits.dtype, device=self.logits.device)
        return out.to(self.logits.device)

    def run_removed(self, instances: Tensor, removed: Tensor, how: str, option: str, scored: bool = False) -> Tensor:
        """The output of instance ``instances[i]`` with the positions where ``removed[i]`` (n, T) is true removed:
        ``how="delete"`` deletes them (the rest shifted left, the row T − r long, as leave-one-out deletes),
        ``"mask"`` replaces their ids with the model's mask (or pad) token. Returns the logits (n, K), or with
        ``scored`` the score of the instance's predicted class (n,) (``Context.score``). A row left with no visible
        position (every one deleted) is not run: NaN. Identical edited inputs run once and share their output
        (deleting either word of "terrible terrible" is one input, within a part of ``EDITED_CHUNKS`` chunks); deleted
        rows run in groups of equal length.
        ``option`` names the option that chose ``how``, for its error."""
        batch = self.batch
        instances, removed = instances.to(batch.device), removed.to(batch.device)
        token = self.removal_token(option) if how == "mask" and batch.input_ids is not None else None

        def edit(rows: Tensor) -> Batch:
            if how == "mask":  # without token ids: the positions' embeddings replaced by the baseline
                return batch.replaced(instances[rows], removed[rows], token)
            return batch.without(instances[rows], removed[rows])

        if how == "mask":
            groups = [torch.arange(len(instances), device=instances.device)]
        else:
            visible = (batch.attention_mask.bool()[instances] & ~removed).any(dim=1)
            lengths = torch.where(visible, batch.length - removed.sum(dim=1), -1)
            groups = [(lengths == length).nonzero().squeeze(1) for length in lengths.unique().tolist() if length >= 0]
        out = torch.full((len(instances), self.logits.shape[1]), float("nan"), dtype=torch.float64, device=self.logits.device)
        for group in groups:  # in parts of EDITED_CHUNKS chunks, so that the edited inputs held at once are bounded
            for part in group.split(self.options.batch_size * EDITED_CHUNKS):
                distinct, inverse = _distinct(instances[part], edit(part))
                outputs = self.run_rows(distinct.size, _rows_of(distinct))
                out[part.to(out.device)] = outputs[inverse.to(outputs.device)]
        if scored:
            return self.score(out, instances)
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
    pass (its attention checked to be a distribution), the sink excluded per ``sink``, torch's RNG forked and seeded
    from ``seed``; the model restored on exit."""
    adapter = as_attention_model(model)
    ids = not isinstance(inputs, Mapping) or "input_ids" in inputs  # without ids the session counts the positions
    batch = prepare_batch(inputs) if ids else None
    with adapter.session(options), seeded(options.seed, adapter.device):
        batch = (batch or vision.prepare_positions(inputs, adapter.count_positions)).to(adapter.device)
        adapter.check_inputs(batch)
        sink = excluded(options.sink, adapter.attention_is_causal(batch))
        if sink:
            batch = exclude_sink(batch)
        reference = adapter.forward_chunked(batch, record_layers=options.per_head)
        check_distribution(reference, batch, adapter.tap.where)
        yield Context(adapter, batch, options, reference, sink_excluded=sink)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global RNG forked and seeded from ``seed`` (restored on exit): a forward with randomness in it gives
    the same report for the same seed."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _distinct(instances: Tensor, edited: Batch) -> tuple[Batch, Tensor]:
    """The distinct rows of ``edited`` (the first of each group of identical inputs of the same instance), and each
    row's index among them (n,). Rows edited on the embeddings (inputs without token ids) are kept apart."""
    if edited.input_ids is None:
        return edited, torch.arange(len(instances), device=instances.device)
    columns = [instances.unsqueeze(1), edited.input_ids, edited.attention_mask.long()]
    columns += [value.reshape(len(instances), -1).long() for value in edited.per_token.values() if not value.is_floating_point()]
    if any(value.is_floating_point() for value in edited.per_token.values()):  # float inputs: keep every row apart
        columns.append(torch.arange(len(instances), device=instances.device).unsqueeze(1))
    key = torch.cat([c.to(instances.device) for c in columns], dim=1)
    unique, inverse = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((len(unique),), len(instances), dtype=torch.long, device=key.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(instances), device=key.device), reduce="amin")
    return edited.select(first.to(edited.device)), inverse


def _rows_of(batch: Batch) -> Callable[[slice], tuple[Batch, Edit | None]]:
    """A ``run_rows`` maker of the rows of ``batch`` (no attention edit)."""
    return lambda part: (batch.select(part), None)
