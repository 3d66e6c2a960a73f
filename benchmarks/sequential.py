"""Sequential decisions on populations of known truth: error rate and instances used, beside fixed-n audits.

    python -m benchmarks.sequential            # 200 runs per population (about 10 CPU-minutes)
    python -m benchmarks.sequential --runs 20  # a quick look

Three families of per-instance values, as the checks produce them: **flags** (Bernoulli, a fraction that must stay
<= 0.5), **τ** in [-1, 1] (2·Beta − 1, a mean that must reach 0.25) and **effects** in [0, 1] (Beta, a mean that must
reach 0.3); each population's true value lies 0.05 or 0.15 from the threshold, on the passing or the failing side (and one
population of flags sits on it: p = 0.5 passes, so any failed verdict is wrong — where peeking hurts most).
Each run draws ``BATCH`` instances at a time, up to ``BUDGET``, and stops at the first batch where the audit's
confidence sequence (``metrics.sequences``, the one ``af.audit(sequential=True)`` uses, at 0.95) decides; a verdict on
the wrong side of the threshold is an error. The decision after each batch is the driver's: the threshold is
excluded once max_s K_s(threshold) >= 1/alpha (``tests/core/test_sequential.py`` checks that this is what
``sequence_interval`` + ``decide`` say), so the whole path is computed at once per run.

Beside it, fixed-n audits with the 0.2 intervals (Clopper-Pearson, BCa): the n a fixed audit needs to decide as many
runs as the sequential one did, with its error rate there; and, for flags, a fixed-n interval *looked at after every
batch* (stopping when decided): the peeking a user does when they rerun with more instances.
Writes ``benchmarks/sequential.json`` and the table in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.sections import write_section
from pytest_attnfaith.metrics import decide, fraction_interval, mean_interval
from pytest_attnfaith.metrics.sequences import log_capital, sequence_interval

CONFIDENCE = 0.95
BATCH = 16
BUDGET = 2000
FIXED_SIZES = (32, 64, 128, 256, 512, 1024, 2000)
CONCENTRATION = 4.0  # Beta(a, b) with a + b = 4: per-instance values spread as τ and effects do on the zoo and SST
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Population:
    family: str
    truth: float
    threshold: float
    bounds: tuple[float, float]
    higher_is_better: bool

    @property
    def distance(self) -> float:
        return round(abs(self.truth - self.threshold), 3)

    @property
    def passes(self) -> bool:
        return self.truth >= self.threshold if self.higher_is_better else self.truth <= self.threshold

    def draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        if self.family == "flags":
            return (rng.random(count) < self.truth).astype(np.float64)
        lo, hi = self.bounds
        unit = (self.truth - lo) / (hi - lo)
        return lo + (hi - lo) * rng.beta(unit * CONCENTRATION, (1 - unit) * CONCENTRATION, count)


def populations() -> list[Population]:
    families = (("flags", 0.5, (0.0, 1.0), False), ("tau", 0.25, (-1.0, 1.0), True), ("effect", 0.3, (0.0, 1.0), True))
    at_threshold = Population("flags", 0.5, 0.5, (0.0, 1.0), False)  # passes (<= 0.5): any failed verdict is wrong
    return [at_threshold] + [
        Population(family, threshold + side * distance, threshold, bounds, higher)
        for family, threshold, bounds, higher in families
        for distance in (0.05, 0.15)
        for side in (-1, 1)
    ]


def estimate(values: np.ndarray, population: Population, sequential: bool) -> str:
    """The verdict on ``values``: the audit's sequence (sequential) or its fixed-n interval."""
    if sequential:
        kind = "fraction" if population.family == "flags" else "mean"
        found = sequence_interval(values, CONFIDENCE, population.bounds, kind, threshold=population.threshold)
    elif population.family == "flags":
        found = fraction_interval(int(values.sum()), values.size, CONFIDENCE)
    else:
        found = mean_interval(values, CONFIDENCE, seed=0, bounds=population.bounds)
    return decide(found, population.threshold, population.higher_is_better)


def sequential_run(values: np.ndarray, population: Population) -> tuple[str, int]:
    """(verdict, instances used) of one sequential audit over ``values`` (drawn in order)."""
    lo, hi = population.bounds
    unit = (values - lo) / (hi - lo)
    alpha = 1.0 - CONFIDENCE
    path = np.maximum.accumulate(log_capital(unit, np.array([(population.threshold - lo) / (hi - lo)]), alpha)[0])
    looks = np.arange(BATCH, values.size + 1, BATCH)
    crossed = np.flatnonzero(path[looks - 1] >= math.log(1.0 / alpha))
    used = int(looks[crossed[0]]) if crossed.size else values.size
    return estimate(values[:used], population, sequential=True), used


def peeking_run(values: np.ndarray, population: Population) -> str:
    """A fixed-n interval recomputed after every batch, stopping once it decides (flags only)."""
    for used in range(BATCH, values.size + 1, BATCH):
        verdict = estimate(values[:used], population, sequential=False)
        if verdict != "inconclusive":
            return verdict
    return "inconclusive"


def wrong(verdicts: list[str], population: Population) -> float:
    bad = "failed" if population.passes else "passed"
    return float(np.mean([verdict == bad for verdict in verdicts]))


def decided(verdicts: list[str]) -> float:
    return float(np.mean([verdict != "inconclusive" for verdict in verdicts]))


def measure(population: Population, runs: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    draws = [population.draw(BUDGET, rng) for _ in range(runs)]
    outcomes = [sequential_run(values, population) for values in draws]
    verdicts = [verdict for verdict, _ in outcomes]
    used = np.array([count for _, count in outcomes])
    row: dict[str, object] = {
        "family": population.family,
        "truth": population.truth,
        "threshold": population.threshold,
        "distance": population.distance,
        "runs": runs,
        "sequential_wrong": wrong(verdicts, population),
        "sequential_decided": decided(verdicts),
        "mean_instances": float(used.mean()),
        "max_instances": int(used.max()),
    }
    target = decided(verdicts)
    for size in FIXED_SIZES:
        fixed = [estimate(values[:size], population, sequential=False) for values in draws]
        if decided(fixed) >= target or size == FIXED_SIZES[-1]:
            row.update(fixed_n=size, fixed_wrong=wrong(fixed, population), fixed_decided=decided(fixed))
            break
    if population.family == "flags":
        row["peeking_wrong"] = wrong([peeking_run(values, population) for values in draws], population)
    return row


def markdown(rows: list[dict[str, object]], runs: int, seconds: float) -> str:
    lines = [
        f"### Sequential decisions on populations of known truth ({runs} runs each, batches of {BATCH}, budget "
        f"{BUDGET}, nominal error 5%)",
        "",
        "`python -m benchmarks.sequential` "
        f"({seconds:.0f} s). Wrong: a verdict on the wrong side of the threshold; inconclusive at the budget is not "
        "wrong. Fixed n: the smallest of "
        f"{', '.join(map(str, FIXED_SIZES))} at which the fixed-n audit (Clopper-Pearson / BCa) decides as many runs.",
        "",
        "| values | truth | threshold | distance | sequential wrong | decided | mean instances | most | fixed n | "
        "fixed wrong | fixed decided | fixed-n peeking wrong |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        peek = f"{row['peeking_wrong']:.3f}" if "peeking_wrong" in row else "—"
        lines.append(
            f"| {row['family']} | {row['truth']:.2f} | {row['threshold']:.2f} | {row['distance']:.2f} | "
            f"{row['sequential_wrong']:.3f} | {row['sequential_decided']:.3f} | {row['mean_instances']:.0f} | "
            f"{row['max_instances']} | {row['fixed_n']} | {row['fixed_wrong']:.3f} | {row['fixed_decided']:.3f} | {peek} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = [measure(population, args.runs, args.seed + index) for index, population in enumerate(populations())]
    seconds = time.perf_counter() - start
    table = markdown(rows, args.runs, seconds)
    print(table)
    (HERE / "sequential.json").write_text(json.dumps({"rows": rows, "seconds": seconds}, indent=2) + "\n", encoding="utf-8")
    write_section(HERE / "RESULTS.md", "sequential", table)


if __name__ == "__main__":
    main()
