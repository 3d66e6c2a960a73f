"""The per-head atlas in reports: layer × head maps per question (HTML) and the layers and heads that matter (terminal).

Works on the JSON rows of ``report["per_head"]`` (``atlas.per_head_rows``): one row per (layer, head, check), ``head``
``"all"`` for the layer's row. A head answers a question as an audit does (``results.question_answer``) from the
FDR-controlled verdicts of its checks of that question.
"""

from __future__ import annotations

from collections import Counter
from html import escape
from typing import Any

from pytest_attnfaith.formatting import compact, fixed
from pytest_attnfaith.options import QUESTIONS
from pytest_attnfaith.results import question_answer

Rows = list[dict[str, Any]]
ANSWER_CLASS = {"yes": "pass", "no": "fail", "inconclusive": "inconclusive", "not tested": "na"}
TOP_HEADS = 3


def answers(rows: Rows) -> dict[str, dict[tuple[int, Any], str]]:
    """Question → (layer, head) → answer, for the questions whose checks ran."""
    verdicts: dict[tuple[int, Any], dict[str, str]] = {}
    for row in rows:
        verdicts.setdefault((row["layer"], row["head"]), {})[row["check"]] = row["verdict"]
    out: dict[str, dict[tuple[int, Any], str]] = {}
    for question, checks in QUESTIONS.items():
        if not any(check in by_check for by_check in verdicts.values() for check in checks):
            continue
        out[question] = {
            cell: question_answer([v for c, v in by_check.items() if c in checks]) for cell, by_check in verdicts.items()
        }
    return out


def head_counts(rows: Rows) -> dict[str, Counter[str]]:
    """Per check, how many heads passed, failed, were inconclusive (FDR-controlled)."""
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        if row["head"] != "all":
            counts.setdefault(row["check"], Counter())[row["verdict"]] += 1
    return counts


def top_heads(rows: Rows, check: str, count: int = TOP_HEADS) -> Rows:
    """The heads of ``check`` ranked first (the effect furthest on the passing side)."""
    ranked = [row for row in rows if row["check"] == check and row["head"] != "all" and row.get("rank") is not None]
    return sorted(ranked, key=lambda row: row["rank"])[:count]


def atlas_lines(label: str, report: dict[str, Any]) -> list[tuple[str, str]]:
    """A few terminal lines: per check the head verdicts, the layers that pass and the top heads by effect."""
    rows = report.get("per_head") or []
    if not rows:
        return []
    layers = sorted({row["layer"] for row in rows})
    heads = sorted({row["head"] for row in rows if row["head"] != "all"})
    lines = [
        (
            f"{label}: per-head atlas, {len(layers)} layers × {len(heads)} heads (verdicts controlled for false discoveries)",
            "bold",
        )
    ]
    counts = head_counts(rows)
    for check, tally in counts.items():
        passing = [row["layer"] for row in rows if row["check"] == check and row["head"] == "all" and row["verdict"] == "passed"]
        best = ", ".join(f"L{row['layer']}H{row['head']} {_effect(row)}" for row in top_heads(rows, check))
        lines.append(
            (
                f"  {check}: heads {tally['passed']} passed, {tally['failed']} failed, {tally['inconclusive']} inconclusive; "
                f"layers passing: {_layer_list(passing)}; top heads by effect: {best}",
                "",
            )
        )
    return lines


def atlas_html(report: dict[str, Any]) -> str:
    """Layer × head heat maps, one per question answered: each cell the head's answer, its shade the effect of the
    question's first check (darker: further on the passing side), the layer's row (all heads edited) on the right."""
    rows = report.get("per_head") or []
    if not rows:
        return ""
    grids = answers(rows)
    layers = sorted({row["layer"] for row in rows})
    heads = [*sorted({row["head"] for row in rows if row["head"] != "all"}), "all"]
    parts = ["<h3>Per-head atlas: answers per (layer, head), verdicts controlled for false discoveries</h3>"]
    counts = head_counts(rows)
    parts.append(
        "<p>"
        + "; ".join(
            f"{escape(check)}: {tally['passed']} heads passed, {tally['failed']} failed, {tally['inconclusive']} inconclusive"
            for check, tally in counts.items()
        )
        + "</p>"
    )
    for question, grid in grids.items():
        effects = _effects(rows, question)
        head = "<tr><th>layer</th>" + "".join(f"<th>{'all' if h == 'all' else f'h{h}'}</th>" for h in heads) + "</tr>"
        body = []
        for layer in layers:
            cells = "".join(_cell(grid.get((layer, h), "not tested"), effects.get((layer, h))) for h in heads)
            body.append(f"<tr><th>{layer}</th>{cells}</tr>")
        table = f'<table class="heat">{head}{"".join(body)}</table>'
        parts.append(f'<div class="meta">{escape(question)}</div><div class="scroll">{table}</div>')
    return "".join(parts)


def _effects(rows: Rows, question: str) -> dict[tuple[int, Any], dict[str, Any]]:
    checks = [check for check in QUESTIONS[question] if any(row["check"] == check for row in rows)]
    if not checks:
        return {}
    return {(row["layer"], row["head"]): row for row in rows if row["check"] == checks[0]}


def _cell(answer: str, row: dict[str, Any] | None) -> str:
    if row is None:
        return f'<td class="{ANSWER_CLASS[answer]}">{escape(answer)}</td>'
    value = row["effect"]["value"]
    title = (
        f"{row['check']}: {row['effect']['name']} {_effect(row)}; "
        f"{row['statistic_name']} {fixed(row['statistic'])}, q {compact(row.get('q_value'))}: {row['verdict']}; "
        f"rank {row.get('rank')}"
    )
    return f'<td class="{ANSWER_CLASS[answer]}" title="{escape(title)}">{compact(value)}</td>'


def _layer_list(layers: list[int]) -> str:
    return ", ".join(str(layer) for layer in layers) if layers else "none"


def _effect(row: dict[str, Any]) -> str:
    """A row's effect with its interval, two significant digits each (a TVD of 1e-4 reads ``1.0e-4``, not ``0.000``)."""
    low, high = row["effect"]["interval"]
    return f"{compact(row['effect']['value'])} [{compact(low)}, {compact(high)}]"
