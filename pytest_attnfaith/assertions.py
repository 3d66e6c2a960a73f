"""``assert_attention_faithful`` and ``assert_explanation_faithful``: audit, and raise with an explanation."""

from __future__ import annotations

from typing import Any

import numpy as np

from pytest_attnfaith.audit import audit
from pytest_attnfaith.errors import AttentionNotFaithful, ExplanationNotFaithful
from pytest_attnfaith.explanation_audit import audit_explanation, compare_explanations
from pytest_attnfaith.options import questions_for
from pytest_attnfaith.results import CheckResult, Report
from pytest_attnfaith.worst import answered, flag_count, instance_rows, token_table, worst_by_instance

QUESTION_TEXT = {
    "used": "does the output depend on the attention?",
    "agrees": "does it rank tokens as the model's sensitivity does?",
    "unique": "is it the only attention that gives this output?",
    "comprehensive": "does removing its top tokens hurt the prediction more than removing random ones?",
    "sufficient": "do its top tokens alone keep the prediction better than random ones?",
}
ATTENTION_ONLY = ("checks", "require", "suggest_explainers")


def assert_attention_faithful(model: Any, inputs: Any, seed: int = 0, **options: Any) -> Report:
    """Audit ``model`` on ``inputs``; return the ``Report`` or raise ``AttentionNotFaithful``.

    Raises when a question in ``require`` (default: used, agrees, unique) is answered no — or
    inconclusive, unless ``inconclusive="pass"``: the burden is on whoever shows the heat map. The
    message says which question and check failed, the statistic with its interval against its
    threshold, what it means (or how many instances would decide it), and the worst instances; with
    ``suggest_explainers``, which of those explainers pass their explanation audit on the same inputs.
    """
    __tracebackhide__ = True  # pytest shows the caller's line and this explanation, not this frame's tensors
    report = audit(model, inputs, seed=seed, **options)
    if not report.passed:
        message = failure_message(report, report.options["worst"])
        suggested = tuple(report.options.get("suggest_explainers", ()))
        if suggested:
            message += "\n" + _suggestions(model, inputs, suggested, seed, options)
        raise AttentionNotFaithful(message, report)
    return report


def assert_explanation_faithful(
    model: Any, inputs: Any, explainer: Any, checks: Any = None, seed: int = 0, **options: Any
) -> Report:
    """Audit the scores of ``explainer`` on ``inputs``; return the ``Report`` or raise ``ExplanationNotFaithful``
    when a question in ``explanation_require`` (default: comprehensive, sufficient) is answered no, or
    inconclusive unless ``inconclusive="pass"``."""
    __tracebackhide__ = True
    report = audit_explanation(model, inputs, explainer, checks=checks, seed=seed, **options)
    if not report.passed:
        raise ExplanationNotFaithful(failure_message(report, report.options["worst"]), report)
    return report


def failure_message(report: Report, worst: int = 3) -> str:
    """Which required questions were answered no or inconclusive, each failing check and why, the worst instances."""
    questions = questions_for(report.kind)
    unanswered = [q for q in report.required if q in report.failed_questions or q in _blocking_inconclusive(report)]
    subject = "attention" if report.explainer is None else f"explanation {report.explainer!r}"
    lines = [f"{subject} is not faithful: {answered((q, report.verdicts[q]) for q in unanswered)}"]
    for question in unanswered:
        lines.append(f"  {question} — {QUESTION_TEXT[question]} {report.verdicts[question].upper()}")
        for name in questions[question]:
            result = report.checks.get(name)
            if result is None or result.passed:
                continue
            lines.append(f"    {result.describe()}")
            if result.verdict == "failed":
                lines.append(f"      {result.meaning}.")
            lines.append(f"      {_flag_count(result)}")
    lines.extend(_worst_instances(report, worst))
    return "\n".join(lines)


def _suggestions(model: Any, inputs: Any, explainers: tuple[str, ...], seed: int, options: dict[str, Any]) -> str:
    """One line naming the explainers whose explanation audit passes on the same inputs (``suggest_explainers``)."""
    given = {key: value for key, value in options.items() if key not in ATTENTION_ONLY}
    comparison = compare_explanations(model, inputs, explainers, seed=seed, **given)
    required = next(iter(comparison.reports.values())).required
    what = " and ".join(required) or "no question required"
    if comparison.passing:
        return f"  explainers that pass on these inputs ({what}): {', '.join(comparison.passing)}"
    return f"  none of {', '.join(explainers)} passes on these inputs ({what})"


def _blocking_inconclusive(report: Report) -> list[str]:
    """The inconclusive required questions, when they count against the verdict (``inconclusive="fail"``)."""
    return report.inconclusive_questions if report.options.get("inconclusive", "fail") == "fail" else []


def _flag_count(result: CheckResult) -> str:
    return flag_count(result.per_instance.size, int(result.flagged.sum()), result.undefined)


def _worst_instances(report: Report, count: int) -> list[str]:
    """The worst instances of the failing checks, each once, as token tables (the attention, or the explanation's
    scores, beside the importances of the agreement checks that ran)."""
    questions = questions_for(report.kind)
    failing = [result for result in report.failed_checks if any(result.name in questions[q] for q in report.failed_questions)]
    worst = worst_by_instance(((r.name, r.per_instance.tolist(), np.flatnonzero(r.flagged).tolist()) for r in failing), count)
    tokens = report.instances.get("tokens", [])
    label = "attention" if report.explainer is None else report.explainer
    values = report.instances.get("attention" if report.explainer is None else "scores", [])
    importances: dict[str, Any] = {
        name: report.checks[name].details.get("importance") for name in ("gradient", "loo") if name in report.checks
    }
    lines = [f"  worst instances (tokens, {label}, importance):"] if worst else []
    for index, reasons in worst.items():
        lines.append(f"    instance {index}, worst for {', '.join(reasons)}")
        row_tokens = tokens[index] if index < len(tokens) else []
        lines.extend(token_table(row_tokens, instance_rows(index, values, importances, label), indent="      "))
    return lines
