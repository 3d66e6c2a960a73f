"""``--attnfaith-html``: one self-contained HTML page (inline CSS and SVG, no network).

A summary table (one row per audit, one green or red cell per check), the baseline comparison,
then per audit its checks, the Jain & Wallace figures (``figures.py``, matplotlib) and token heat
maps of its worst instances: attention beside gradient and leave-one-out importance. Without
matplotlib the page keeps every table and says that the figures need the ``report`` extra.
"""

from __future__ import annotations

import importlib
from html import escape
from pathlib import Path
from typing import Any

from pytest_attnfaith.options import CHECK_NAMES, QUESTIONS
from pytest_attnfaith.report.atlas import atlas_html
from pytest_attnfaith.report.baseline import regressions_of
from pytest_attnfaith.report.terminal import audits, importances_of, verdict
from pytest_attnfaith.results import format_interval
from pytest_attnfaith.worst import defined, flag_count, instance_rows, worst_by_instance

VERDICT_CLASS = {"passed": "pass", "failed": "fail", "inconclusive": "inconclusive"}
ANSWER_CLASS = {"yes": "pass", "no": "fail", "inconclusive": "inconclusive"}
ROW_COLOURS = {"attention": "9, 105, 218", "gradient": "191, 87, 0", "loo": "130, 80, 223"}
MISSING_MATPLOTLIB = (
    "The figures need matplotlib: <code>pip install 'pytest-attnfaith[report]'</code>. The tables below are complete."
)

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 0; background: #f6f8fa; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0; word-break: break-all; }
h3 { font-size: 14px; margin: 18px 0 6px; color: #57606a; }
.meta { color: #57606a; font-size: 12.5px; }
.cards { display: flex; gap: 12px; margin: 18px 0; flex-wrap: wrap; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 16px; min-width: 120px; }
.card b { display: block; font-size: 22px; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 20px; margin: 18px 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 10px; text-align: left; border-bottom: 1px solid #eaeef2; white-space: nowrap; }
th { color: #57606a; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { background: #dafbe1; color: #116329; } .fail { background: #ffebe9; color: #a40e26; } .na { color: #8c959f; }
.inconclusive { background: #fff8c5; color: #7d4e00; }
.badge { display: inline-block; border-radius: 12px; padding: 1px 10px; font-size: 12px; font-weight: 600; margin-left: 8px; }
.summary td a { color: inherit; }
.scroll { overflow-x: auto; }
.figure svg { max-width: 100%; height: auto; }
.heat td { text-align: center; font-variant-numeric: tabular-nums; font-size: 12px; border: 1px solid #fff; min-width: 38px; }
.heat th { text-align: right; }
.heat .tok { font-weight: 600; color: #1f2328; }
.meaning { white-space: normal; color: #a40e26; }
.note { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; }
"""


def render_html(document: dict[str, Any]) -> str:
    """The whole page for a session document (``schema.session_document``)."""
    figures = _figures_module()
    body = [_header(document), _summary_table(document["tests"]), _baseline(document.get("baseline"))]
    if figures is None:
        body.append(f'<p class="note">{MISSING_MATPLOTLIB}</p>')
    body.extend(
        _audit_section(number, label, report, figures) for number, (label, report) in enumerate(audits(document["tests"]))
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>attnfaith report</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def write_html(path: str | Path, document: dict[str, Any]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(document), encoding="utf-8")
    return target


def _figures_module() -> Any:
    try:
        return importlib.import_module("pytest_attnfaith.report.figures")
    except ImportError:
        return None


def _header(document: dict[str, Any]) -> str:
    env, counts = document["environment"], document["summary"]
    versions = ", ".join(
        f"{name} {env.get(name) or '—'}" for name in ("pytest-attnfaith", "python", "torch", "transformers", "pytest")
    )
    cards = [
        ("tests", counts["tests"], ""),
        ("audits", counts["audits"], ""),
        ("failed audits", counts["failed_audits"], "fail" if counts["failed_audits"] else "pass"),
        ("failed checks", f"{counts['failed_checks']} / {counts['checks']}", "fail" if counts["failed_checks"] else "pass"),
        ("inconclusive checks", counts["inconclusive_checks"], "inconclusive" if counts["inconclusive_checks"] else ""),
    ]
    card_html = "".join(f'<div class="card {style}">{escape(name)}<b>{value}</b></div>' for name, value, style in cards)
    return (
        "<h1>Attention faithfulness report</h1>"
        f'<div class="meta">{escape(document["created"])} · {escape(versions)} · {escape(env.get("platform", ""))}</div>'
        f'<div class="cards">{card_html}</div>'
    )


def _summary_table(tests: dict[str, list[dict[str, Any]]]) -> str:
    head = "<tr><th>test</th><th>verdict</th>" + "".join(f"<th>{q}</th>" for q in QUESTIONS)
    head += "".join(f"<th>{name}</th>" for name in CHECK_NAMES) + "</tr>"
    rows = []
    for number, (label, report) in enumerate(audits(tests)):
        cells = [f'<td><a href="#audit-{number}">{escape(label)}</a></td>', _verdict_cell(report)]
        cells.extend(_answer_cell(report, question) for question in QUESTIONS)
        cells.extend(_check_cell(report["checks"].get(name)) for name in CHECK_NAMES)
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        return "<section><p>No audit was recorded in this session.</p></section>"
    return f'<section><h3>Summary</h3><div class="scroll"><table class="summary">{head}{"".join(rows)}</table></div></section>'


def _verdict_cell(report: dict[str, Any]) -> str:
    return f'<td class="{"pass" if report["passed"] else "fail"}">{escape(verdict(report))}</td>'


def _answer_cell(report: dict[str, Any], question: str) -> str:
    answer = report.get("verdicts", {}).get(question, "not tested")
    if answer == "not tested":
        return '<td class="na">not tested</td>'
    required = "" if question in report.get("required", []) else " (not required)"
    return f'<td class="{ANSWER_CLASS[answer]}">{answer}{required}</td>'


def _check_cell(check: dict[str, Any] | None) -> str:
    if check is None:
        return '<td class="na">—</td>'
    relation = "≥" if check["higher_is_better"] else "≤"
    title = (
        f"{check['statistic_name']} {_number(check['statistic'])} {format_interval(check['interval'])}, "
        f"required {relation} {_number(check['threshold'])}: {check['verdict']}"
    )
    return f'<td class="num {VERDICT_CLASS[check["verdict"]]}" title="{escape(title)}">{_number(check["statistic"])}</td>'


def _baseline(comparison: dict[str, Any] | None) -> str:
    if comparison is None:
        return ""
    regressions = regressions_of(comparison)
    state = "fail" if regressions else "pass"
    items = "".join(f"<li>{escape(regression.describe())}</li>" for regression in regressions)
    return (
        f'<section><h3>Baseline <span class="badge {state}">{len(regressions)} regressions</span></h3>'
        f"<p>{escape(str(comparison.get('path', '')))}: {comparison['compared']} statistics compared, tolerance "
        f"{comparison['tolerance']:g}; {len(comparison['new'])} new tests, {len(comparison['missing'])} missing.</p>"
        f"<ul>{items}</ul></section>"
    )


def _audit_section(number: int, label: str, report: dict[str, Any], figures: Any) -> str:
    state = "pass" if report["passed"] else "fail"
    model = report.get("model", {})
    meta = (
        f"{model.get('class')} ({model.get('adapter')} adapter) · read {model.get('read')} · replaced {model.get('replaced')}"
        f" · seed {report['options'].get('seed')} · {report['instances'].get('count')} instances"
    )
    parts = [
        f'<section id="audit-{number}"><h2>{escape(label)}<span class="badge {state}">{escape(verdict(report))}</span></h2>',
        f'<div class="meta">{escape(meta)}</div>',
        _check_table(report),
    ]
    svg = figures.audit_figure(report, f"audit{number}") if figures is not None else None
    if svg:
        parts.append(f'<h3>Jain &amp; Wallace figures</h3><div class="figure">{svg}</div>')
    parts.append(_heat_maps(report))
    parts.append(atlas_html(report))
    return "".join(parts) + "</section>"


def _check_table(report: dict[str, Any]) -> str:
    head = ("check", "statistic", "value", "interval", "required", "verdict", "instances", "meaning of a failure")
    rows = ["<tr>" + "".join(f"<th>{name}</th>" for name in head) + "</tr>"]
    for check in report["checks"].values():
        relation = "≥" if check["higher_is_better"] else "≤"
        cells = [
            check["name"],
            check["statistic_name"],
            _number(check["statistic"]),
            f"{format_interval(check['interval'])} ({check['confidence']:.0%}, {check['interval_method']})",
            f"{relation} {_number(check['threshold'])}",
        ]
        count = flag_count(check["instances"], check["flagged"], check.get("undefined", 0))
        state = {"passed": "passed", "failed": "FAILED"}.get(check["verdict"], "inconclusive")
        why = check["meaning"] if check["verdict"] == "failed" else check.get("reason", "")
        rows.append(
            "<tr>"
            + "".join(f"<td>{escape(cell)}</td>" for cell in cells)
            + f'<td class="{VERDICT_CLASS[check["verdict"]]}">{state}</td><td>{escape(count)}</td>'
            + f'<td class="meaning">{escape(why)}</td></tr>'
        )
    return f'<div class="scroll"><table>{"".join(rows)}</table></div>'


def _heat_maps(report: dict[str, Any]) -> str:
    failing = [check for check in report["checks"].values() if check["verdict"] == "failed"]
    count = int(report["options"].get("worst", 3))
    worst = worst_by_instance(((c["name"], c["per_instance"], c["flagged_instances"]) for c in failing), count)
    title = "Worst instances" if worst else "Example instances"
    if not worst:
        worst = {index: [] for index in range(min(2, report["instances"].get("count", 0)))}
    tables = [_heat_map(report, index, reasons) for index, reasons in worst.items()]
    return f"<h3>{title}: attention beside gradient and leave-one-out importance</h3>" + "".join(tables)


def _heat_map(report: dict[str, Any], index: int, reasons: list[str]) -> str:
    instances = report["instances"]
    tokens = instances.get("tokens", [])
    row_tokens = tokens[index] if index < len(tokens) else []
    rows = instance_rows(index, instances.get("attention", []), importances_of(report))
    caption = f"instance {index}" + (f", worst for {', '.join(reasons)}" if reasons else "")
    lines = ["<tr><th></th>" + "".join(f'<td class="tok">{escape(token)}</td>' for token in row_tokens) + "</tr>"]
    for name, values in rows.items():
        top = max((abs(v) for v in values if v is not None and defined(v)), default=0.0) or 1.0
        cells = "".join(_heat_cell(name, v, top) for v in values)
        lines.append(f"<tr><th>{escape(name)}</th>{cells}</tr>")
    return f'<div class="meta">{escape(caption)}</div><div class="scroll"><table class="heat">{"".join(lines)}</table></div>'


def _heat_cell(name: str, value: float | None, top: float) -> str:
    if not defined(value):
        return '<td class="na">–</td>'
    alpha = max(0.0, min(1.0, abs(value or 0.0) / top))
    colour = "#fff" if alpha > 0.55 else "#1f2328"
    return f'<td style="background: rgba({ROW_COLOURS.get(name, "87, 96, 106")}, {alpha:.2f}); color: {colour}">{value:.2f}</td>'


def _number(value: float | None) -> str:
    return "nan" if value is None else f"{value:.3f}"
