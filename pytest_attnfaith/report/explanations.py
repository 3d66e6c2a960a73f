"""The explanation audits of a session (``Report.kind == "explanation"``): per test, a leaderboard of its
explainers × checks, for the terminal and the HTML page, and for the page a deletion curve per explainer.

The leaderboard ranks as ``Comparison.ranking`` does (``results.rank_explanations``). The deletion curve is
p_ŷ (mean over the instances) against the fraction of tokens removed, the explanation's top tokens first,
with the mean and band of the random orderings (``details.curve`` of the ``comprehensiveness`` check). Works
on the JSON form; matplotlib only for the figure. Attention audits keep their own tables (``attention_only``).
"""

from __future__ import annotations

import importlib
from html import escape
from typing import Any

from pytest_attnfaith.formatting import fixed
from pytest_attnfaith.report.images import image_maps_html
from pytest_attnfaith.report.outcomes import outcome_text
from pytest_attnfaith.report.schema import Tests
from pytest_attnfaith.results import format_interval, rank_explanations

Line = tuple[str, str]
ERASER = ("comprehensiveness", "sufficiency")
STATE = {"passed": "passed", "failed": "FAILED", "inconclusive": "inconclusive"}
CELL_CLASS = {"passed": "pass", "failed": "fail", "inconclusive": "inconclusive"}
COLOURS = ("#0969da", "#bf5700", "#8250df", "#1a7f37", "#cf222e", "#57606a")


def attention_only(tests: Tests) -> Tests:
    """The session's attention audits (the reports of ``af.audit`` and ``assert_attention_faithful``), per test."""
    kept = {nodeid: [report for report in reports if report.get("kind") != "explanation"] for nodeid, reports in tests.items()}
    return {nodeid: reports for nodeid, reports in kept.items() if reports}


def explanation_audits(tests: Tests) -> dict[str, dict[str, dict[str, Any]]]:
    """Per test node id with explanation audits: explainer (``name #2`` for a repeat) → report, most faithful first,
    then those that could not run (``error``)."""
    grouped: dict[str, dict[str, dict[str, Any]]] = {}
    for nodeid, reports in tests.items():
        named: dict[str, dict[str, Any]] = {}
        for report in reports:
            if report.get("kind") != "explanation":
                continue
            name, repeat = str(report.get("explainer")), 2
            while name in named:
                name, repeat = f"{report.get('explainer')} #{repeat}", repeat + 1
            named[name] = report
        ran = {name: report["checks"] for name, report in named.items() if not report.get("error")}
        if named:
            order = [*rank_explanations(ran), *(name for name in named if name not in ran)]
            grouped[nodeid] = {name: named[name] for name in order}
    return grouped


def leaderboard(reports: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """The columns and, per explainer in rank order, ``(text, verdict)`` cells: rank, explainer, verdict, then per
    check its statistic with interval (for an explainer that could not run: unranked, and why)."""
    checks = list(dict.fromkeys(name for report in reports.values() for name in report["checks"]))
    header = ["rank", "explainer", "verdict", *checks]
    rows = []
    for rank, (name, report) in enumerate(reports.items(), start=1):
        if report.get("error"):
            rows.append([("—", ""), (name, ""), ("could not run", "failed"), *[("—", "")] * len(checks)])
            continue
        verdict = "passed" if report["passed"] else "failed"
        cells = [(str(rank), ""), (name, ""), (STATE[verdict], verdict)]
        for check in checks:
            result = report["checks"].get(check)
            if result is None:
                cells.append(("—", ""))
                continue
            text = f"{fixed(result['statistic'])} {format_interval(result['interval'])} {STATE[result['verdict']]}"
            cells.append((text, result["verdict"]))
        rows.append(cells)
    return header, rows


def refusals(reports: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per explainer that could not run on the model: its name and the reason."""
    return [f"{name} could not run: {report['error']}" for name, report in reports.items() if report.get("error")]


def own_numbers(entry: dict[str, Any] | None) -> tuple[str, str]:
    """What an explainer says about its own numbers, as a cell: integrated gradients' completeness gaps and nodes
    (failed when an instance did not converge), Shapley values' standard errors and top-k pairs within noise."""
    if not entry:
        return ("—", "")
    if entry.get("name") == "integrated_gradients":
        tolerance = entry.get("tolerance")
        bound = f"within {tolerance[0]:g} + {tolerance[1]:.0%}·|f(x) − f(b)|" if tolerance else "fixed nodes"
        text = (
            f"completeness gap ≤ {entry.get('max_gap') or 0.0:.3g} ({bound}); gradient nodes {entry.get('mean_steps') or 0:.0f} "
            f"mean, {max(entry.get('steps') or [0])} max per instance"
        )
        unconverged = int(entry.get("unconverged") or 0)
        if unconverged:
            return (f"{text}; {unconverged} instances did not converge (NaN, left out)", "failed")
        return (text, "passed" if tolerance else "")
    if entry.get("name") == "shapley":
        within = entry.get("within_noise_mean")
        noise = f"{within:.0%}" if isinstance(within, float) else "—"
        return (
            f"standard error ≤ {entry.get('max_standard_error') or 0.0:.3g} over {entry.get('samples')} permutations; "
            f"{noise} of adjacent pairs in the top k = ⌈{entry.get('top_k_bin')}·n⌉ within 2 SE",
            "",
        )
    return ("—", "")


def terminal_lines(tests: Tests, outcomes: dict[str, str] | None = None) -> list[Line]:
    """Per test with explanation audits, its leaderboard (explainer × check), failing rows red, and pytest's
    outcome (``outcomes``, by node id) beside the test."""
    grouped = explanation_audits(tests)
    if not grouped:
        return []
    lines: list[Line] = [
        ("explanations (statistic [interval] per check: ERASER's is the mean gain in p_ŷ over random orderings):", "bold")
    ]
    for nodeid, reports in grouped.items():
        header, rows = leaderboard(reports)
        sizes = [
            max(len(cell) for cell in column) for column in zip(header, *([text for text, _ in row] for row in rows), strict=True)
        ]
        lines.append(("; ".join(part for part in (nodeid, outcome_text((outcomes or {}).get(nodeid))) if part), "bold"))
        lines.append(("  " + _join(header, sizes), ""))
        for row in rows:
            lines.append(("  " + _join([text for text, _ in row], sizes), "" if row[2][1] == "passed" else "red"))
        lines.extend(("  " + sentence, "red") for sentence in refusals(reports))
    return lines


def html_section(tests: Tests, outcomes: dict[str, str] | None = None) -> str:
    """The page's explanations section: per test (with pytest's outcome), its leaderboard and the deletion curves
    (empty without any)."""
    grouped = explanation_audits(tests)
    if not grouped:
        return ""
    figures = _matplotlib()
    parts = ["<section><h3>Explanations: which one clears the bar</h3>"]
    parts.append(
        '<div class="meta">Ranked by checks passed, then by the sum of their statistics. ERASER (DeYoung et al. 2020): '
        "comprehensiveness and sufficiency, each as the mean gain in p<sub>ŷ</sub> over random orderings of the same "
        "tokens, with its interval; an explanation passes when that gain clears the margin.</div>"
    )
    for number, (nodeid, reports) in enumerate(grouped.items()):
        header, rows = leaderboard(reports)
        header.append("its own numbers")
        for row, report in zip(rows, reports.values(), strict=True):
            row.append(own_numbers(report.get("model", {}).get("explainer")))
        head = "<tr>" + "".join(f"<th>{escape(name)}</th>" for name in header) + "</tr>"
        body = "".join(
            "<tr>" + "".join(f'<td class="{CELL_CLASS.get(state, "")}">{escape(text)}</td>' for text, state in row) + "</tr>"
            for row in rows
        )
        outcome = outcome_text((outcomes or {}).get(nodeid))
        title = escape(nodeid) + (f' <span class="meta">{escape(outcome)}</span>' if outcome else "")
        parts.append(f'<h3>{title}</h3><div class="scroll"><table class="leaderboard">{head}{body}</table></div>')
        parts.extend(f'<p class="fail">{escape(sentence)}</p>' for sentence in refusals(reports))
        svg = deletion_curves(reports, f"explanations{number}") if figures else None
        if svg:
            parts.append(f'<div class="figure">{svg}</div>')
        parts.append(image_maps_html(next(iter(reports.values())), {}))  # an image audit: the maps over the image
    return "".join(parts) + "</section>"


def deletion_curves(reports: dict[str, dict[str, Any]], salt: str) -> str | None:
    """One panel per explainer with a comprehensiveness curve: p_ŷ against the fraction removed, and the random
    orderings' mean and band (None when no explainer has one)."""
    import matplotlib as mpl
    from matplotlib.figure import Figure

    from pytest_attnfaith.report.figures import STYLE, to_svg

    curves = {
        name: report["checks"]["comprehensiveness"]["details"].get("curve")
        for name, report in reports.items()
        if "comprehensiveness" in report["checks"]
    }
    curves = {name: curve for name, curve in curves.items() if curve}
    if not curves:
        return None
    style: Any = {**STYLE, "svg.hashsalt": salt}
    with mpl.rc_context(style):
        columns = min(len(curves), 4)
        rows = -(-len(curves) // columns)
        figure = Figure(figsize=(3.3 * columns, 2.8 * rows), layout="constrained")
        panels = figure.subplots(rows, columns, squeeze=False, sharey=True).flatten()
        for index, (axes, (name, curve)) in enumerate(zip(panels, curves.items(), strict=False)):
            colour = COLOURS[index % len(COLOURS)]
            fractions = curve["fraction"]
            axes.fill_between(
                fractions,
                _values(curve["random_low"]),
                _values(curve["random_high"]),
                color="#8c959f",
                alpha=0.3,
                linewidth=0,
                label="random orderings",
            )
            axes.plot(fractions, _values(curve["random"]), color="#57606a", linewidth=1, linestyle=":")
            axes.plot(
                fractions, _values(curve["explainer"]), color=colour, marker="o", markersize=3, label="the explanation's ranking"
            )
            verdict = reports[name]["checks"]["comprehensiveness"]["verdict"]
            axes.set_title(f"{name} ({verdict})", color="#1f2328" if verdict == "passed" else "#a40e26")
            axes.set_xlabel("fraction of tokens removed, top first")
            axes.set_ylim(-0.02, 1.02)
            axes.set_xlim(0, max(fractions))
        panels[0].set_ylabel("mean p of the predicted class")
        panels[0].legend(loc="lower left", fontsize=7, frameon=False)
        for axes in panels[len(curves) :]:
            axes.set_visible(False)
        return to_svg(figure)


def _values(values: list[float | None]) -> list[float]:
    return [float("nan") if value is None else value for value in values]


def _matplotlib() -> bool:
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return False
    return True


def _join(cells: list[str], sizes: list[int]) -> str:
    return "  ".join(cell.ljust(size) for cell, size in zip(cells, sizes, strict=True)).rstrip()
