"""The state one audit shares between explainers and checks: the adapter in session, the batch on its
device, the options, and the reference forward pass (original attention, original output)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters.base import AttentionModel, Edit, Forward
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.metrics import restrict
from pytest_attnfaith.options import Options

T = TypeVar("T")

BACKWARD_COST = 4
"""A pass that backpropagates to the embeddings keeps every activation of the model: measured on J&W's
BiLSTM (``benchmarks/RESULTS.md``), a gradient pass over 64 rows peaks near the resident memory of a
plain pass over 256 rows. Such passes run ``batch_size // 4`` rows, so ``batch_size`` bounds memory
alike. (The adversarial search backpropagates only through what the attention feeds.)"""


@dataclass
class Context:
    """One audit's shared state. ``explanation`` is the (B, T) scoring under test (None: the attention read)."""

    model: AttentionModel
    batch: Batch
    options: Options
    reference: Forward
    explanation: Tensor | None = None
    memo: dict[str, Any] = field(default_factory=dict)

    def remember(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per context, under ``key``: what depends on the context alone (a check's per-instance
        values, an explainer's importance). The per-head atlas pre-fills it with what does not depend on the head."""
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
