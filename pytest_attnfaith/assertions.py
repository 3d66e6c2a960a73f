"""``assert_attention_faithful``: audit, and raise ``AttentionNotFaithful`` with an explanation."""

from __future__ import annotations

from typing import Any

import numpy as np

from pytest_attnfaith.audit import audit
from pytest_attnfaith.errors import AttentionNotFaithful
from pytest_attnfaith.options import QUESTIONS
from pytest_attnfaith.results import CheckResult, Report
from pytest_attnfaith.worst import answered, flag_count, instance_rows, token_table, worst_by_instance

QUESTION_TEXT = {
    "used": "does the output depend on the attention?",
    "agrees": "does it rank tokens as the model's sensitivity does?",
    "unique": "is it the only attention that gives this output?",
}


def assert_attention_faithful(model: Any, inputs: Any, seed: int = 0, **options: Any) -> Report:
    """Audit ``model`` on ``inputs``; return the ``Report`` or raise ``AttentionNotFaithful``.

    Raises when a question in ``require`` (default: used, agrees, unique) is answered no — or
    inconclusive, unless ``inconclusive="pass"``: the burden is on whoever shows the heat map. The
    message says which question and check failed, the statistic with its interval against its
    threshold, what it means (or how many instances would decide it), and the worst instances.
    """
    __tracebackhide__ = True  # pytest shows the caller's line and this explanation, not this frame's tensors
    report = audit(model, inputs, seed=seed, **options)
    if not report.passed:
        raise AttentionNotFaithful(failure_message(report, report.options["worst"]), report)
    return report


def failure_message(report: Report, worst: int = 3) -> str:
    """Which required questions were answered no or inconclusive, each failing check and why, the worst instances."""
    unanswered = [q for q in report.required if q in report.failed_questions or q in _blocking_inconclusive(report)]
    lines = [f"attention is not faithful: {answered((q, report.verdicts[q]) for q in unanswered)}"]
    for question in unanswered:
        lines.append(f"  {question} — {QUESTION_TEXT[question]} {report.verdicts[question].upper()}")
        for name in QUESTIONS[question]:
            result = report.checks.get(name)
            if result is None or result.passed:
                continue
            lines.append(f"    {result.describe()}")
            if result.verdict == "failed":
                lines.append(f"      {result.meaning}.")
            lines.append(f"      {_flag_count(result)}")
    lines.extend(_worst_instances(report, worst))
    return "\n".join(lines)


def _blocking_inconclusive(report: Report) -> list[str]:
    """The inconclusive required questions, when they count against the verdict (``inconclusive="fail"``)."""
    return report.inconclusive_questions if report.options.get("inconclusive", "fail") == "fail" else []


def _flag_count(result: CheckResult) -> str:
    return flag_count(result.per_instance.size, int(result.flagged.sum()), result.undefined)


def _worst_instances(report: Report, count: int) -> list[str]:
    """The worst instances of the failing checks, each once, as token tables."""
    failing = [result for result in report.failed_checks if any(result.name in QUESTIONS[q] for q in report.failed_questions)]
    worst = worst_by_instance(((r.name, r.per_instance.tolist(), np.flatnonzero(r.flagged).tolist()) for r in failing), count)
    tokens = report.instances.get("tokens", [])
    attention = report.instances.get("attention", [])
    importances: dict[str, Any] = {
        name: report.checks[name].details.get("importance") for name in ("gradient", "loo") if name in report.checks
    }
    lines = ["  worst instances (tokens, attention, importance):"] if worst else []
    for index, reasons in worst.items():
        lines.append(f"    instance {index}, worst for {', '.join(reasons)}")
        row_tokens = tokens[index] if index < len(tokens) else []
        lines.extend(token_table(row_tokens, instance_rows(index, attention, importances), indent="      "))
    return lines
