"""What every check shares: the two ways a check turns per-instance values into a verdict with its
interval, and the edit that writes one distribution into every head's read row."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.metrics import (
    Estimate,
    decide,
    fraction_interval,
    instances_needed,
    kendall_tau,
    mean_interval,
    nan_summary,
)
from pytest_attnfaith.results import CheckResult, RaggedRows
from pytest_attnfaith.session import Context

__all__ = ["Context", "fraction_result", "mean_result", "real_rows", "replace_rows", "subject", "tau_result"]


NO_SINGLE_TOKEN = "the output depends on no single token"
"""Why an instance whose importance is 0 on every real token (within the resolution) has no agreement."""


def mean_result(
    context: Context,
    name: str,
    values: np.ndarray,
    threshold: float,
    statistic_name: str,
    meaning: str,
    details: dict[str, Any] | None = None,
    why_undefined: str = "",
    bounds: tuple[float, float] | None = None,
    reported: np.ndarray | None = None,
) -> CheckResult:
    """Passes when the mean of the defined values (with its seeded bootstrap interval) reaches ``threshold``.

    ``bounds``: the range a value can take (``metrics.statistics.mean_interval``). ``reported``: the per-instance
    values the result shows, when they are not the averaged ones (ERASER's raw scores beside their gain over
    random orderings); NaN wherever ``values`` is."""
    estimate = mean_interval(values, context.options.confidence, context.seed(f"interval:{name}"), bounds)
    return _result(
        context,
        name=name,
        estimate=estimate,
        values=values if reported is None else reported,
        flagged=np.nan_to_num(values, nan=np.inf) < threshold,
        threshold=threshold,
        higher_is_better=True,
        statistic_name=statistic_name,
        meaning=meaning,
        details=details or {},
        why_undefined=why_undefined,
        observations=np.asarray(values, dtype=np.float64),
        value_range=bounds,
    )


def tau_result(
    context: Context, name: str, importance: Tensor, threshold: float, meaning: str, details: dict[str, Any] | None = None
) -> CheckResult:
    """Kendall τ-b between the scores under test and an importance, per instance; passes when the mean τ reaches
    ``threshold``. Rows with fewer than two real tokens, or with constant scores, have no τ (NaN, counted); so has
    a row whose importance is 0 on every real token (``NO_SINGLE_TOKEN``, counted in ``details["no_single_token"]``)."""
    real = context.real.cpu()
    importance = importance.cpu()
    independent = context.defined() & ~(importance != 0).logical_and(real).any(dim=1).numpy()
    tau, pvalue = kendall_tau(context.scores, importance, real)
    tau = np.where(independent, np.nan, tau)
    significant = pvalue[~np.isnan(pvalue) & ~independent]
    return mean_result(
        context,
        name,
        tau,
        threshold,
        "mean Kendall τ",
        meaning,
        {
            "fraction_significant": float((significant <= 0.05).mean()) if significant.size else float("nan"),
            "pvalue": pvalue,
            "importance": real_rows(importance, real),
            "no_single_token": int(independent.sum()),
            **(details or {}),
        },
        NO_SINGLE_TOKEN if independent.any() else "",
        bounds=(-1.0, 1.0),
    )


def fraction_result(
    context: Context,
    name: str,
    values: np.ndarray,
    flagged: np.ndarray,
    eligible: np.ndarray,
    threshold: float,
    meaning: str,
    details: dict[str, Any] | None = None,
) -> CheckResult:
    """Passes when the fraction of eligible instances that are flagged (with its Clopper–Pearson interval) stays at
    or below ``threshold``."""
    flagged = flagged & eligible
    estimate = fraction_interval(int(flagged.sum()), int(eligible.sum()), context.options.confidence)
    return _result(
        context,
        name=name,
        estimate=estimate,
        values=values,
        flagged=flagged,
        threshold=threshold,
        higher_is_better=False,
        statistic_name="fraction flagged",
        meaning=meaning,
        details={"eligible": estimate.count, **(details or {})},
        observations=np.where(eligible, flagged, np.nan).astype(np.float64),
        value_range=(0.0, 1.0),
    )


def _result(
    context: Context,
    *,
    name: str,
    estimate: Estimate,
    values: np.ndarray,
    flagged: np.ndarray,
    threshold: float,
    higher_is_better: bool,
    statistic_name: str,
    meaning: str,
    details: dict[str, Any],
    why_undefined: str = "",
    observations: np.ndarray | None = None,
    value_range: tuple[float, float] | None = None,
) -> CheckResult:
    """The ``CheckResult`` of an estimate against its threshold: the verdict, and for an inconclusive one how many
    instances would decide it and why it could not be decided. ``observations`` / ``value_range``: what a sequential
    audit accumulates (``CheckResult``)."""
    verdict = decide(estimate, threshold, higher_is_better)
    inconclusive = verdict == "inconclusive"
    return CheckResult(
        name=name,
        statistic=float(estimate.statistic),
        threshold=threshold,
        interval=estimate.interval,
        verdict=verdict,
        per_instance=values,
        flagged=flagged,
        higher_is_better=higher_is_better,
        statistic_name=statistic_name,
        meaning=meaning,
        confidence=estimate.confidence,
        interval_method=estimate.method,
        instances_needed=instances_needed(estimate, threshold, higher_is_better) if inconclusive else None,
        note=_note(context, estimate, why_undefined) if inconclusive else "",
        details={**nan_summary(values), **details},
        observations=observations,
        value_range=value_range,
    )


def _note(context: Context, estimate: Estimate, why_undefined: str) -> str:
    """Why no verdict could be reached, where it is not the interval's width."""
    if estimate.count == 0:
        if not bool(context.defined().any()):
            return "undefined on every instance: no instance has two real tokens"
        return f"undefined on every instance: {why_undefined}" if why_undefined else "undefined on every instance"
    if estimate.count == 1:
        return "one instance has a defined value: no interval; more instances would decide it"
    return ""


def subject(context: Context) -> str:
    """What the scores under test are, for a check's meaning: ``"attention"`` or ``"the explanation"``."""
    return "attention" if context.explanation is None else "the explanation"


def real_rows(values: Tensor, real: Tensor) -> RaggedRows:
    """Per instance, the values at the real positions (for reports), in one compact array."""
    values, real = values.detach().float().cpu(), real.cpu()
    return RaggedRows(values[real].numpy(), real.sum(dim=1).numpy())


def replace_rows(rows: Tensor, real: Tensor, weights: Tensor) -> Tensor:
    """Edit function: every head's read row becomes ``weights`` (n, Tk) (zero off the real positions)."""
    return torch.where(real, weights.to(rows.dtype), torch.zeros_like(rows[:, 0])).unsqueeze(1).expand_as(rows)
