"""What every check shares: the audit context (reference pass, seeded generator) and the two
ways a check turns per-instance values into a verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters import AttentionModel, Batch, Edit, Forward
from pytest_attnfaith.metrics import kendall_tau, nan_summary, restrict
from pytest_attnfaith.options import Options
from pytest_attnfaith.results import CheckResult, RaggedRows

BACKWARD_COST = 4
"""A pass that backpropagates to the embeddings keeps every activation of the model: measured on J&W's
BiLSTM (``benchmarks/RESULTS.md``), a gradient pass over 64 rows peaks near the resident memory of a
plain pass over 256 rows. The gradient check runs ``batch_size // 4`` rows, so ``batch_size`` bounds
memory alike. (The adversarial search backpropagates only through what the attention feeds.)"""


@dataclass
class Context:
    """One audit's shared state: the adapter in session, the batch on its device, the options,
    and the reference forward pass (original attention, original output)."""

    model: AttentionModel
    batch: Batch
    options: Options
    reference: Forward

    @property
    def probs(self) -> Tensor:
        return self.reference.probs

    @property
    def real(self) -> Tensor:
        return self.batch.real.to(self.probs.device)

    @property
    def real_count(self) -> Tensor:
        return self.real.sum(dim=1)

    @property
    def attention(self) -> Tensor:
        """α̂: the read attention restricted to the real positions, renormalised (B, T)."""
        return restrict(self.reference.attention.float(), self.real)

    @property
    def predicted(self) -> Tensor:
        return self.probs.argmax(dim=1)

    def generator(self, check: str) -> torch.Generator:
        """A CPU generator seeded from the audit seed and the check's name (same seed, same draws)."""
        offset = sum(ord(c) * (i + 1) for i, c in enumerate(check))
        return torch.Generator().manual_seed(self.options.seed * 1_000_003 + offset)

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


def tau_result(
    context: Context, name: str, importance: Tensor, threshold: float, meaning: str, details: dict[str, Any] | None = None
) -> CheckResult:
    """Kendall τ-b between attention and an importance per instance; fails when mean τ < threshold."""
    real = context.real.cpu()
    tau, pvalue = kendall_tau(context.attention.cpu(), importance.detach().float().cpu(), real)
    summary = nan_summary(tau)
    significant = pvalue[~np.isnan(pvalue)]
    statistic = summary["mean"]
    return CheckResult(
        name=name,
        passed=bool(np.isfinite(statistic) and statistic >= threshold),
        statistic=float(statistic),
        threshold=threshold,
        per_instance=tau,
        flagged=np.nan_to_num(tau, nan=np.inf) < threshold,
        higher_is_better=True,
        statistic_name="mean Kendall τ",
        meaning=meaning,
        details={
            **summary,
            "fraction_significant": float((significant <= 0.05).mean()) if significant.size else float("nan"),
            "pvalue": pvalue,
            "importance": real_rows(importance, real),
            **(details or {}),
        },
    )


def fraction_result(
    name: str,
    values: np.ndarray,
    flagged: np.ndarray,
    eligible: np.ndarray,
    threshold: float,
    meaning: str,
    details: dict[str, Any] | None = None,
) -> CheckResult:
    """Fails when the fraction of eligible instances that are flagged exceeds ``threshold``."""
    flagged = flagged & eligible
    count = int(eligible.sum())
    statistic = float(flagged.sum() / count) if count else float("nan")
    return CheckResult(
        name=name,
        passed=bool(count and statistic <= threshold),
        statistic=statistic,
        threshold=threshold,
        per_instance=values,
        flagged=flagged,
        higher_is_better=False,
        statistic_name="fraction flagged",
        meaning=meaning,
        details={**nan_summary(values), "eligible": count, **(details or {})},
    )


def real_rows(values: Tensor, real: Tensor) -> RaggedRows:
    """Per instance, the values at the real positions (for reports), in one compact array."""
    values, real = values.detach().float().cpu(), real.cpu()
    return RaggedRows(values[real].numpy(), real.sum(dim=1).numpy())


def replace_rows(rows: Tensor, real: Tensor, weights: Tensor) -> Tensor:
    """Edit function: every head's read row becomes ``weights`` (n, Tk) (zero off the real positions)."""
    return torch.where(real, weights, torch.zeros_like(weights)).unsqueeze(1).expand_as(rows)
