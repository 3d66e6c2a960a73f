"""The per-head atlas (``per_head=True``): every check for every (layer, head), each head edited alone.

Per layer l, two kinds of rows:

* the **layer row** (``head: "all"``): the audit at layer l with the mean over heads read and every head
  edited (``replace="layer"``);
* the **head rows**: head h read, and its counterfactuals edit head h alone (the layer's other heads keep
  their attention). All heads run together: one *expanded* context whose instances are (instance, head)
  pairs — the batch repeated once per head, each copy's head in ``Batch.heads`` — so every counterfactual
  pass batches the heads. The checks run on it unchanged and leave their per-instance values in
  ``Context.remember``; each head's result is then the same check run on that head's instances alone, from
  those values, so its statistic, interval and verdict are those of a single-head audit (random draws —
  permutations, adversarial starts — are drawn for all pairs at once, so they differ from a single-head
  audit's draws).

What does not depend on the head is computed once: leave-one-out once per audit, gradient × input (layer
l's attention detached) once per layer, and every layer's reference rows come from the audit's one
reference pass (``record_layers``).

Across heads the verdicts are controlled for false discoveries (Benjamini & Hochberg 1995,
``scipy.stats.false_discovery_control``): per check, two one-sided p-values per row — evidence that it
passes and evidence that it fails (a flagged fraction: exact binomial tests against the threshold; a mean
τ: one-sample t-tests) — are adjusted over the check's head rows (one family) and over its layer rows
(another). A row **passed** when its q-value for passing is at most α/2, **failed** when its q-value for
failing is, else it is inconclusive (α = 1 − ``confidence``; with one test the rule is the interval's:
Clopper–Pearson is the inversion of the two exact one-sided tests at α/2). ``interval_verdict`` keeps the
unadjusted verdict of the row's own interval.

Single heads move the output little, so each row also gives an **effect** — the mean per-instance value
(TVD under the edit, max JSD, τ) with its bootstrap interval — and a **rank** among its family (1: the
furthest on the passing side).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.stats
import torch
from torch import Tensor

from pytest_attnfaith.adapters.passes import Forward
from pytest_attnfaith.adapters.reading import Reading
from pytest_attnfaith.checks import CHECKS
from pytest_attnfaith.metrics import mean_intervals
from pytest_attnfaith.options import QUESTIONS
from pytest_attnfaith.results import CheckResult
from pytest_attnfaith.session import Context

QUESTION_OF = {check: question for question, checks in QUESTIONS.items() for check in checks}
HEAD_INDEPENDENT = ("leave_one_out", "gradient_x_input")
"""Memo entries (``Context.remember``) that do not depend on the head: shared by a layer's head rows."""

EFFECTS: dict[str, tuple[str, tuple[float, float], bool]] = {
    "permutation": ("mean of the median TVD over permutations", (0.0, 1.0), True),
    "uniform": ("mean TVD under the uniform distribution", (0.0, 1.0), True),
    "erasure": ("mean TVD of erasing the top token minus that of erasing another", (-1.0, 1.0), True),
    "adversarial": ("mean max JSD of an adversary within epsilon", (0.0, math.log(2.0)), False),
    "gradient": ("mean Kendall τ with gradient × input", (-1.0, 1.0), True),
    "loo": ("mean Kendall τ with leave-one-out", (-1.0, 1.0), True),
}
"""Per check: what its effect (the mean per-instance value) measures, the range of a value, and whether larger
values lie on the passing side (checks not listed: the mean per-instance value, larger passing)."""


def per_head_rows(context: Context, results: dict[str, CheckResult]) -> list[dict[str, Any]]:
    """The atlas of ``context``'s model: rows for every layer (``head: "all"``) and every (layer, head), every check.

    ``results``: the audit's own results (reused for the layer row of the layer it read, with the mean over heads)."""
    adapter, options = context.model, context.options
    reading = adapter.options
    read = adapter.read_layer()
    rows: list[dict[str, Any]] = []
    try:
        for layer in adapter.layer_indices():
            rows.extend(_rows_of_layer(context, results if layer == read and options.head == "mean" else None, layer))
    finally:
        adapter.options = reading
    for check in options.checks:
        for family in (
            [row for row in rows if row["check"] == check and row["head"] == "all"],
            [row for row in rows if row["check"] == check and row["head"] != "all"],
        ):
            _control_false_discoveries(family, options.confidence)
            _rank(family, check)
    return rows


def _rows_of_layer(context: Context, results: dict[str, CheckResult] | None, layer: int) -> list[dict[str, Any]]:
    """The layer row and the head rows of one layer (``results``: the audit's own, when it read this layer's mean)."""
    adapter, options, batch = context.model, context.options, context.batch
    at_layer = replace(options, layer=layer, head="mean", replace="layer", per_head=False)
    adapter.options = Reading.of(at_layer)
    rows_read = (context.reference.layer_rows or {}).get(layer)
    if rows_read is not None and options.aggregation == "attention":
        reference = replace(context.reference, rows=rows_read, attention=adapter.read(rows_read), layer_rows=None)
    else:  # rollout, or a layer the reference pass could not read (softmax interception reads the chosen one)
        reference = adapter.forward_chunked(batch)
        rows_read = reference.rows
    shared = context.memo if results is not None else {k: v for k, v in context.memo.items() if k == "leave_one_out"}
    whole = Context(adapter, batch, at_layer, reference, memo=dict(shared))
    layer_results = results if results is not None else {name: CHECKS[name](whole) for name in options.checks}
    out = _rows(whole, layer, ["all"], {name: [result] for name, result in layer_results.items()})

    heads = int(rows_read.shape[1])
    per_head = replace(at_layer, replace="head")
    adapter.options = Reading.of(per_head)
    expanded = _expanded(whole, per_head, heads, rows_read)
    for name in options.checks:
        CHECKS[name](expanded)
    by_head: dict[str, list[CheckResult]] = {name: [] for name in options.checks}
    for head in range(heads):
        single = _single(whole, per_head, head, heads, rows_read, expanded.memo)
        for name in options.checks:
            by_head[name].append(CHECKS[name](single))
    return out + _rows(whole, layer, list(range(heads)), by_head)


def _expanded(whole: Context, options: Any, heads: int, rows_read: Tensor) -> Context:
    """The (instance, head) pairs of a layer: instance i's copy for head h is row i·H + h."""
    batch, size = whole.batch, whole.batch.size
    device = batch.input_ids.device
    instance = torch.arange(size, device=device).repeat_interleave(heads)
    head = torch.arange(heads, device=device).repeat(size)
    reference = _reference_of(whole, options, replace(batch.select(instance), heads=head), rows_read, instance, head)
    memo = {key: _take(whole.memo[key], instance) for key in HEAD_INDEPENDENT if key in whole.memo}
    return Context(whole.model, replace(batch.select(instance), heads=head), options, reference, memo=memo)


def _single(whole: Context, options: Any, head: int, heads: int, rows_read: Tensor, memo: dict[str, Any]) -> Context:
    """Head ``head`` alone, its values taken from the expanded context's (rows i·H + head)."""
    batch = whole.batch
    device = batch.input_ids.device
    instance = torch.arange(batch.size, device=device)
    heads_read = torch.full((batch.size,), head, device=device)
    picked = replace(batch, heads=heads_read)
    reference = _reference_of(whole, options, picked, rows_read, instance, heads_read)
    mine = instance * heads + head
    return Context(whole.model, picked, options, reference, memo={key: _take(value, mine) for key, value in memo.items()})


def _reference_of(whole: Context, options: Any, batch: Any, rows_read: Tensor, instance: Tensor, head: Tensor) -> Forward:
    """The reference of ``batch`` (instances ``instance`` of the layer's, each read at its head)."""
    reference = whole.reference
    if options.aggregation != "attention":  # rollout mixes lower layers: the adapter reads each row's head
        return whole.model.forward_chunked(batch)
    rows = rows_read[instance.to(rows_read.device)]
    return Forward(
        probs=reference.probs[instance.to(reference.probs.device)],
        rows=rows,
        attention=whole.model.read(rows, head),
        gap=reference.gap[instance.to(reference.gap.device)] if reference.gap is not None else None,
    )


def _take(value: Any, index: Tensor) -> Any:
    """Rows ``index`` of a memo entry: a tensor, an array, or a tuple of them."""
    if isinstance(value, tuple):
        return tuple(_take(part, index) for part in value)
    if isinstance(value, Tensor):
        return value[index.to(value.device)]
    if isinstance(value, np.ndarray):
        return value[index.cpu().numpy()]
    return value


def _rows(context: Context, layer: int, heads: list[Any], results: dict[str, list[CheckResult]]) -> list[dict[str, Any]]:
    """One row per (head, check) of a layer, with each check's effects over the heads in one vectorised bootstrap."""
    rows = []
    for name, per_head in results.items():
        label, bounds, _ = EFFECTS.get(name, ("mean per-instance value", None, True))
        if per_head[0].higher_is_better:  # a mean already: its statistic and interval are the effect
            effects = [(result.statistic, list(result.interval)) for result in per_head]
        else:
            values = np.stack([result.per_instance for result in per_head])
            seed = context.seed(f"effect:{name}:{layer}")
            effects = [(e.statistic, list(e.interval)) for e in mean_intervals(values, context.options.confidence, seed, bounds)]
        for head, result, effect in zip(heads, per_head, effects, strict=True):
            rows.append(_row(layer, head, result, {"name": label, "value": effect[0], "interval": effect[1]}))
    return rows


def _row(layer: int, head: Any, result: CheckResult, effect: dict[str, Any]) -> dict[str, Any]:
    return {
        "layer": layer,
        "head": head,
        "check": result.name,
        "question": QUESTION_OF.get(result.name),
        "statistic": result.statistic,
        "statistic_name": result.statistic_name,
        "interval": list(result.interval),
        "threshold": result.threshold,
        "higher_is_better": result.higher_is_better,
        "interval_verdict": result.verdict,
        "p_pass": _p_value(result, passing=True),
        "p_fail": _p_value(result, passing=False),
        "effect": effect,
        "instances": int(result.per_instance.size),
        "undefined": result.undefined,
        "per_instance": result.per_instance,
    }


def _p_value(result: CheckResult, passing: bool) -> float:
    """One-sided p-value of the evidence that the check passes (``passing``) or fails, against its threshold."""
    if result.higher_is_better:  # a mean: one-sample t-test of the defined values
        values = result.per_instance[~np.isnan(result.per_instance)]
        if values.size < 2 or np.ptp(values) == 0.0:
            return math.nan
        alternative = "greater" if passing else "less"
        return float(scipy.stats.ttest_1samp(values, result.threshold, alternative=alternative).pvalue)
    count = int(result.details.get("eligible", 0))
    if count == 0:
        return math.nan
    flagged = int(result.flagged.sum())
    return float(scipy.stats.binomtest(flagged, count, result.threshold, alternative="less" if passing else "greater").pvalue)


def _control_false_discoveries(rows: list[dict[str, Any]], confidence: float) -> None:
    """q-values (Benjamini–Hochberg) of both one-sided tests over ``rows``, and each row's verdict from them."""
    if not rows:
        return
    level = (1.0 - confidence) / 2
    adjusted: dict[str, np.ndarray] = {}
    for side in ("pass", "fail"):
        p = np.array([row[f"p_{side}"] for row in rows], dtype=np.float64)
        adjusted[side] = scipy.stats.false_discovery_control(np.nan_to_num(p, nan=1.0), method="bh")
    for index, row in enumerate(rows):
        q_pass, q_fail = float(adjusted["pass"][index]), float(adjusted["fail"][index])
        verdict = "passed" if q_pass <= level else "failed" if q_fail <= level else "inconclusive"
        row.update(
            q_pass=q_pass,
            q_fail=q_fail,
            q_value=q_pass if verdict == "passed" else q_fail if verdict == "failed" else min(q_pass, q_fail),
            verdict=verdict,
            passed=verdict == "passed",
        )


def _rank(rows: list[dict[str, Any]], check: str) -> None:
    """Rank 1 = the effect furthest on the passing side; undefined effects last."""
    larger_passes = EFFECTS.get(check, ("", None, True))[2]
    key: Callable[[dict[str, Any]], float] = lambda row: _sortable(row["effect"]["value"], larger_passes)  # noqa: E731
    for rank, row in enumerate(sorted(rows, key=key), start=1):
        row["rank"] = rank


def _sortable(value: float, larger_passes: bool) -> float:
    if value is None or math.isnan(value):
        return math.inf
    return -value if larger_passes else value
