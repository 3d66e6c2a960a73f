"""``python -m benchmarks.llm page``: the measurements of ``docs/llm.md``, and the page itself.

SmolLM2-135M-Instruct as a zero-shot sentiment classifier on SST test sentences (``--data``, read at run time):
accuracy on ``SENTENCES`` sentences; where the attention sink sits (every layer, every head); the ``sink`` option
compared on every check at the last and a middle layer (and on tiny random GPT-2 and Llama configs); the per-head
atlas of the questions *used* and *agrees* on ``AUDITED`` sentences; *unique* at a few layers; one last-layer heat map.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pytest_attnfaith as af
from benchmarks import smollm2
from benchmarks.llm import machine

SENTENCES = 200
AUDITED = 16
SEED = 0
BUDGET = {"permutations": 20, "adversarial_steps": 100}
ATLAS_CHECKS = ("uniform", "permutation", "erasure", "gradient", "loo")
SINK_LAYERS = (29, 15)
UNIQUE_LAYERS = (0, 10, 20, 29)
ALL_CHECKS = ("permutation", "uniform", "erasure", "gradient", "loo", "adversarial")


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


def render(results: dict[str, Any]) -> str:
    raise NotImplementedError
