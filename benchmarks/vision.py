"""The figures of ``docs/vision.md``: attention over images, on scikit-learn's 8×8 digits.

One command, one process, one torch thread (writes ``benchmarks/vision.json``, which the page quotes; ``--tables``
prints the page's tables from it):

    .venv/bin/python -m benchmarks.vision --instances 150

Two ``vision_zoo.PatchClassifier`` twins (2×2 patches → 16 positions + a class token), trained with seed 0 on
the first 1,500 digits: ``cls`` (the class token's attention pooling is the only path from the patches to the
output) and ``mean`` (the same attention computed, the patches mean-pooled past it). Each is audited on the 297
held-out digits (every check, default options), and the explainers (attention, gradient × input, integrated
gradients from the zero baseline, leave-one-out) are tested under ERASER's comprehensiveness and sufficiency with
both removals (``delete``: the patch's position deleted after the position embeddings; ``mask``: its embedding
replaced by the zero baseline). A tiny two-layer Hugging Face ``ViTForImageClassification`` trained on the same
digits adds rollout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import transformers as tf

import pytest_attnfaith as af
from pytest_attnfaith.vision_zoo import load_digits, train_digits

SCALE = "probability"
"""The scale docs/vision.md was measured on (0.2's probability effects: the page predates the margin default)."""

EXPLAINERS = ("attention", "gradient_x_input", "integrated_gradients", "leave_one_out")
OUT = Path(__file__).with_name("vision.json")


def summary(report: af.Report) -> dict[str, Any]:
    """The three answers and each check's statistic and interval."""
    return {
        "verdicts": dict(report.verdicts),
        "passed": report.passed,
        "checks": {
            name: {
                "statistic": r.statistic,
                "interval": list(r.interval),
                "verdict": r.verdict,
                "instances": int(r.per_instance.size),
            }
            for name, r in report.checks.items()
        },
    }


def explanations(net: Any, inputs: dict[str, torch.Tensor], names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for removal in ("delete", "mask"):
        comparison = af.compare_explanations(net, inputs, list(names), removal=removal, scale=SCALE)
        out[removal] = {name: summary(report) for name, report in comparison.reports.items()}
    return out


def trained_vit(seed: int = 0, epochs: int = 15) -> tuple[tf.ViTForImageClassification, torch.Tensor, float]:
    """A two-layer ViT (hidden 32, 2 heads, 2×2 patches) trained on the digits: the model, held-out images, accuracy."""
    torch.manual_seed(seed)
    images, labels = load_digits()
    config = tf.ViTConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
    )
    vit = tf.ViTForImageClassification(config)
    optimiser = torch.optim.Adam(vit.parameters(), lr=3e-3)
    train_x, train_y = images[:1500], labels[:1500]
    generator = torch.Generator().manual_seed(seed)
    vit.train()
    for _ in range(epochs):
        order = torch.randperm(1500, generator=generator)
        for start in range(0, 1500, 100):
            index = order[start : start + 100]
            loss = vit(pixel_values=train_x[index], labels=train_y[index]).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    vit.eval()
    with torch.no_grad():
        accuracy = float((vit(pixel_values=images[1500:]).logits.argmax(dim=1) == labels[1500:]).float().mean())
    return vit, images[1500:], accuracy


def interval(check: dict[str, Any]) -> str:
    low, high = check["interval"]
    return f"{check['statistic']:.3f} [{low:.3f}, {high:.3f}] {check['verdict']}"


def tables(result: dict[str, Any]) -> str:
    """The page's tables (markdown) from ``vision.json``: the audits, then the explanations under both removals."""
    models = {**{f"`{pool}`": twin for pool, twin in result["twins"].items()}, "`vit`": result["vit"]}
    checks = list(next(iter(models.values()))["audit"]["checks"])
    lines = [
        "| model | accuracy | used | agrees | unique | " + " | ".join(checks) + " |",
        "|---|---|---|---|---|" + "---|" * len(checks),
    ]
    for name, model in models.items():
        audit = model["audit"]
        answers = " | ".join(audit["verdicts"][q] for q in ("used", "agrees", "unique"))
        cells = " | ".join(interval(audit["checks"][c]) for c in checks)
        lines.append(f"| {name} | {model['accuracy']:.3f} | {answers} | {cells} |")
    lines += ["", "| model | removal | explainer | comprehensiveness | sufficiency |", "|---|---|---|---|---|"]
    for name, model in models.items():
        for removal, reports in model["explanations"].items():
            for explainer, report in reports.items():
                c, s = report["checks"]["comprehensiveness"], report["checks"]["sufficiency"]
                lines.append(f"| {name} | {removal} | {explainer} | {interval(c)} | {interval(s)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=297, help="held-out digits audited (at most 297)")
    parser.add_argument("--tables", action="store_true", help="print the page's tables from vision.json and stop")
    args = parser.parse_args()
    if args.tables:
        print(tables(json.loads(OUT.read_text(encoding="utf-8"))))
        return
    torch.set_num_threads(1)
    result: dict[str, Any] = {"command": "python -m benchmarks.vision", "instances": args.instances, "twins": {}}
    for pool in ("cls", "mean"):
        started = time.perf_counter()
        trained = train_digits(pool)
        seconds = time.perf_counter() - started
        net = af.wrap(trained.model, attention="attention", embeddings="embeddings")
        inputs = {"pixel_values": trained.held_out[: args.instances]}
        result["twins"][pool] = {
            "accuracy": trained.accuracy,
            "train_seconds": round(seconds, 1),
            "audit": summary(af.audit(net, inputs, scale=SCALE)),
            "explanations": explanations(net, inputs, EXPLAINERS),
        }
    vit, held_out, accuracy = trained_vit()
    inputs = {"pixel_values": held_out[: args.instances]}
    result["vit"] = {
        "accuracy": accuracy,
        "audit": summary(af.audit(vit, inputs, scale=SCALE)),
        "explanations": explanations(vit, inputs, ("attention", "rollout", *EXPLAINERS[1:])),
    }
    result["command"] = f"python -m benchmarks.vision --instances {args.instances}"
    OUT.write_text(json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8")
    print(
        json.dumps({k: v["audit"]["verdicts"] for k, v in result["twins"].items()} | {"vit": result["vit"]["audit"]["verdicts"]})
    )


if __name__ == "__main__":
    main()
