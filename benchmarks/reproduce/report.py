"""Tables (Markdown) and the HTML report (inline matplotlib SVG figures) of a reproduction run."""

from __future__ import annotations

import html
import io
import itertools
import math
from typing import Any

import numpy as np

from pytest_attnfaith import QUESTIONS

PAPER = {  # Jain & Wallace 2019, Table 2, BiLSTM: mean ± std (fraction with p <= 0.05)
    "SST": {"gradient": (0.35, 0.21, 0.49), "loo": (0.29, 0.19, 0.36)},
    "AG News": {"gradient": (0.39, 0.13, 0.86), "loo": (0.37, 0.15, 0.80)},
}
MARK = {True: "yes", False: "**no**", None: "–"}
VERDICT_MARK = {"yes": "yes", "no": "**no**", "inconclusive": "*inconclusive*", "not tested": "–"}
CHECK_MARK = {"passed": "pass", "failed": "FAIL", "inconclusive": "inconclusive"}


def _num(value: Any, digits: int = 2) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _tau(check: dict[str, Any] | None) -> str:
    if check is None:
        return "–"
    d, (low, high) = check["details"], check["interval"]
    mark = "" if check["verdict"] == "passed" else f", {CHECK_MARK[check['verdict']]}"
    return f"{_num(d['mean'])} ± {_num(d['std'])} ({_num(d['fraction_significant'])}) [{_num(low)}, {_num(high)}{mark}]"


def _paper(dataset: str, model: str, name: str) -> str:
    if model != "bilstm" or dataset not in PAPER:
        return "–"
    mean, std, fraction = PAPER[dataset][name]
    return f"{mean:.2f} ± {std:.2f} ({fraction:.2f})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def agreement_table(models: list[dict[str, Any]]) -> str:
    """J&W Table 2 beside ours: τ attention vs gradient and vs LOO, mean ± std (fraction p ≤ 0.05)."""
    rows = []
    for m in models:
        checks = m["report"]["checks"]
        rows.append([
            m["dataset"], m["label"], _num(m["test_accuracy"]), f"{m['best_epoch']}",
            _tau(checks.get("gradient")), _paper(m["dataset"], m["model"], "gradient"),
            _tau(checks.get("loo")), _paper(m["dataset"], m["model"], "loo"),
        ])  # fmt: skip
    header = ["data", "model", "test acc", "epoch", "τ grad (ours)", "τ grad (J&W)", "τ LOO (ours)", "τ LOO (J&W)"]
    return _table(header, rows)


def _fraction(check: dict[str, Any] | None, value: str) -> str:
    if check is None:
        return "–"
    low, high = check["interval"]
    return f"{value}; {_num(check['statistic'])} [{_num(low)}, {_num(high)}] flagged, {CHECK_MARK[check['verdict']]}"


def _median(check: dict[str, Any] | None, digits: int) -> str:
    return _num(check["details"]["median"], digits) if check else ""


def verdict_table(models: list[dict[str, Any]]) -> str:
    """Per model: the used / unique checks' statistics and the answer to each question."""
    rows = []
    for m in models:
        checks, verdicts = m["report"]["checks"], m["report"]["verdicts"]
        perm, adv = checks.get("permutation"), checks.get("adversarial")
        rows.append([
            m["dataset"], m["model"],
            _fraction(perm, f"median TVD {_median(perm, 3)}"),
            _fraction(checks.get("uniform"), f"median TVD {_median(checks.get('uniform'), 3)}"),
            _fraction(checks.get("erasure"), f"median Δ {_median(checks.get('erasure'), 3)}"),
            _fraction(adv, f"median max JSD {_median(adv, 2)}"),
            *(VERDICT_MARK[verdicts.get(q, "not tested")] for q in QUESTIONS),
        ])  # fmt: skip
    return _table(["data", "model", "permutation", "uniform", "erasure", "adversarial", *QUESTIONS], rows)


def history_table(models: list[dict[str, Any]]) -> str:
    """Per tracked model and epoch: dev ROC-AUC, dev τ (gradient, LOO) and the permutation check where tracked."""
    rows = [
        [
            m["dataset"],
            m["model"],
            str(h["epoch"]),
            _num(h["dev_auc"], 3),
            _num(h["dev_accuracy"]),
            _num(h["dev_tau_gradient"]),
            _num(h["dev_tau_loo"]),
            _num(h.get("dev_permutation_median", float("nan")), 3),
            _num(h.get("dev_permutation_flagged", float("nan"))),
        ]
        for m in models
        for h in m["history"]
        if "dev_tau_gradient" in h
    ]
    header = ["data", "model", "epoch", "dev AUC", "dev acc", "dev τ grad", "dev τ LOO", "dev perm. TVD", "dev perm. flagged"]
    return _table(header, rows) if rows else ""


def head_answers(rows: list[dict[str, Any]]) -> dict[tuple[int, int], dict[str, bool | None]]:
    """From a Report's ``per_head`` rows: per (layer, head), each question's answer (None: no check ran); the layers'
    own rows (``head: "all"``) are left out."""
    passed: dict[tuple[int, int], dict[str, bool]] = {}
    for row in (row for row in rows if row["head"] != "all"):
        passed.setdefault((row["layer"], row["head"]), {})[row["check"]] = row["passed"]
    out = {}
    for key, checks in passed.items():
        out[key] = {
            q: (all(checks[c] for c in names if c in checks) if any(c in checks for c in names) else None)
            for q, names in QUESTIONS.items()
        }
    return out


def transformer_tables(result: dict[str, Any]) -> str:
    """MiniLM: the last-layer and rollout verdicts, and a layer × head grid of the questions answered yes."""
    parts = [
        f"Fine-tuned on {result['trained_on']} SST sentences ({result['epochs']} epoch): test accuracy "
        f"{_num(result['test_accuracy'])}, ROC-AUC {_num(result['test_auc'])}; audited on {result['audit']['audited']} test "
        f"sentences drawn at random ({result['audit'].get('audited_positive', '?')} positive)."
    ]
    rows = []
    for name in ("last_layer", "rollout"):
        report = result["audit"][name]
        checks = report["checks"]
        stats = [f"{c} {_num(checks[c]['statistic'])}{'' if checks[c]['passed'] else ' ✗'}" for c in checks]
        rows.append([name, "; ".join(stats), *(VERDICT_MARK[report["verdicts"].get(q, "not tested")] for q in QUESTIONS)])
    parts.append(_table(["attention read", "statistics (✗ = failed)", *QUESTIONS], rows))
    answers = head_answers(result["audit"]["per_head"]["per_head"])
    layers = sorted({layer for layer, _ in answers})
    heads = sorted({head for _, head in answers})
    grid = []
    for layer in layers:
        cells = []
        for head in heads:
            a = answers.get((layer, head), {})
            cells.append("".join(letter for letter, q in (("U", "used"), ("A", "agrees")) if a.get(q)) or "·")
        grid.append([str(layer), *cells])
    parts.append("Per layer and head (the checks of each question that ran there all pass: U = used, A = agrees):")
    parts.append(_table(["layer", *(f"h{h}" for h in heads)], grid))
    return "\n\n".join(parts)


def markdown(result: dict[str, Any]) -> str:
    sections = ["## Agreement (J&W Table 2)", agreement_table(result["models"]), "## Verdicts", verdict_table(result["models"])]
    history = history_table(result["models"])
    if history:
        sections += ["## Agreement and use during training (dev subsample)", history]
    if result.get("transformer"):
        sections += ["## MiniLM fine-tuned on SST", transformer_tables(result["transformer"])]
    return "\n\n".join(sections) + "\n"


# ----------------------------------------------------------------------------------------------- figures


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _values(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _model_panels(models: list[dict[str, Any]], xlabel: str, height: float = 2.6) -> tuple[Any, list[tuple[Any, Any]]]:
    """One panel per model in a row, sharing y, each titled "data: model"; the figure and (axes, model) pairs."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), height), sharey=True, squeeze=False)
    panels = list(zip(axes[0], models, strict=True))
    for ax, m in panels:
        ax.set_title(f"{m['dataset']}: {m['model']}", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    return fig, panels


def permutation_figure(models: list[dict[str, Any]]) -> str:
    """J&W Fig. 2–4: per model, per-instance median permutation TVD by max-attention bin (box per bin)."""
    fig, panels = _model_panels(models, "max attention", height=2.8)
    for ax, m in panels:
        check = m["report"]["checks"]["permutation"]
        values, peak = _values(check["per_instance"]), _values(check["details"]["max_attention"])
        edges = [0.0, 0.25, 0.5, 0.75, 1.0001]
        groups = [values[(peak >= lo) & (peak < hi) & ~np.isnan(values)] for lo, hi in itertools.pairwise(edges)]
        ax.boxplot([g if g.size else [np.nan] for g in groups], showfliers=False)
        ax.set_xticks(
            range(1, 5),
            [f"{lo:.2f}–{min(hi, 1):.2f}\n(n={g.size})" for lo, hi, g in zip(edges[:-1], edges[1:], groups, strict=True)],
            fontsize=7,
        )
    panels[0][0].set_ylabel("median TVD under permutation", fontsize=8)
    return _svg(fig)


def adversarial_figure(models: list[dict[str, Any]]) -> str:
    """J&W Fig. 7–9: histogram of the max JSD reachable within TVD ≤ ε, per model."""
    fig, panels = _model_panels(models, "max JSD within ε")
    for ax, m in panels:
        values = _values(m["report"]["checks"]["adversarial"]["per_instance"])
        ax.hist(values[~np.isnan(values)], bins=np.linspace(0, math.log(2), 15), color="#4c72b0")
    panels[0][0].set_ylabel("instances", fontsize=8)
    return _svg(fig)


def tau_figure(models: list[dict[str, Any]]) -> str:
    """Histograms of the per-instance τ (gradient, LOO), per model."""
    fig, panels = _model_panels(models, "Kendall τ")
    for ax, m in panels:
        for name, color in (("gradient", "#4c72b0"), ("loo", "#dd8452")):
            check = m["report"]["checks"].get(name)
            if check is not None:
                values = _values(check["per_instance"])
                ax.hist(values[~np.isnan(values)], bins=np.linspace(-1, 1, 21), alpha=0.6, color=color, label=name)
        ax.legend(fontsize=7)
    return _svg(fig)


def head_figure(rows: list[dict[str, Any]]) -> str:
    """MiniLM: layer × head heat maps of each check's statistic."""
    import matplotlib.pyplot as plt

    rows = [row for row in rows if row["head"] != "all"]
    checks = list(dict.fromkeys(row["check"] for row in rows))
    layers = sorted({row["layer"] for row in rows})
    heads = sorted({row["head"] for row in rows})
    fig, axes = plt.subplots(1, len(checks), figsize=(3.0 * len(checks), 2.6), squeeze=False)
    for ax, name in zip(axes[0], checks, strict=True):
        grid = np.full((len(layers), len(heads)), np.nan)
        for row in rows:
            if row["check"] == name and row["statistic"] is not None:
                grid[layers.index(row["layer"]), heads.index(row["head"])] = row["statistic"]
        image = ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.05)
    return _svg(fig)


def _markdown_table_html(text: str) -> str:
    """The Markdown tables and paragraphs of ``markdown()`` as HTML (just what it emits)."""
    out = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        if lines[0].startswith("## "):
            out.append(f"<h2>{html.escape(lines[0][3:])}</h2>")
        elif lines[0].startswith("|"):
            cells = [
                [c.strip().replace("**", "") for c in line.strip("|").split("|")] for line in lines if not line.startswith("|---")
            ]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells[1:])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        else:
            out.append(f"<p>{html.escape(block)}</p>")
    return "\n".join(out)


def html_page(result: dict[str, Any]) -> str:
    """The whole report: tables, then per dataset the permutation, adversarial and τ figures, then MiniLM."""
    body = [_markdown_table_html(markdown(result))]
    for dataset in dict.fromkeys(m["dataset"] for m in result["models"]):
        full = [m for m in result["models"] if m["dataset"] == dataset and "permutation" in m["report"]["checks"]]
        if not full:
            continue
        body.append(f"<h2>{html.escape(dataset)}: median permutation TVD by max attention (J&amp;W Fig. 2–4)</h2>")
        body.append(permutation_figure(full))
        body.append(f"<h2>{html.escape(dataset)}: max JSD of an adversarial attention within ε (J&amp;W Fig. 7–9)</h2>")
        body.append(adversarial_figure(full))
        body.append(f"<h2>{html.escape(dataset)}: per-instance Kendall τ</h2>")
        body.append(tau_figure([m for m in result["models"] if m["dataset"] == dataset]))
    transformer = result.get("transformer")
    if transformer:
        body.append("<h2>MiniLM: statistic per layer and head</h2>")
        body.append(head_figure(transformer["audit"]["per_head"]["per_head"]))
    style = (
        "body{font-family:sans-serif;max-width:1400px;margin:auto} table{border-collapse:collapse;font-size:13px} "
        "td,th{border:1px solid #ccc;padding:3px 6px}"
    )
    meta = html.escape(" · ".join(f"{k}: {v}" for k, v in result["run"].items() if not isinstance(v, dict)))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Reproducing Attention is not Explanation</title>"
        f"<style>{style}</style></head><body><h1>Reproducing Jain &amp; Wallace (2019)</h1>"
        f"<p>{meta}</p>{''.join(body)}</body></html>"
    )
