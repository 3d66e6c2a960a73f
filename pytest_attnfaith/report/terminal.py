"""The ``attnfaith`` terminal summary: a table of every recorded audit and check, then the worst instances.

Verbosity: ``-q`` lists only the failing checks; the default lists every check and, for each failing
audit, its worst instance per failing check; ``-v`` adds up to ``worst`` instances per check and what
each audit read and replaced. Lines come back as ``(text, style)``, style being "", "red", "yellow", "green" or
"bold", for pytest's terminal writer.
"""

from __future__ import annotations

from typing import Any

from pytest_attnfaith.report.atlas import atlas_lines
from pytest_attnfaith.report.baseline import regressions_of
from pytest_attnfaith.report.schema import Tests, summary
from pytest_attnfaith.results import format_interval
from pytest_attnfaith.worst import answered, flag_count, instance_rows, token_table, worst_by_instance

Line = tuple[str, str]
ROW_STYLE = {"passed": "", "failed": "red", "inconclusive": "yellow"}
HEADER = ("check", "statistic", "value", "interval", "required", "verdict", "instances")
VERDICT_TEXT = {"passed": "passed", "failed": "FAILED", "inconclusive": "inconclusive"}


def summary_lines(tests: Tests, verbosity: int = 0, width: int = 120, comparison: dict[str, Any] | None = None) -> list[Line]:
    """Every line of the section, without its title."""
    lines = table_lines(tests, verbosity)
    counts = summary(tests)
    lines.append(
        (
            f"{_count(counts['audits'], 'audit')} in {_count(counts['tests'], 'test')}: {counts['failed_audits']} failed, "
            f"{counts['failed_checks']} of {counts['checks']} checks failed, {counts['inconclusive_checks']} inconclusive",
            "red" if counts["failed_audits"] else "green",
        )
    )
    for label, report in audits(tests):
        lines.extend(atlas_lines(label, report))
        lines.extend((f"{label}: warning: {warning}", "yellow") for warning in report.get("model", {}).get("warnings", []))
    if verbosity >= 0:
        lines.extend(worst_lines(tests, 1 if verbosity == 0 else None, width))
    if verbosity > 0:
        lines.extend(model_lines(tests))
    if comparison is not None:
        lines.extend(baseline_lines(comparison))
    return lines


def table_lines(tests: Tests, verbosity: int) -> list[Line]:
    """A header, then per audit its test id and verdict and one row per check (``-q``: failing ones only)."""
    groups = []
    for label, report in audits(tests):
        checks = [check for check in report["checks"].values() if verbosity >= 0 or not check["passed"]]
        if checks:
            groups.append((label, report, checks))
    if not groups:
        return [("no failing checks", "green")] if verbosity < 0 else []
    rows = [_row(check) for _, _, checks in groups for check in checks]
    sizes = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    lines: list[Line] = [("  " + _join(HEADER, sizes), "bold")]
    for label, report, checks in groups:
        lines.append((f"{label}: {verdict(report)}", "green" if report["passed"] else "red"))
        lines.extend(("  " + _join(_row(check), sizes), ROW_STYLE[check["verdict"]]) for check in checks)
    return lines


def verdict(report: dict[str, Any]) -> str:
    """``passed``, or which required questions were answered no or inconclusive (``passed (... inconclusive)``
    when ``inconclusive="pass"`` lets them through)."""
    verdicts = report.get("verdicts", {})
    open_questions = [(q, verdicts[q]) for q in report.get("required", []) if verdicts.get(q) in ("no", "inconclusive")]
    if report["passed"]:
        return f"passed ({answered(open_questions)})" if open_questions else "passed"
    return f"FAILED ({answered(open_questions)})"


def worst_lines(tests: Tests, per_check: int | None, width: int) -> list[Line]:
    """For each failing audit: its worst instances, each naming the checks it is worst for, as token tables."""
    lines: list[Line] = []
    for label, report in audits(tests):
        worst = _worst_by_instance(report, per_check)
        if not worst:
            continue
        if not lines:
            lines.append(("worst instances of the failing checks (tokens, attention, importance):", "bold"))
        lines.append((label, "red"))
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
    for label, report in audits(tests):
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


def audits(tests: Tests) -> list[tuple[str, dict[str, Any]]]:
    """``(label, report)`` for every recorded audit; a test's second audit is labelled ``nodeid #2``."""
    return [(_label(nodeid, i), report) for nodeid, reports in tests.items() for i, report in enumerate(reports)]


def importances_of(report: dict[str, Any]) -> dict[str, Any]:
    """The per-token importances of the agreement checks that ran: ``{"gradient": ..., "loo": ...}``."""
    checks = report["checks"]
    return {name: checks[name]["details"].get("importance") for name in ("gradient", "loo") if name in checks}


def _label(nodeid: str, index: int) -> str:
    return nodeid if index == 0 else f"{nodeid} #{index + 1}"


def _worst_by_instance(report: dict[str, Any], per_check: int | None) -> dict[int, list[str]]:
    count = per_check if per_check is not None else int(report.get("options", {}).get("worst", 3))
    failing = [check for check in report["checks"].values() if check["verdict"] == "failed"]
    return worst_by_instance(((check["name"], check["per_instance"], check["flagged_instances"]) for check in failing), count)


def _row(check: dict[str, Any]) -> tuple[str, ...]:
    relation = ">=" if check["higher_is_better"] else "<="
    state = VERDICT_TEXT[check["verdict"]]
    if check["verdict"] == "inconclusive" and check.get("instances_needed"):
        state += f" (~{check['instances_needed']:,} instances would decide)"
    return (
        check["name"],
        check["statistic_name"],
        _number(check["statistic"]),
        format_interval(check["interval"]),
        f"{relation} {_number(check['threshold'])}",
        state,
        flag_count(check["instances"], check["flagged"], check.get("undefined", 0)),
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _number(value: float | None) -> str:
    return "nan" if value is None else f"{value:.3f}"


def _join(cells: tuple[str, ...], sizes: list[int]) -> str:
    return "  ".join(cell.ljust(size) for cell, size in zip(cells, sizes, strict=True)).rstrip()
