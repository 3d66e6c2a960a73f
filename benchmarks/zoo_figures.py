"""Measure every check on the zoo (models whose verdict is known by construction): the figures behind the default
thresholds in docs/thresholds.md.

    python -m benchmarks.zoo_figures [--instances 200]
"""

from __future__ import annotations

import argparse

import numpy as np

import pytest_attnfaith as af
from pytest_attnfaith.zoo import BiLSTMClassifier, ZooModel, sentiment_task, train_classifier


def zoo_models() -> dict[str, af.AttentionModel]:
    models = {kind: af.wrap(ZooModel(kind), attention="attn", embeddings="embed") for kind in ZooModel.KINDS}
    train = sentiment_task(1000, seed=0, length=16)
    trained = {
        "bilstm (vanilla)": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4),
        "bilstm (conicity λ=0.3)": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4, diversity=0.3),
        "bilstm twin (mean readout)": train_classifier(BiLSTMClassifier(readout="mean", seed=0), train, epochs=4),
    }
    models.update({name: af.wrap(net, attention="attn", embeddings="embed") for name, net in trained.items()})
    return models


VERDICT_CELL = {"yes": "yes", "no": "**no**", "inconclusive": "*inconclusive*", "not tested": "—"}


def statistic_cell(result: af.CheckResult) -> str:
    """The statistic and its interval; failed in bold, inconclusive in italics."""
    low, high = result.interval
    text = f"{result.statistic:.2f} [{low:.2f}, {high:.2f}]"
    return {"failed": f"**{text}**", "inconclusive": f"*{text}*"}.get(result.verdict, text)


def instance_value(result: af.CheckResult) -> str:
    values = result.per_instance[~np.isnan(result.per_instance)]
    return f"{np.median(values):.3f} [{np.quantile(values, 0.1):.3f}, {np.quantile(values, 0.9):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=200)
    args = parser.parse_args()
    inputs = sentiment_task(args.instances, seed=99, length=16).inputs()
    print("| model | used | agrees | unique | " + " | ".join(af.CHECK_NAMES) + " |")
    print("|---|---|---|---|" + "---|" * len(af.CHECK_NAMES))
    for name, model in zoo_models().items():
        report = af.audit(model, inputs)
        answers = " | ".join(VERDICT_CELL[report.verdicts[q]] for q in ("used", "agrees", "unique"))
        cells = " | ".join(statistic_cell(report.checks[c]) for c in af.CHECK_NAMES)
        print(f"| {name} | {answers} | {cells} |")
    print()
    print("Per-instance values: median [10th, 90th percentile]")
    print("| model | " + " | ".join(af.CHECK_NAMES) + " |")
    print("|---|" + "---|" * len(af.CHECK_NAMES))
    for name, model in zoo_models().items():
        report = af.audit(model, inputs)
        print(f"| {name} | " + " | ".join(instance_value(report.checks[c]) for c in af.CHECK_NAMES) + " |")


if __name__ == "__main__":
    main()
