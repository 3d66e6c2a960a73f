"""The ``attnfaith`` terminal summary: a table of every recorded audit and check, then the worst instances.

Each audit's line gives its verdict and, in a pytest run, the test's outcome; a failing verdict that
its test expected (``xfail``) or accepted (the test passed) is not red. Tests that use the plugin and
failed or errored before recording an audit are listed with their one-line error.

Verbosity: ``-q`` lists only the failing checks; the default lists every check and, for each failing
audit, its worst instance per failing check; ``-v`` adds up to ``worst`` instances per check and what
each audit read and replaced. ``worst=0`` shows no instance. Lines come back as ``(text, style)``, style
being "", "red", "yellow", "green" or "bold", for pytest's terminal writer.
"""

from __future__ import annotations

from typing import Any

from pytest_attnfaith.formatting import fixed, plural
from pytest_attnfaith.report import explanations
from pytest_attnfaith.report.atlas import atlas_lines
from pytest_attnfaith.report.baseline import regressions_of
from pytest_attnfaith.report.outcomes import outcome_text, unaudited_failures, verdict_state
from pytest_attnfaith.report.schema import Tests, summary
from pytest_attnfaith.results import format_interval
from pytest_attnfaith.worst import answered, flag_count, instance_rows, token_table, worst_by_instance

Line = tuple[str, str]
ROW_STYLE = {"passed": "", "failed": "red", "inconclusive": "yellow"}
LABEL_STYLE = {"passed": "green", "failed": "red", "expected": ""}
HEADER = ("check", "statistic", "value", "interval", "required", "verdict", "instances")
VERDICT_TEXT = {"passed": "passed", "failed": "FAILED", "inconclusive": "inconclusive"}


def summary_lines(
    tests: Tests,
    verbosity: int = 0,
    width: int = 120,
    comparison: dict[str, Any] | None = None,
    outcomes: dict[str, str] | None = None,
    messages: dict[str, str] | None = None,
) -> list[Line]:
    """Every line of the section, without its title (``outcomes``, ``messages``: pytest's, by node id)."""
    outcomes, messages = outcomes or {}, messages or {}
    attention = explanations.attention_only(tests)
    lines = table_lines(attention, verbosity, outcomes) if attention or not tests else []
    lines.extend(explanations.terminal_lines(tests, outcomes))
    lines.extend(unaudited_lines(tests, outcomes, messages))
    counts = summary(tests)
    lines.append(
        (
            f"{plural(counts['audits'], 'audit')} in {plural(counts['tests'], 'test')}: {counts['failed_audits']} failed, "
            f"{counts['failed_checks']} of {plural(counts['checks'], 'check')} failed, "
            f"{counts['inconclusive_checks']} inconclusive",
            "red" if counts["failed_audits"] else "green",
        )
    )
    for _, label, report in audits(tests):
        lines.extend(atlas_lines(label, report))
        lines.extend((f"{label}: warning: {warning}", "yellow") for warning in report.get("model", {}).get("warnings", []))
    if verbosity >= 0:
        lines.extend(worst_lines(attention, 1 if verbosity == 0 else None, width, outcomes))
    if verbosity > 0:
        lines.extend(model_lines(attention))
    if comparison is not None:
        lines.extend(baseline_lines(comparison))
    return lines


def table_lines(tests: Tests, verbosity: int, outcomes: dict[str, str] | None = None) -> list[Line]:
    """A header, then per audit its test id, verdict and pytest outcome, and one row per check (``-q``: failing
    ones only)."""
    outcomes = outcomes or {}
    groups = []
    for nodeid, label, report in audits(tests):
        checks = [check for check in report["checks"].values() if verbosity >= 0 or not check["passed"]]
        if checks:
            groups.append((nodeid, label, report, checks))
    if not groups:
        return [("no failing checks", "green")] if verbosity < 0 else []
    rows = [_row(check) for *_, checks in groups for check in checks]
    sizes = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    lines: list[Line] = [("  " + _join(HEADER, sizes), "bold")]
    for nodeid, label, report, checks in groups:
        outcome = outcomes.get(nodeid)
        state = verdict_state(report, outcome)
        text = "; ".join(part for part in (verdict(report), outcome_text(outcome)) if part)
        lines.append((f"{label}: {text}", LABEL_STYLE[state]))
        lines.extend(
            ("  " + _join(_row(check), sizes), "" if state == "expected" else ROW_STYLE[check["verdict"]]) for check in checks
        )
    return lines


def unaudited_lines(tests: Tests, outcomes: dict[str, str], messages: dict[str, str]) -> list[Line]:
    """The tests that use the plugin and failed or errored before recording an audit, each with its error."""
    failures = unaudited_failures(tests, outcomes, messages)
    lines: list[Line] = [("tests that failed before recording an audit:", "bold")] if failures else []
    lines.extend((f"  {nodeid}: pytest: {outcome}: {message}", "red") for nodeid, outcome, message in failures)
    return lines


def verdict(report: dict[str, Any]) -> str:
    """``passed``, or which required questions were answered no or inconclusive (``passed (... inconclusive)``
    when ``inconclusive="pass"`` lets them through)."""
    verdicts = report.get("verdicts", {})
    open_questions = [(q, verdicts[q]) for q in report.get("required", []) if verdicts.get(q) in ("no", "inconclusive")]
    if report["passed"]:
        return f"passed ({answered(open_questions)})" if open_questions else "passed"
    return f"FAILED ({answered(open_questions)})"


def worst_lines(tests: Tests, per_check: int | None, width: int, outcomes: dict[str, str] | None = None) -> list[Line]:
    """For each failing audit: its worst instances, each naming the checks it is worst for, as token tables."""
    lines: list[Line] = []
    for nodeid, label, report in audits(tests):
        worst = _worst_by_instance(report, per_check)
        if not worst:
            continue
        if not lines:
            lines.append(("worst instances of the failing checks (tokens, attention, importance):", "bold"))
        lines.append((label, LABEL_STYLE[verdict_state(report, (outcomes or {}).get(nodeid))]))
        instances = report.get("instances", {})
        importances = importances_of(report)
        for index, reasons in worst.items():
            lines.append((f"  instance {index}, worst for " + ", ".join(reasons), ""))
            tokens = instances.get("tokens", [])
            row_tokens = tokens[index] if index < len(tokens) else []
            table = token_table(row_tokens, instance_rows(index, instances.get("attention", []), importances), width, "    ")
            lines.extend((text, "") for text in table)
    return lines


def model_lines(tests: Tests) -> list[Line]:
    """What each audit ran on: the model, what was read and replaced, the seed and the versions."""
    lines: list[Line] = [("audited models:", "bold")]
    for _, label, report in audits(tests):
        model, env = report.get("model", {}), report.get("environment", {})
        lines.append(
            (
                f"  {label}: {model.get('class')} ({model.get('adapter')} adapter) read {model.get('read')}, "
                f"replaced {model.get('replaced')}; seed {report['options'].get('seed')}, "
                f"torch {env.get('torch')}, transformers {env.get('transformers')}",
                "",
            )
        )
    return lines


def baseline_lines(comparison: dict[str, Any]) -> list[Line]:
    regressions = regressions_of(comparison)
    head = (
        f"baseline {comparison.get('path', '')}: {comparison['compared']} statistics compared, "
        f"{len(regressions)} regressed (interval entirely worse than the baseline, tolerance {comparison['tolerance']:g})"
    )
    lines: list[Line] = [(head, "red" if regressions else "green")]
    lines.extend((f"  REGRESSION {regression.describe()}", "red") for regression in regressions)
    for key, what in (("new", "not in the baseline"), ("missing", "in the baseline but not run")):
        if comparison.get(key):
            lines.append((f"  {len(comparison[key])} tests {what}: {', '.join(comparison[key][:5])}", ""))
    return lines


def audits(tests: Tests) -> list[tuple[str, str, dict[str, Any]]]:
    """``(node id, label, report)`` for every recorded audit; a test's second audit is labelled ``nodeid #2``."""
    return [(nodeid, _label(nodeid, i), report) for nodeid, reports in tests.items() for i, report in enumerate(reports)]


def importances_of(report: dict[str, Any]) -> dict[str, Any]:
    """The per-token importances of the agreement checks that ran: ``{"gradient": ..., "loo": ...}``."""
    checks = report["checks"]
    return {name: checks[name]["details"].get("importance") for name in ("gradient", "loo") if name in checks}


def _label(nodeid: str, index: int) -> str:
    return nodeid if index == 0 else f"{nodeid} #{index + 1}"


def _worst_by_instance(report: dict[str, Any], per_check: int | None) -> dict[int, list[str]]:
    worst = int(report.get("options", {}).get("worst", 3))
    count = min(per_check, worst) if per_check is not None else worst
    failing = [check for check in report["checks"].values() if check["verdict"] == "failed"]
    return worst_by_instance(((check["name"], check["per_instance"], check["flagged_instances"]) for check in failing), count)


def _row(check: dict[str, Any]) -> tuple[str, ...]:
    relation = ">=" if check["higher_is_better"] else "<="
    state = VERDICT_TEXT[check["verdict"]]
    if check["verdict"] == "inconclusive" and check.get("instances_needed"):
        state += f" (~{plural(check['instances_needed'], 'instance')} would decide)"
    return (
        check["name"],
        check["statistic_name"],
        fixed(check["statistic"]),
        format_interval(check["interval"]),
        f"{relation} {fixed(check['threshold'])}",
        state,
        flag_count(check["instances"], check["flagged"], check.get("undefined", 0)),
    )


def _join(cells: tuple[str, ...], sizes: list[int]) -> str:
    return "  ".join(cell.ljust(size) for cell, size in zip(cells, sizes, strict=True)).rstrip()
