"""Intervals and three-state verdicts: the statistics themselves, and their behaviour on a real population."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import pytest_attnfaith as af
from pytest_attnfaith.metrics import decide, fraction_interval, instances_needed, mean_interval, mean_intervals
from pytest_attnfaith.zoo import sentiment_task


def test_a_fraction_interval_is_clopper_pearson_and_decides_on_its_whole_width() -> None:
    estimate = fraction_interval(30, 64, 0.95)
    beta = scipy.stats.beta  # Clopper–Pearson from its definition: quantiles of Beta(k, n − k + 1) and Beta(k + 1, n − k)
    assert estimate.interval == pytest.approx((beta.ppf(0.025, 30, 35), beta.ppf(0.975, 31, 34)), abs=1e-9)
    assert decide(estimate, 0.5, higher_is_better=False) == "inconclusive"
    assert decide(estimate, 0.6, higher_is_better=False) == "passed"
    assert decide(estimate, 0.34, higher_is_better=False) == "failed"
    assert instances_needed(estimate, 0.6, higher_is_better=False) is not None


def test_a_mean_interval_is_a_seeded_bootstrap() -> None:
    values = np.random.default_rng(0).normal(0.3, 0.2, 64)
    first, again, other = (mean_interval(values, 0.95, seed) for seed in (1, 1, 2))
    assert first == again and first.interval != other.interval
    assert first.low < values.mean() < first.high and first.method == "bootstrap (BCa)"
    assert decide(first, 0.2, higher_is_better=True) == "passed" and decide(first, 0.4, higher_is_better=True) == "failed"


def test_undefined_and_degenerate_means() -> None:
    assert math.isnan(mean_interval(np.array([np.nan, np.nan]), 0.95, 0).statistic)
    one = mean_interval(np.array([0.4, np.nan]), 0.95, 0)
    assert one.count == 1 and math.isnan(one.low) and decide(one, 0.25, True) == "inconclusive"
    equal = mean_interval(np.ones(64), 0.95, 0, bounds=(-1.0, 1.0))
    assert equal.high == 1.0 and equal.low == pytest.approx(1 - 2 * (1 - 0.025 ** (1 / 64)))


def test_instances_needed_is_none_on_the_threshold_and_grows_near_it() -> None:
    assert instances_needed(fraction_interval(32, 64, 0.95), 0.5, higher_is_better=False) is None
    near, far = (instances_needed(fraction_interval(k, 64, 0.95), 0.5, higher_is_better=False) for k in (29, 26))
    assert near is not None and far is not None and near > far > 64


@pytest.fixture(scope="module")
def population(trained_bilstms) -> af.Report:
    """The vanilla BiLSTM on 1,000 sentences: about half of them flagged by uniform (docs/thresholds.md)."""
    model = af.wrap(trained_bilstms["vanilla"], attention="attn", embeddings="embed")
    return af.audit(
        model,
        sentiment_task(1000, seed=5, length=16).inputs(),
        checks=["uniform", "gradient"],
        batch_size=512,
        scale="probability",
    )


def test_samples_of_64_cover_the_population_and_are_inconclusive_at_its_threshold(population) -> None:
    rng = np.random.default_rng(0)
    uniform, gradient = population.checks["uniform"], population.checks["gradient"]
    covered, at_threshold, far = [], [], []
    for sample in range(60):
        index = rng.choice(1000, size=64, replace=False)
        flagged = fraction_interval(int(uniform.flagged[index].sum()), 64, 0.95)
        tau = mean_interval(gradient.per_instance[index], 0.95, sample, bounds=(-1.0, 1.0))
        covered += [flagged.low <= uniform.statistic <= flagged.high, tau.low <= gradient.statistic <= tau.high]
        at_threshold.append(decide(flagged, uniform.statistic, higher_is_better=False))
        far.append(decide(flagged, min(uniform.statistic + 0.35, 1.0), higher_is_better=False))
    assert 0.3 < uniform.statistic < 0.7
    assert np.mean(covered) >= 0.88
    assert np.mean([v == "inconclusive" for v in at_threshold]) >= 0.8
    assert far.count("inconclusive") == 0 and set(far) == {"passed"}


def test_the_audit_sample_gets_the_intervals_its_values_give(population, trained_bilstms) -> None:
    inputs = sentiment_task(1000, seed=5, length=16).inputs()
    index = torch.arange(0, 1000, 16)
    report = af.audit(
        af.wrap(trained_bilstms["vanilla"], attention="attn", embeddings="embed"),
        {k: v[index] for k, v in inputs.items()},
        scale="probability",  # the population's values are TVDs
    )
    uniform = report.checks["uniform"]
    expected = fraction_interval(int(population.checks["uniform"].flagged[index.numpy()].sum()), len(index), 0.95)
    assert uniform.interval == pytest.approx(expected.interval)
    assert uniform.interval_method == "Clopper-Pearson" and uniform.confidence == 0.95


def test_intervals_of_many_rows_are_each_rows_interval():
    """One vectorised bootstrap for the rows that share their defined values; constant, single and empty rows as alone."""
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(5, 40))
    rows[3] = 0.25  # constant
    rows[4, :39] = np.nan  # one value
    estimates = mean_intervals(rows, 0.95, seed=11, bounds=(-5.0, 5.0))
    for row, estimate in zip(rows, estimates, strict=True):
        alone = mean_interval(row, 0.95, seed=11, bounds=(-5.0, 5.0))
        assert estimate.statistic == pytest.approx(alone.statistic) and estimate.count == alone.count
        if alone.count > 1:
            width = alone.high - alone.low
            assert abs(estimate.low - alone.low) < 0.1 * width and abs(estimate.high - alone.high) < 0.1 * width
    assert np.isnan(estimates[4].low) and estimates[3].low < 0.25 < estimates[3].high


def test_clopper_pearson_from_beta_quantiles_equals_scipys_root_search():
    for count in (1, 7, 64, 500):
        for flagged in sorted({0, 1, count // 3, count - 1, count}):
            expected = scipy.stats.binomtest(flagged, count).proportion_ci(0.95, method="exact")
            assert fraction_interval(flagged, count, 0.95).interval == pytest.approx((expected.low, expected.high), abs=1e-10)
