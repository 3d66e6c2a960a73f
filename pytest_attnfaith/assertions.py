"""``assert_attention_faithful``: audit, and raise ``AttentionNotFaithful`` with an explanation."""

from __future__ import annotations

from typing import Any

import numpy as np

from pytest_attnfaith.audit import audit
from pytest_attnfaith.errors import AttentionNotFaithful
from pytest_attnfaith.options import QUESTIONS
from pytest_attnfaith.results import CheckResult, Report

QUESTION_TEXT = {
    "used": "does the output depend on the attention?",
    "agrees": "does it rank tokens as the model's sensitivity does?",
    "unique": "is it the only attention that gives this output?",
}


def assert_attention_faithful(model: Any, inputs: Any, seed: int = 0, **options: Any) -> Report:
    """Audit ``model`` on ``inputs``; return the ``Report`` or raise ``AttentionNotFaithful``.

    Raises when a question in ``require`` (default: used, agrees, unique) is answered no. The
    message says which question and check failed, the statistic against its threshold, what it
    means, and the worst instances.
    """
    report = audit(model, inputs, seed=seed, **options)
    if not report.passed:
        raise AttentionNotFaithful(failure_message(report, options.get("worst", 3)), report)
    return report


def failure_message(report: Report, worst: int = 3) -> str:
    failed = report.failed_questions
    lines = [f"attention is not faithful: {', '.join(failed)} answered no"]
    for question in failed:
        lines.append(f"  {question} — {QUESTION_TEXT[question]} NO")
        for name in QUESTIONS[question]:
            result = report.checks.get(name)
            if result is None or result.passed:
                continue
            lines.append(f"    {result.describe()}")
            lines.append(f"      {result.meaning}.")
            lines.append(f"      {_flag_count(result)}")
            lines.extend(_worst_instances(report, result, worst))
    return "\n".join(lines)


def _flag_count(result: CheckResult) -> str:
    count = result.per_instance.size
    flagged = int(result.flagged.sum())
    undefined = f", {result.undefined} undefined" if result.undefined else ""
    return f"{count} instances, {flagged} flagged ({100.0 * flagged / max(count, 1):.0f}%){undefined}"


def worst_indices(result: CheckResult, count: int) -> list[int]:
    """The flagged instances that count most against the model, worst first."""
    values = result.per_instance
    candidates = np.flatnonzero(result.flagged & ~np.isnan(values))
    if result.name == "adversarial":
        order = candidates[np.argsort(-values[candidates], kind="stable")]
    else:
        order = candidates[np.argsort(values[candidates], kind="stable")]
    return [int(i) for i in order[:count]]


def _worst_instances(report: Report, result: CheckResult, count: int) -> list[str]:
    tokens = report.instances.get("tokens", [])
    attention = report.instances.get("attention", [])
    importances = {name: report.checks[name].details.get("importance") for name in ("gradient", "loo") if name in report.checks}
    lines = []
    for index in worst_indices(result, count):
        lines.append(f"      instance {index}: {result.name} value {result.per_instance[index]:.3f}")
        header = "        token            attention" + "".join(f" {name:>10}" for name in importances)
        lines.append(header)
        for position, token in enumerate(tokens[index] if index < len(tokens) else []):
            cells = "".join(f" {values[index][position]:10.3f}" for values in importances.values() if values)
            lines.append(f"        {token[:16]:16} {attention[index][position]:9.3f}{cells}")
    return lines
