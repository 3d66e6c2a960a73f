"""The temperature sweep behind docs/thresholds.md ("The margin scale"): every zoo model and an attention-only
classifier trained to saturation, with their logits multiplied by T ∈ {0.1, 1, 10, 100}, audited on both scales.

    python -m benchmarks.scale_sweep [--instances 48]

Prints one markdown row per (model, scale, T): the three answers and the used checks' statistics (fraction of
instances flagged). On ``margin`` every row of a model is the same; on ``probability`` (0.2) they drift.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.zoo import Tempered, ZooModel, sentiment_task, train_saturated

TEMPERATURES = (0.1, 1.0, 10.0, 100.0)
USED = ("permutation", "uniform", "erasure")
BUDGET = {"permutations": 30, "adversarial_steps": 60}


def rows(instances: int) -> list[str]:
    inputs = sentiment_task(instances, seed=7).inputs()
    models: dict[str, nn.Module] = {kind: ZooModel(kind) for kind in ZooModel.KINDS}
    models["attention-only, saturated"] = train_saturated()
    out = []
    for name, net in models.items():
        for scale in ("margin", "probability"):
            for t in TEMPERATURES:
                model = af.wrap(Tempered(net, t), attention="net.attn", embeddings="net.embed")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    report = af.audit(model, inputs, scale=scale, **BUDGET)
                answers = " | ".join(report.verdicts[q] for q in ("used", "agrees", "unique"))
                used = " | ".join(f"{report.checks[c].statistic:.3f}" for c in USED)
                out.append(f"| {name} | {scale} | {t:g} | {answers} | {used} |")
                print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| model | scale | T | used | agrees | unique | permutation | uniform | erasure |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows(args.instances)


if __name__ == "__main__":
    main()
