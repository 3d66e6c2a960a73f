"""``af.audit``, fixed-n or sequential: draw batches until every required question is decided.

With ``sequential=True`` the audit reads its ``source`` (``pytest_attnfaith.sources``) ``batch_size`` instances at a
time and runs, on each batch, the existing per-batch machinery (``audit.opened`` / ``run_checks``) for the checks
still undecided. Each check's per-instance ``observations`` (``CheckResult.observations``: a fraction's 0/1 flags, a
mean's values in their ``value_range``) are accumulated in the order drawn, and its interval is the anytime-valid
betting confidence sequence of all of them (``metrics.sequences``, Waudby-Smith & Ramdas 2023): valid at every
batch at once, so that stopping once it lies on one side of the threshold keeps each verdict's error rate within
1 − ``confidence`` (a fixed-n interval looked at after every batch does not). A check stops once decided, a question
once answered; the audit stops when every required question is answered yes or no, the source is exhausted or
``max_instances`` instances were drawn (``report.instances_used``; ``report.model["sequential"]`` says which).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from pytest_attnfaith import _recording, cost, sources
from pytest_attnfaith.audit import answer_questions, build_report, instances_of, run_checks, warn_inconclusive
from pytest_attnfaith.audit import audit as fixed_audit
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import decide, nan_summary
from pytest_attnfaith.metrics.sequences import METHOD, sequence_interval
from pytest_attnfaith.options import QUESTIONS, Options, resolve_options
from pytest_attnfaith.results import CheckResult, RaggedRows, Report
from pytest_attnfaith.session import opened

UNBOUNDED = "its per-instance values have no declared range: no confidence sequence, so no sequential verdict"


def audit(model: Any, inputs: Any, checks: Any = None, seed: int = 0, **options: Any) -> Report:
    """Audit the attention of ``model`` and return a ``Report`` (never raises on a failing verdict).

    Fixed-n (default): ``inputs`` is one batch (a mapping with ``input_ids`` (B, T), optional ``attention_mask``
    and ``special_tokens_mask``). With ``sequential=True``, ``inputs`` is a source (``pytest_attnfaith.sources``)
    read ``batch_size`` rows at a time until every required question is decided or ``max_instances`` is reached.
    ``max_passes`` / ``budget_seconds`` refuse an audit whose ``af.estimate`` exceeds them, before it runs.
    """
    resolved = resolve_options(checks=checks, seed=seed, **options)
    if not resolved.sequential:
        cost.refuse_over_budget(model, inputs, resolved)
        return fixed_audit(model, inputs, checks=checks, seed=seed, **options)
    return sequential_audit(model, inputs, resolved)


def sequential_audit(model: Any, source: Any, options: Options) -> Report:
    """The sequential audit of ``model`` on ``source`` (see the module's docstring)."""
    tracks: dict[str, list[CheckResult]] = {name: [] for name in options.checks}
    drawn: list[dict[str, Any]] = []
    results: dict[str, CheckResult] = {}
    described: dict[str, Any] = {}
    stopped = "source exhausted"
    for index, inputs in enumerate(sources.batches(source, options.batch_size, options.max_instances, options.seed)):
        if index == 0:
            planned = -(-(options.max_instances or sources.rows_of(inputs)) // sources.rows_of(inputs))
            cost.refuse_over_budget(model, inputs, options, batches=planned)
        pending = [name for name in options.checks if _open(name, results)]
        with opened(model, inputs, dataclasses.replace(options, seed=options.seed + index)) as context:
            for name, result in run_checks(context, tuple(pending)).items():
                tracks[name].append(result)
            drawn.append(instances_of(context))
            described = context.model.describe()
        results = {name: accumulated(track, options.confidence) for name, track in tracks.items() if track}
        if _decided(results, options.require):
            stopped = "decided"
            break
    else:
        if options.max_instances is not None and sum(part["count"] for part in drawn) >= options.max_instances:
            stopped = "max_instances reached"
    if not drawn:
        raise AttnFaithError("the source gave no instance; expected at least one batch with 'input_ids'")
    instances = joined_instances(drawn)
    described["sequential"] = {
        "batches": len(drawn),
        "instances_used": instances["count"],
        "max_instances": options.max_instances,
        "stopped": stopped,
        "interval_method": METHOD,
    }
    report = build_report(results, options, described, instances)
    warn_inconclusive(report)
    _recording.publish(report)
    return report


def _open(name: str, results: dict[str, CheckResult]) -> bool:
    """Whether check ``name`` still runs: not yet decided, and its question not yet answered."""
    if name in results and results[name].verdict != "inconclusive":
        return False
    question = next((q for q, names in QUESTIONS.items() if name in names), None)
    if question is None:
        return True
    return answer_questions(results, {question: QUESTIONS[question]})[question] in ("inconclusive", "not tested")


def _decided(results: dict[str, CheckResult], required: Sequence[str]) -> bool:
    answers = answer_questions(results)
    return all(answers[question] in ("yes", "no") for question in required if question in answers)


def accumulated(track: list[CheckResult], confidence: float) -> CheckResult:
    """One check's results over the batches it ran on, as one result: its statistic over every observation, the
    confidence sequence's interval at ``confidence``, the verdict it reads, the per-instance values joined."""
    last = track[-1]
    sizes = [result.per_instance.size for result in track]
    values = np.concatenate([result.per_instance for result in track])
    kind = "fraction" if last.statistic_name.startswith("fraction") else "mean"
    unbounded = any(result.observations is None for result in track) or last.value_range is None
    observed = np.full(values.size, np.nan) if unbounded else np.concatenate([r.observations for r in track])  # type: ignore[misc]
    estimate = sequence_interval(observed, confidence, last.value_range or (0.0, 1.0), kind, threshold=last.threshold)
    verdict = decide(estimate, last.threshold, last.higher_is_better)
    note = UNBOUNDED if unbounded else f"undecided after {estimate.count} instances" if verdict == "inconclusive" else ""
    details = joined_details([result.details for result in track], sizes)
    details.update(nan_summary(values), batches=len(track))
    if kind == "fraction":
        details["eligible"] = estimate.count
    return dataclasses.replace(
        last,
        statistic=estimate.statistic,
        interval=estimate.interval,
        verdict=verdict,
        per_instance=values,
        flagged=np.concatenate([result.flagged for result in track]),
        confidence=confidence,
        interval_method=METHOD,
        instances_needed=None,
        note=note,
        details=details,
        observations=observed,
    )


def joined(parts: list[Any], sizes: list[int]) -> Any:
    """Per-instance values of consecutive batches as one (arrays and ragged rows joined, lists concatenated);
    anything else is not per instance: the last batch's."""
    first = parts[0]
    per_instance = all(_length(part) == size for part, size in zip(parts, sizes, strict=True))
    if not per_instance:
        return parts[-1]
    if isinstance(first, RaggedRows):
        lengths = [np.diff(part.offsets) for part in parts]
        return RaggedRows(np.concatenate([part.values for part in parts]), np.concatenate(lengths))
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    return [item for part in parts for item in part]


def _length(value: Any) -> int | None:
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim >= 1 else None
    return len(value) if isinstance(value, (list, RaggedRows)) else None


def joined_details(details: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """A check's ``details`` over its batches: per-instance entries joined, the rest the last batch's."""
    keys = [key for key in details[-1] if all(key in part for part in details)]
    return {key: joined([part[key] for part in details], sizes) for key in keys}


def joined_instances(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's ``instances`` over every batch drawn."""
    sizes = [part["count"] for part in parts]
    out = {key: joined([part[key] for part in parts], sizes) for key in parts[0] if key != "count"}
    return {"count": sum(sizes), **out}
