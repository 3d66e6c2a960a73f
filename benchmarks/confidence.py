"""Coverage of the verdict's confidence intervals on populations of known truth, and how often a verdict is
inconclusive at the threshold and away from it (docs/confidence.md).

    nice -n 10 .venv/bin/python -m benchmarks.confidence [--population 2000] [--samples 200] [--size 64]

Each population is one audit of ``--population`` generated sentences on a zoo model (ground truth: the
population's own statistic). Subsamples of ``--size`` instances are drawn without replacement; each gets the
interval of every method compared (the statistic's interval depends only on the subsample's per-instance values,
so no model is re-run; ``--audits`` re-audits a few subsamples to confirm that ``af.audit`` gives the same
intervals). Coverage: the fraction of subsamples whose interval contains the population value. Inconclusive
share: with the check's threshold moved to the population value ("at") and 0.1 or 0.2 away from it.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.stats
import torch

import pytest_attnfaith as af
from pytest_attnfaith.metrics import statistics
from pytest_attnfaith.zoo import BiLSTMClassifier, ZooModel, sentiment_task, train_classifier

RESULTS = Path(__file__).with_name("confidence.json")
CONFIDENCE = 0.95
MEAN_METHODS = ("BCa", "percentile", "basic", "t")
FRACTION_METHODS = ("exact", "wilson", "wilsoncc")
TAU_CHECKS = ("gradient", "loo")
FRACTION_CHECKS = ("permutation", "uniform", "erasure", "adversarial")
AWAY = (0.1, 0.2, 0.3)


Population = tuple[af.AttentionModel, dict[str, torch.Tensor], af.Report]


def populations(size: int) -> dict[str, Population]:
    """Per zoo model (misleading, faithful, and J&W BiLSTMs trained in seconds): the wrapped model, ``size``
    generated sentences, and the audit of all of them."""
    inputs = sentiment_task(size, seed=99, length=16).inputs()
    train = sentiment_task(1000, seed=0, length=16)
    models = {
        "misleading": ZooModel("misleading"),
        "faithful": ZooModel("faithful"),
        "bilstm (vanilla)": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4),
        "bilstm (conicity λ=0.3)": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4, diversity=0.3),
    }
    out = {}
    for name, net in models.items():
        model = af.wrap(net, attention="attn", embeddings="embed")
        out[name] = (model, inputs, af.audit(model, inputs, batch_size=256, inconclusive="pass"))
    return out


def mean_interval(values: np.ndarray, method: str, seed: int) -> tuple[float, float]:
    """The mean's interval by ``method``: a scipy bootstrap method, or Student's t."""
    values = values[~np.isnan(values)]
    if method == "t":
        half = scipy.stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
        return float(values.mean() - half), float(values.mean() + half)
    if method == "BCa":
        return statistics.mean_interval(values, CONFIDENCE, seed, bounds=(-1.0, 1.0)).interval
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scipy.stats.bootstrap(
            (values,), np.mean, confidence_level=CONFIDENCE, method=method, rng=np.random.default_rng(seed)
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def fraction_interval(flagged: int, count: int, method: str) -> tuple[float, float]:
    interval = scipy.stats.binomtest(flagged, count).proportion_ci(CONFIDENCE, method=method)
    return float(interval.low), float(interval.high)


def subsample_intervals(
    result: af.CheckResult, samples: int, size: int, seed: int
) -> tuple[float, dict[str, list[tuple[float, float]]], list[float]]:
    """The population value, each method's intervals over the subsamples, and the subsamples' statistics."""
    rng = np.random.default_rng(seed)
    values = result.per_instance
    eligible = _eligible(result)
    population = result.statistic
    intervals: dict[str, list[tuple[float, float]]] = {}
    estimates = []
    for sample in range(samples):
        index = rng.choice(len(values), size=size, replace=False)
        if result.higher_is_better:
            picked = values[index]
            estimates.append(float(np.nanmean(picked)))
            for method in MEAN_METHODS:
                intervals.setdefault(method, []).append(mean_interval(picked, method, sample))
        else:
            count = int(eligible[index].sum())
            flagged = int((result.flagged & eligible)[index].sum())
            estimates.append(flagged / count)
            for method in FRACTION_METHODS:
                intervals.setdefault(method, []).append(fraction_interval(flagged, count, method))
    return population, intervals, estimates


def _eligible(result: af.CheckResult) -> np.ndarray:
    """The instances a fraction check judged (permutation: the peaked ones, unless none was)."""
    defined = ~np.isnan(result.per_instance)
    if result.name == "permutation" and not result.details.get("judged_all_instances", False):
        peak = result.details["max_attention"]
        return defined & (np.asarray(peak) >= 0.5)
    return defined


def inconclusive_share(intervals: list[tuple[float, float]], threshold: float, higher_is_better: bool) -> float:
    """How many intervals give no verdict at ``threshold`` (``metrics.statistics.decide``), as a fraction."""
    shares = [
        statistics.decide(statistics.Estimate("", math.nan, low, high, CONFIDENCE, "", 0), threshold, higher_is_better)
        == "inconclusive"
        for low, high in intervals
    ]
    return float(np.mean(shares))


def measure(reports: dict[str, Population], samples: int, size: int) -> list[dict[str, Any]]:
    rows = []
    for name, (_, _, report) in reports.items():  # BCa: the package's (all-equal samples bounded by τ's range)
        for check, result in report.checks.items():
            if check not in TAU_CHECKS + FRACTION_CHECKS:
                continue
            population, intervals, estimates = subsample_intervals(result, samples, size, seed=len(rows))
            row: dict[str, Any] = {
                "model": name,
                "check": check,
                "population": population,
                "eligible": int(_eligible(result).sum()),
                "subsample_sd": float(np.std(estimates)),
            }
            for method, found in intervals.items():
                row[method] = {
                    "coverage": float(np.mean([low <= population <= high for low, high in found])),
                    "mean_width": float(np.mean([high - low for low, high in found])),
                    "inconclusive_at": inconclusive_share(found, population, result.higher_is_better),
                    **{f"inconclusive_{d:g}_away": _away(found, population, d, result.higher_is_better) for d in AWAY},
                }
            rows.append(row)
    return rows


def _away(intervals: list[tuple[float, float]], population: float, distance: float, higher: bool) -> float | None:
    """Inconclusive share with the threshold ``distance`` away from the population value, on whichever sides exist."""
    bounds = (-1.0, 1.0) if higher else (0.0, 1.0)
    shares = [inconclusive_share(intervals, population + sign * distance, higher) for sign in (-1, 1)]
    inside = [s for s, sign in zip(shares, (-1, 1), strict=True) if bounds[0] < population + sign * distance < bounds[1]]
    return max(inside) if inside else None


def confirm_with_audits(population: Population, size: int, count: int) -> float:
    """Re-audit ``count`` subsamples with ``af.audit``: the largest difference between its fraction intervals and the
    ones computed here from the population's per-instance values (0: the subsample's values are the population's)."""
    model, inputs, report = population
    rng = np.random.default_rng(12345)
    largest = 0.0
    for _ in range(count):
        index = torch.as_tensor(rng.choice(len(inputs["input_ids"]), size=size, replace=False))
        audited = af.audit(model, {k: v[index] for k, v in inputs.items()}, checks=("uniform", "erasure", "adversarial"))
        for check, result in audited.checks.items():
            whole = report.checks[check]
            picked = index.numpy()
            flagged = int((whole.flagged & _eligible(whole))[picked].sum())
            expected = fraction_interval(flagged, int(_eligible(whole)[picked].sum()), statistics.PROPORTION_METHOD)
            largest = max(largest, *(abs(a - b) for a, b in zip(result.interval, expected, strict=True)))
    return largest


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | check | population | coverage by method (mean width) | inconclusive at the threshold | "
        "0.1 away | 0.2 away | 0.3 away |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        methods = MEAN_METHODS if row["check"] in TAU_CHECKS else FRACTION_METHODS
        chosen = statistics.MEAN_METHOD if row["check"] in TAU_CHECKS else statistics.PROPORTION_METHOD
        coverage = ", ".join(f"{m} {row[m]['coverage']:.3f} ({row[m]['mean_width']:.3f})" for m in methods)
        cells = [row[chosen]["inconclusive_at"], *(row[chosen][f"inconclusive_{d:g}_away"] for d in AWAY)]
        shares = " | ".join("—" if c is None else f"{c:.3f}" for c in cells)
        lines.append(f"| {row['model']} | {row['check']} | {row['population']:.3f} | {coverage} | {shares} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--population", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    reports = populations(args.population)
    rows = measure(reports, args.samples, args.size)
    confirmed = confirm_with_audits(reports["bilstm (vanilla)"], args.size, 3)
    document = {
        "audit_interval_difference": confirmed,
        "command": f"python -m benchmarks.confidence --population {args.population} --samples {args.samples} --size {args.size}",
        "machine": f"{platform.machine()}, {platform.python_version()}, torch {torch.__version__}, scipy {scipy.__version__}",
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(table(rows))
    print(f"af.audit on 3 subsamples vs the intervals above: largest difference {confirmed:.2e}")


if __name__ == "__main__":
    main()
