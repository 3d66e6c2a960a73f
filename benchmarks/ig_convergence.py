"""Integrated gradients that converge: completeness gap and cost per instance, per model, baseline and sink.

One command, one process (writes its section of ``benchmarks/RESULTS.md`` and the raw JSON):

    nice -n 10 .venv/bin/python -m benchmarks.ig_convergence [--models bilstm minilm smollm2] [--threads 1]

For each model and each ``ig_baseline`` (zeros, mask, mean) — and on SmolLM2 each ``sink`` (the first token left
out, or kept and replaced like any other) — two runs in the same process on the same inputs:

* fixed: 50 Gauss–Legendre nodes (``ig_tolerance=None``; 0.2's explainer), its completeness gaps
  |Σ_t IG_t − (f(x) − f(b))| and how many instances miss 0.02 + 5% of |f(x) − f(b)| (the acceptance bar);
* adaptive: the default ``ig_tolerance`` and ``ig_max_steps``: gradient nodes per instance (mean, max), the
  instances left unconverged, the largest gap, and CPU time as a ratio of the fixed run's.

f is the explainer's: the probability of the predicted class. Models: J&W's BiLSTM of the zoo (trained in seconds on
the generated sentiment task; 16 held-out sentences), the packaged MiniLM fine-tuned for six steps as the tests do
(16 sentences), SmolLM2-135M-Instruct as a zero-shot classifier (``targets`` = the label words, ``--prompts`` SST
test prompts, 8 by default).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import pytest_attnfaith as af
from benchmarks import smollm2
from benchmarks.sections import write_section
from benchmarks.speed import held_out, machine, trained_bilstm
from pytest_attnfaith.explainers import integrated_gradients, notes
from pytest_attnfaith.options import resolve_options
from pytest_attnfaith.session import opened

COMMAND = "nice -n 10 .venv/bin/python -m benchmarks.ig_convergence"
BASELINES = ("zeros", "mask", "mean")
BAR = (0.02, 0.05)  # the acceptance bar: 0.02 + 5% of |f(x) − f(b)|
HERE = Path(__file__).resolve().parent


def cases(names: list[str], prompts: int) -> list[dict[str, Any]]:
    """(name, model, inputs, options, sinks) of the models asked for."""
    out: list[dict[str, Any]] = []
    if "bilstm" in names:
        net, _, _ = trained_bilstm()
        model = af.wrap(net, attention="attn", embeddings="embed")
        out.append({"name": "BiLSTM", "model": model, "inputs": held_out(16), "options": {"mask_token_id": 0}, "sinks": ["auto"]})
    if "minilm" in names:
        from tests.huggingface.conftest import fine_tuned_minilm, minilm_tokenizer, sentiment_texts

        tokenizer = minilm_tokenizer()
        texts, _ = sentiment_texts(16, seed=1)
        inputs = dict(tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True))
        options = {"mask_token_id": tokenizer.mask_token_id}
        out.append(
            {"name": "MiniLM", "model": fine_tuned_minilm(tokenizer), "inputs": inputs, "options": options, "sinks": ["auto"]}
        )
    if "smollm2" in names:
        model, tokenizer = smollm2.load()
        texts, _ = smollm2.sst(smollm2.DEFAULT_SST, prompts, seed=0)
        wrapped = af.huggingface(model, tokenizer=tokenizer)
        options = {"targets": list(smollm2.TARGETS)}
        out.append(
            {
                "name": "SmolLM2",
                "model": wrapped,
                "inputs": smollm2.encode(tokenizer, texts),
                "options": options,
                "sinks": ["exclude", "keep"],
            }
        )
    return out


def run_ig(model: Any, inputs: Any, **options: Any) -> tuple[dict[str, Any], float]:
    """The explainer's report entry and the CPU seconds of one integrated-gradients run."""
    resolved = resolve_options(**options)
    with opened(model, inputs, resolved) as context:
        start = time.process_time()
        integrated_gradients.attribute(context)
        seconds = time.process_time() - start
        entry = notes.take(context)
    assert entry is not None
    return entry, seconds


def measure(case: dict[str, Any], baseline: str, sink: str, max_steps: int) -> dict[str, Any]:
    options = {**case["options"], "ig_baseline": baseline, "sink": sink, "ig_max_steps": max_steps}
    fixed, fixed_seconds = run_ig(case["model"], case["inputs"], ig_tolerance=None, **options)
    adaptive, adaptive_seconds = run_ig(case["model"], case["inputs"], **options)
    changes = torch.tensor(fixed["changes"], dtype=torch.float64)
    bar = BAR[0] + BAR[1] * changes.abs()
    gaps = torch.tensor(fixed["gaps"], dtype=torch.float64)
    adaptive_gaps = torch.tensor(adaptive["gaps"], dtype=torch.float64)
    count = len(gaps)
    return {
        "model": case["name"],
        "max_steps": max_steps,
        "baseline": baseline,
        "sink": sink,
        "instances": count,
        "fixed": {
            "max_gap": float(gaps.max()),
            "miss_bar": int((gaps > bar).sum()),
            "seconds_per_instance": fixed_seconds / count,
        },
        "adaptive": {
            "mean_steps": adaptive["mean_steps"],
            "max_steps": max(adaptive["steps"]),
            "unconverged": adaptive["unconverged"],
            "max_gap": float(adaptive_gaps.nan_to_num(nan=float("inf")).max()),
            "miss_bar": int((~(adaptive_gaps <= bar)).sum()),
            "seconds_per_instance": adaptive_seconds / count,
        },
        "ratio": adaptive_seconds / fixed_seconds,
        "mean_abs_change": float(changes.abs().mean()),
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | baseline | sink | mean abs f(x) − f(b) | fixed 50: max gap, misses bar | adaptive: nodes mean / max (cap) | "
        "adaptive: max gap, misses bar, unconverged | CPU s per instance fixed / adaptive | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fixed, adaptive = r["fixed"], r["adaptive"]
        lines.append(
            f"| {r['model']} | {r['baseline']} | {r['sink']} | {r['mean_abs_change']:.3f} | "
            f"{fixed['max_gap']:.3g}, {fixed['miss_bar']} of {r['instances']} | "
            f"{adaptive['mean_steps']:.0f} / {adaptive['max_steps']} ({r.get('max_steps', 2000)}) | "
            f"{adaptive['max_gap']:.3g}, {adaptive['miss_bar']} of {r['instances']}, {adaptive['unconverged']} | "
            f"{fixed['seconds_per_instance']:.2f} / {adaptive['seconds_per_instance']:.2f} | {r['ratio']:.2f}× |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="*",
        default=["bilstm", "minilm", "smollm2"],
        choices=["bilstm", "minilm", "smollm2"],
        help="models to measure (none: rewrite the section from --json)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--max-steps", type=int, default=resolve_options().ig_max_steps, help="ig_max_steps (default: %(default)s)"
    )
    parser.add_argument("--prompts", type=int, default=8, help="SST test prompts for SmolLM2 (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=HERE / "ig_convergence.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    asked = {name for name in ("BiLSTM", "MiniLM", "SmolLM2") if name.lower() in args.models}
    kept = json.loads(args.json.read_text(encoding="utf-8")) if args.json.exists() else []
    rows = [row for row in kept if row["model"] not in asked]  # the other models' rows of an earlier run
    for case in cases(args.models, args.prompts):
        for sink in case["sinks"]:
            for baseline in BASELINES:
                rows.append(measure(case, baseline, sink, args.max_steps))
                print(table(rows)[-1], flush=True)
                args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    defaults = resolve_options()
    text = "\n".join(
        [
            "# Integrated gradients: completeness and the cost of convergence",
            "",
            f"Command: `{COMMAND} --threads {args.threads} --prompts {args.prompts} --max-steps {args.max_steps}` "
            "(rows of one model: `--models bilstm`; the others' rows are kept from the JSON).",
            "",
            *table(rows),
            "",
            f"Adaptive: ig_tolerance={defaults.ig_tolerance} (gap ≤ a + r·|f(x) − f(b)|), ig_max_steps as "
            "shown (cap), first round 50 Gauss–Legendre nodes, halves of "
            f"{integrated_gradients.REFINE_NODES} nodes. The bar: gap ≤ 0.02 + 5% of |f(x) − f(b)|. Ratio: CPU time "
            "of the adaptive run over the fixed run, same process, same inputs (the fixed run's extra f(b) pass "
            f"included in both). Machine: {json.dumps(machine())}.",
        ]
    )
    args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    write_section(HERE / "RESULTS.md", "ig_convergence", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
