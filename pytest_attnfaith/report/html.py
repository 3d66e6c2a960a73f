"""``--attnfaith-html``: one self-contained HTML page (inline CSS and SVG, no network).

A summary table (one row per audit: pytest's outcome beside the verdict, one cell per question and
check), the baseline comparison, then per audit its checks, the Jain & Wallace figures
(``figures.py``, matplotlib) and token heat maps of its worst instances: attention beside gradient and
leave-one-out importance. A failing verdict that its test expected (xfail) or accepted (the test
passed) is grey, not red; tests that use the plugin and failed before any audit are listed with their
error. Without matplotlib the page keeps every table and says that the figures need the ``report``
extra. ``audit_html`` renders one audit alone (``Report._repr_html_`` in notebooks).

Heat maps: each row's colour runs from 0 to the row's largest magnitude (printed under its name);
values have two significant digits (exponent notation below 0.01); an input longer than
``worst.LONG_INPUT`` tokens shows the largest values of each row with their neighbours, the whole
row in a ``<details>`` element. Tables wrap instead of scrolling sideways.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections import Counter
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from pytest_attnfaith.formatting import compact, fixed, plural, printable
from pytest_attnfaith.options import CHECK_NAMES, QUESTIONS
from pytest_attnfaith.report import explanations
from pytest_attnfaith.report.atlas import atlas_html
from pytest_attnfaith.report.baseline import regressions_of
from pytest_attnfaith.report.outcomes import OUTCOME_TEXT, OUTCOMES, failure_note, unaudited_failures, verdict_state
from pytest_attnfaith.report.terminal import audits, importances_of, verdict
from pytest_attnfaith.results import HTML_RENDERERS, format_interval
from pytest_attnfaith.worst import defined, flag_count, instance_rows, shown_note, shown_positions, worst_by_instance

VERDICT_CLASS = {"passed": "pass", "failed": "fail", "inconclusive": "inconclusive"}
ANSWER_CLASS = {"yes": "pass", "no": "fail", "inconclusive": "inconclusive"}
STATE_CLASS = {"passed": "pass", "failed": "fail", "expected": "expected"}
OUTCOME_CLASS = {"passed": "pass", "failed": "fail", "error": "fail", "xfailed": "expected", "xpassed": "inconclusive"}
ROW_COLOURS = {"attention": "9, 105, 218", "gradient": "191, 87, 0", "loo": "130, 80, 223"}
HEAT_COLUMNS = 14  # token columns per heat-map table; more wrap onto the next table
HEAT_LABEL_PX, HEAT_CELL_PX, HEAT_GAP_PX = 120, 76, 24
TOKEN_CHARS = 24  # a longer token is cut (the whole of it on hover); shorter ones wrap within their cell
MISSING_MATPLOTLIB = (
    "The figures need matplotlib: <code>pip install 'pytest-attnfaith[report]'</code>. The tables below are complete."
)
SOFT_HYPHENS = {"inconclusive": "incon&shy;clusive", "permutation": "permu&shy;tation", "adversarial": "adver&shy;sarial"}

PAGE_CSS = "body { margin: 0; background: #f6f8fa; }"
CSS = """
.attnfaith { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; }
main.attnfaith { max-width: 1320px; margin: 0 auto; padding: 24px 32px 64px; box-sizing: border-box; }
.attnfaith h1 { font-size: 24px; margin: 0 0 4px; }
.attnfaith h2 { font-size: 17px; margin: 0; overflow-wrap: anywhere; }
.attnfaith h3 { font-size: 14px; margin: 18px 0 6px; color: #57606a; }
.attnfaith .meta { color: #57606a; font-size: 12.5px; overflow-wrap: anywhere; }
.attnfaith .cards { display: flex; gap: 12px; margin: 18px 0; flex-wrap: wrap; }
.attnfaith .card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 16px; min-width: 120px; }
.attnfaith .card b { display: block; font-size: 22px; }
.attnfaith section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 20px; margin: 18px 0; }
.attnfaith table { border-collapse: collapse; font-size: 13px; }
.attnfaith th, .attnfaith td { padding: 4px 8px; text-align: left; border-bottom: 1px solid #eaeef2; vertical-align: top; }
.attnfaith th { color: #57606a; font-weight: 600; }
.attnfaith td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.attnfaith .pass { background: #dafbe1; color: #116329; }
.attnfaith .fail { background: #ffebe9; color: #a40e26; }
.attnfaith .inconclusive { background: #fff8c5; color: #7d4e00; }
.attnfaith .expected { background: #eaeef2; color: #424a53; }
.attnfaith .na { color: #8c959f; }
.attnfaith .badge { display: inline-block; border-radius: 12px; padding: 1px 10px; font-size: 12px; font-weight: 600;
  margin-left: 8px; }
.attnfaith table.summary { width: 100%; }
.attnfaith .summary th { font-size: 12px; hyphens: manual; }
.attnfaith .summary td.test { overflow-wrap: anywhere; min-width: 12em; }
.attnfaith .summary td a { color: inherit; }
.attnfaith .why { color: #a40e26; font-size: 12px; overflow-wrap: anywhere; }
.attnfaith .figure svg { max-width: 100%; height: auto; }
.attnfaith table.heat { table-layout: fixed; margin: 2px 0 8px; }
.attnfaith .heat td { text-align: center; font-variant-numeric: tabular-nums; font-size: 12px; border: 1px solid #fff;
  padding: 3px 2px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.attnfaith .heat th { text-align: right; white-space: nowrap; width: 112px; padding: 3px 8px 3px 0; }
.attnfaith .heat th small { display: block; font-weight: 400; font-size: 11px; }
.attnfaith .heat .tok { font-weight: 600; font-size: 11.5px; color: #1f2328; white-space: normal; overflow-wrap: anywhere;
  line-height: 1.2; vertical-align: bottom; }
.attnfaith .heat .gap { color: #8c959f; background: #f6f8fa; }
.attnfaith details summary { cursor: pointer; color: #57606a; font-size: 12.5px; margin-bottom: 4px; }
.attnfaith .meaning { color: #a40e26; }
.attnfaith .note { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; }
"""


def render_html(document: dict[str, Any]) -> str:
    """The whole page for a session document (``schema.session_document``)."""
    figures = _figures_module()
    tests, outcomes, messages = document["tests"], document.get("outcomes", {}), document.get("messages", {})
    body = [_header(document), _summary_table(tests, outcomes, messages)]
    body.append(explanations.html_section(tests, outcomes))
    body.append(_baseline(document.get("baseline")))
    if figures is None:
        body.append(f'<p class="note">{MISSING_MATPLOTLIB}</p>')
    body.extend(
        _audit_section(number, nodeid, label, report, figures, outcomes.get(nodeid), messages.get(nodeid))
        for number, (nodeid, label, report) in enumerate(audits(explanations.attention_only(tests)))
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>attnfaith report</title><style>{PAGE_CSS}{CSS}</style></head>"
        f'<body><main class="attnfaith">{"".join(body)}</main></body></html>\n'
    )


def audit_html(report: dict[str, Any], label: str) -> str:
    """One audit's section (checks, figures, heat maps) with its scoped style: ``Report._repr_html_``."""
    section = _audit_section(0, label, label, report, _figures_module(), None, None)
    return f'<div class="attnfaith"><style>{CSS}</style>{section}</div>'


def write_html(path: str | Path, document: dict[str, Any]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(document), encoding="utf-8")
    return target


def section_anchor(nodeid: str) -> str:
    """The id of a test's first audit section: stable, so that other reports (pytest-html) can link to it."""
    return "test-" + hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:12]


def _figures_module() -> Any:
    try:
        return importlib.import_module("pytest_attnfaith.report.figures")
    except ImportError:
        return None


def _header(document: dict[str, Any]) -> str:
    env, counts, outcomes = document["environment"], document["summary"], document.get("outcomes", {})
    versions = ", ".join(
        f"{name} {env.get(name) or '—'}" for name in ("pytest-attnfaith", "python", "torch", "transformers", "pytest")
    )
    cards: list[tuple[str, object, str]] = [("tests run", len(outcomes), "")] if outcomes else []
    cards += [
        ("tests with audits", counts["tests"], ""),
        ("audits", counts["audits"], ""),
        ("failed audits", counts["failed_audits"], "fail" if counts["failed_audits"] else "pass"),
        ("failed checks", f"{counts['failed_checks']} / {counts['checks']}", "fail" if counts["failed_checks"] else "pass"),
        ("inconclusive checks", counts["inconclusive_checks"], "inconclusive" if counts["inconclusive_checks"] else ""),
    ]
    card_html = "".join(f'<div class="card {style}">{escape(name)}<b>{value}</b></div>' for name, value, style in cards)
    tally = Counter(outcomes.values())
    pytest_line = ", ".join(  # as pytest counts them: "2 passed, 1 xfailed, 2 errors"
        plural(tally[outcome], outcome) if outcome == "error" else f"{tally[outcome]} {outcome}"
        for outcome in OUTCOMES
        if tally[outcome]
    )
    return (
        "<h1>Attention faithfulness report</h1>"
        f'<div class="meta">{escape(document["created"])} · {escape(versions)} · {escape(env.get("platform", ""))}</div>'
        f'<div class="cards">{card_html}</div>'
        + (f'<div class="meta">pytest: {escape(pytest_line)}</div>' if pytest_line else "")
    )


def _summary_table(tests: dict[str, list[dict[str, Any]]], outcomes: dict[str, str], messages: dict[str, str]) -> str:
    """One row per attention audit and per test that failed before recording any audit (explanation audits have
    their own section)."""
    unaudited = unaudited_failures(tests, outcomes, messages)
    recorded, tests = bool(tests), explanations.attention_only(tests)
    checks = _checks_run(tests)
    pytest_column = bool(outcomes)  # outside pytest (the attnfaith command) there is no outcome to show
    names = ["test", *(["pytest"] if pytest_column else []), "verdict", *QUESTIONS, *checks]
    head = "<tr>" + "".join(f"<th>{SOFT_HYPHENS.get(name, name)}</th>" for name in names) + "</tr>"
    rows = []
    for number, (nodeid, label, report) in enumerate(audits(tests)):
        outcome = outcomes.get(nodeid)
        state = verdict_state(report, outcome)
        why = failure_note(messages.get(nodeid)) if label == nodeid else None
        cells = [
            f'<td class="test"><a href="#audit-{number}">{escape(label)}</a>{_why(why)}</td>',
            *([_outcome_cell(outcome)] if pytest_column else []),
            f'<td class="{STATE_CLASS[state]}">{escape(verdict(report))}</td>',
        ]
        cells.extend(_answer_cell(report, question, state) for question in QUESTIONS)
        cells.extend(_check_cell(report["checks"].get(name), state) for name in checks)
        rows.append("<tr>" + "".join(cells) + "</tr>")
    for nodeid, outcome, message in unaudited:
        rows.append(
            f'<tr><td class="test">{escape(nodeid)}</td>{_outcome_cell(outcome)}'
            f'<td class="na" colspan="{len(names) - 2}">no audit recorded{_why(message)}</td></tr>'
        )
    if not rows:
        return "" if recorded else "<section><p>No audit was recorded in this session.</p></section>"
    return f'<section><h3>Summary</h3><table class="summary">{head}{"".join(rows)}</table></section>'


def _checks_run(tests: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The checks that ran in any audit, in ``CHECK_NAMES`` order (others after them): the summary's columns."""
    ran = dict.fromkeys(name for reports in tests.values() for report in reports for name in report["checks"])
    return [name for name in CHECK_NAMES if name in ran] + [name for name in ran if name not in CHECK_NAMES]


def _why(message: str | None) -> str:
    return f'<div class="why">{escape(message)}</div>' if message else ""


def _outcome_cell(outcome: str | None) -> str:
    if outcome is None:
        return '<td class="na">—</td>'
    text = OUTCOME_TEXT[outcome].replace(" (", "<br>(", 1)
    return f'<td class="{OUTCOME_CLASS.get(outcome, "na")}">{text}</td>'


def _answer_cell(report: dict[str, Any], question: str, state: str) -> str:
    answer = report.get("verdicts", {}).get(question, "not tested")
    if answer == "not tested":
        return '<td class="na">not tested</td>'
    required = "" if question in report.get("required", []) else " (not required)"
    style = _muted(ANSWER_CLASS[answer], state)
    return f'<td class="{style}">{SOFT_HYPHENS.get(answer, answer)}{required}</td>'


def _check_cell(check: dict[str, Any] | None, state: str) -> str:
    if check is None:
        return '<td class="na">—</td>'
    relation = "≥" if check["higher_is_better"] else "≤"
    title = (
        f"{check['statistic_name']} {fixed(check['statistic'])} {format_interval(check['interval'])}, "
        f"required {relation} {fixed(check['threshold'])}: {check['verdict']}"
    )
    style = _muted(VERDICT_CLASS[check["verdict"]], state)
    return f'<td class="num {style}" title="{escape(title)}">{fixed(check["statistic"])}</td>'


def _muted(style: str, state: str) -> str:
    """Red turns grey in an audit whose failure its test expected."""
    return "expected" if style == "fail" and state == "expected" else style


def _baseline(comparison: dict[str, Any] | None) -> str:
    if comparison is None:
        return ""
    regressions = regressions_of(comparison)
    state = "fail" if regressions else "pass"
    items = "".join(f"<li>{escape(regression.describe())}</li>" for regression in regressions)
    return (
        f'<section><h3>Baseline <span class="badge {state}">{plural(len(regressions), "regression")}</span></h3>'
        f"<p>{escape(str(comparison.get('path', '')))}: {comparison['compared']} statistics compared, tolerance "
        f"{comparison['tolerance']:g}; {plural(len(comparison['new']), 'new test')}, {len(comparison['missing'])} "
        f"missing.</p><ul>{items}</ul></section>"
    )


def _audit_section(
    number: int,
    nodeid: str,
    label: str,
    report: dict[str, Any],
    figures: Any,
    outcome: str | None,
    message: str | None,
) -> str:
    state = verdict_state(report, outcome)
    model = report.get("model", {})
    meta = (
        f"{model.get('class')} ({model.get('adapter')} adapter) · read {model.get('read')} · replaced {model.get('replaced')}"
        f" · seed {report['options'].get('seed')} · {plural(report['instances'].get('count', 0), 'instance')}"
    )
    anchor = f' id="{section_anchor(nodeid)}"' if label == nodeid else ""
    badges = f'<span class="badge {STATE_CLASS[state]}">{escape(verdict(report))}</span>'
    if outcome is not None:
        badges += f'<span class="badge {OUTCOME_CLASS.get(outcome, "na")}">pytest: {escape(OUTCOME_TEXT[outcome])}</span>'
    parts = [
        f'<section id="audit-{number}"><h2{anchor}>{escape(label)}{badges}</h2>',
        f'<div class="meta">{escape(meta)}</div>',
        "".join(f'<p class="note">{escape(warning)}</p>' for warning in model.get("warnings", [])),
        _why(failure_note(message) if label == nodeid else None),
        _check_table(report, state),
    ]
    svg = figures.audit_figure(report, f"audit{number}") if figures is not None else None
    if svg:
        parts.append(f'<h3>Jain &amp; Wallace figures</h3><div class="figure">{svg}</div>')
    parts.append(_heat_maps(report))
    parts.append(atlas_html(report))
    return "".join(parts) + "</section>"


def _check_table(report: dict[str, Any], state: str) -> str:
    head = ("check", "statistic", "value", "interval", "required", "verdict", "instances", "what it means")
    rows = ["<tr>" + "".join(f"<th>{name}</th>" for name in head) + "</tr>"]
    for check in report["checks"].values():
        relation = "≥" if check["higher_is_better"] else "≤"
        interval = f"{format_interval(check['interval'])} ({check['confidence']:.0%}, {check['interval_method']})"
        count = flag_count(check["instances"], check["flagged"], check.get("undefined", 0))
        text = {"passed": "passed", "failed": "FAILED"}.get(check["verdict"], "inconclusive")
        failed = check["verdict"] == "failed"
        why = check["meaning"] if failed else check.get("reason", "")
        rows.append(
            f"<tr><td>{escape(check['name'])}</td><td>{escape(check['statistic_name'])}</td>"
            f'<td class="num">{fixed(check["statistic"])}</td><td>{escape(interval)}</td>'
            f'<td class="num">{relation} {fixed(check["threshold"])}</td>'
            f'<td class="{_muted(VERDICT_CLASS[check["verdict"]], state)}">{text}</td><td>{escape(count)}</td>'
            f'<td class="{"meaning" if failed and state != "expected" else ""}">{escape(why)}</td></tr>'
        )
    return f"<table>{''.join(rows)}</table>"


def _heat_maps(report: dict[str, Any]) -> str:
    """Heat maps of the worst instances of the failing checks (``worst`` per check), else of the first two; none
    with ``worst=0``."""
    count = int(report["options"].get("worst", 3))
    if count == 0:
        return ""
    failing = [check for check in report["checks"].values() if check["verdict"] == "failed"]
    worst = worst_by_instance(((c["name"], c["per_instance"], c["flagged_instances"]) for c in failing), count)
    title = "Worst instances" if worst else "Example instances"
    if not worst:
        worst = {index: [] for index in range(min(2, report["instances"].get("count", 0)))}
    maps = [_heat_map(report, index, reasons) for index, reasons in worst.items()]
    return f"<h3>{title}: attention beside gradient and leave-one-out importance</h3>" + "".join(maps)


def _heat_map(report: dict[str, Any], index: int, reasons: list[str]) -> str:
    instances = report["instances"]
    tokens = instances.get("tokens", [])
    row_tokens = [printable(token) for token in (tokens[index] if index < len(tokens) else [])]
    rows = instance_rows(index, instances.get("attention", []), importances_of(report))
    caption = f"instance {index}" + (f", worst for {', '.join(reasons)}" if reasons else "")
    note = shown_note(len(row_tokens))
    columns = shown_positions(rows, len(row_tokens))
    parts = [f'<div class="meta">{escape(caption)}{" · " + escape(note) if note else ""}</div>']
    parts.append(_heat_tables(row_tokens, rows, columns))
    if note:
        everything = _heat_tables(row_tokens, rows, list(range(len(row_tokens))))
        parts.append(f"<details><summary>all {len(row_tokens)} tokens</summary>{everything}</details>")
    return "".join(parts)


def _heat_tables(tokens: list[str], rows: dict[str, Sequence[float | None]], columns: list[int | range]) -> str:
    """``columns`` (positions, and ranges left out) in tables of ``HEAT_COLUMNS`` positions that fit the page."""
    scales = {name: max((abs(v) for v in values if v is not None and defined(v)), default=0.0) for name, values in rows.items()}
    tables = []
    for chunk in _chunks(columns):
        gaps = sum(isinstance(column, range) for column in chunk)
        width = HEAT_LABEL_PX + HEAT_CELL_PX * (len(chunk) - gaps) + HEAT_GAP_PX * gaps
        lines = ["<tr><th></th>" + "".join(_token_cell(tokens, column, len(rows)) for column in chunk) + "</tr>"]
        for name, values in rows.items():
            cells = "".join(_heat_cell(name, values, column, scales[name]) for column in chunk if not isinstance(column, range))
            lines.append(f"<tr><th>{escape(name)}<small>max {compact(scales[name])}</small></th>{cells}</tr>")
        tables.append(f'<table class="heat" style="width: min(100%, {width}px)">{"".join(lines)}</table>')
    return "".join(tables)


def _chunks(columns: list[int | range]) -> list[list[int | range]]:
    """``columns`` in as few tables of at most ``HEAT_COLUMNS`` positions as it takes, of even sizes (15 tokens: 8
    and 7, not 14 and 1); a gap stays with the positions before it."""
    positions = sum(isinstance(column, int) for column in columns)
    size = math.ceil(positions / max(1, math.ceil(positions / HEAT_COLUMNS)))
    chunks: list[list[int | range]] = [[]]
    for column in columns:
        if isinstance(column, int) and sum(isinstance(c, int) for c in chunks[-1]) == size:
            chunks.append([])
        chunks[-1].append(column)
    return chunks


def _token_cell(tokens: list[str], column: int | range, rows: int) -> str:
    if isinstance(column, range):
        left_out = f"tokens {column.start}–{column.stop - 1} left out ({len(column)})"
        return f'<td class="gap" rowspan="{rows + 1}" style="width: {HEAT_GAP_PX}px" title="{left_out}">…</td>'
    token = tokens[column] if column < len(tokens) else ""
    shown = token if len(token) <= TOKEN_CHARS else token[: TOKEN_CHARS - 1] + "…"
    return f'<td class="tok" title="{escape(f"token {column}: {token}")}">{escape(shown)}</td>'


def _heat_cell(name: str, values: Sequence[float | None], position: int, scale: float) -> str:
    value = values[position] if position < len(values) else None
    if value is None or not defined(value):
        return '<td class="na">–</td>'
    alpha = max(0.0, min(1.0, abs(value) / scale)) if scale > 0 else 0.0
    colour = "#fff" if alpha > 0.55 else "#1f2328"
    background = f"rgba({ROW_COLOURS.get(name, '87, 96, 106')}, {alpha:.2f})"
    return f'<td style="background: {background}; color: {colour}" title="{value:.6g}">{compact(value)}</td>'


HTML_RENDERERS["audit"] = audit_html
