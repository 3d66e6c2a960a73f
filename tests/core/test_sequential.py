"""Sequential audits: the betting confidence sequence from its definition, its anytime coverage, and the driver that
draws batches from a source until the required questions are decided."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import strategies as st

import pytest_attnfaith as af
from pytest_attnfaith.metrics import decide
from pytest_attnfaith.metrics.sequences import log_capital, plug_in_bets, rejected, sequence_interval
from pytest_attnfaith.zoo import sentiment_task
from tests.core.conftest import FAST, wrapped

SEQUENTIAL = {**FAST, "sequential": True, "batch_size": 16}


def test_the_capital_is_the_hedged_betting_product_of_waudby_smith_and_ramdas() -> None:
    x = np.random.default_rng(0).random(30)
    alpha, m = 0.05, 0.4
    mean, variance, up, down = 0.5, 0.25, 1.0, 1.0  # the predictable plug-in estimates before x_1
    total, squares = 0.0, 0.0
    for t, value in enumerate(x, start=1):
        bet = min(math.sqrt(2 * math.log(2 / alpha) / (variance * t * math.log(1 + t))), 0.5)
        up *= 1 + min(bet, 0.5 / m) * (value - m)
        down *= 1 - min(bet, 0.5 / (1 - m)) * (value - m)
        squares += (value - mean) ** 2
        total += value
        mean, variance = (0.5 + total) / (t + 1), (0.25 + squares) / (t + 1)
    assert plug_in_bets(x, alpha).shape == (30,)
    assert log_capital(x, np.array([m]), alpha)[0, -1] == pytest.approx(math.log(max(up, down) / 2), rel=1e-12)


def test_the_sequence_holds_the_mean_at_every_look_with_the_nominal_rate() -> None:
    rng = np.random.default_rng(1)
    alpha, truth = 0.05, 0.3
    runs = (rng.random((300, 600)) < truth).astype(np.float64)
    ever_excluded = [log_capital(row, np.array([truth]), alpha).max() >= math.log(1 / alpha) for row in runs]
    assert np.mean(ever_excluded) <= alpha  # Ville: P(exists t: K_t(mean) >= 1/alpha) <= alpha


def test_the_interval_contains_the_mean_narrows_and_agrees_with_the_threshold_test() -> None:
    values = np.random.default_rng(2).uniform(-1, 1, 800) * 0.5 + 0.3
    early, late = (sequence_interval(values[:n], 0.95, (-1.0, 1.0)) for n in (50, 800))
    assert early.low <= early.statistic <= early.high and late.low <= late.statistic <= late.high
    assert late.high - late.low < early.high - early.low
    for threshold in (0.1, 0.2, 0.25, 0.3, 0.4, 0.5):
        for n in (16, 64, 256, 800):
            estimate = sequence_interval(values[:n], 0.95, (-1.0, 1.0), threshold=threshold)
            excluded = rejected(values[:n], threshold, 0.95, (-1.0, 1.0))
            assert (decide(estimate, threshold, higher_is_better=True) != "inconclusive") == excluded


def test_undefined_values_are_skipped_and_none_gives_nan() -> None:
    assert math.isnan(sequence_interval(np.full(5, np.nan), 0.95).low)
    with_nan = sequence_interval(np.array([1.0, np.nan, 0.0, 1.0]), 0.95, kind="fraction")
    assert with_nan.count == 3 and with_nan.kind == "fraction"


def test_a_faithful_model_is_decided_early_and_an_unused_one_fails(inputs: dict[str, torch.Tensor]) -> None:
    source = sentiment_task(400, seed=3).inputs()
    faithful = af.audit(wrapped("faithful"), source, **SEQUENTIAL)
    unused = af.audit(wrapped("unused"), source, **SEQUENTIAL)
    assert faithful.verdicts == {"used": "yes", "agrees": "yes", "unique": "yes"} and faithful.passed
    assert unused.verdicts["used"] == "no" and not unused.passed
    for report in (faithful, unused):
        assert report.instances_used < 400 and report.model["sequential"]["stopped"] == "decided"
        assert report.instances_used == len(report.instances["tokens"]) == len(report.instances["attention"])
        for result in report.checks.values():
            assert result.interval_method.startswith("betting") and result.per_instance.size <= report.instances_used
            assert result.interval[0] <= result.statistic <= result.interval[1]


def test_the_budget_stops_an_undecided_audit_and_the_source_can_end() -> None:
    source = sentiment_task(64, seed=4).inputs()
    capped = af.audit(wrapped("faithful"), source, checks=["gradient"], **{**SEQUENTIAL, "max_instances": 20})
    assert capped.instances_used == 20 and capped.model["sequential"]["stopped"] == "max_instances reached"
    assert capped.checks["gradient"].verdict == "inconclusive" and "undecided after" in capped.checks["gradient"].reason()
    ended = af.audit(wrapped("faithful"), sentiment_task(24, seed=4).inputs(), checks=["gradient"], **SEQUENTIAL)
    assert ended.instances_used == 24 and ended.model["sequential"]["stopped"] == "source exhausted"


def test_every_kind_of_source_is_read_in_order() -> None:
    task = sentiment_task(96, seed=5)
    options = {**SEQUENTIAL, "checks": ["gradient", "loo"], "max_instances": 48}
    mapping = af.audit(wrapped("faithful"), task.inputs(), **options)
    pieces = [{key: value[start : start + 16] for key, value in task.inputs().items()} for start in range(0, 96, 16)]
    iterable = af.audit(wrapped("faithful"), iter(pieces), **options)
    assert mapping.instances["tokens"] == iterable.instances["tokens"]
    assert mapping.checks["gradient"].statistic == iterable.checks["gradient"].statistic

    seeds: list[int] = []

    def draw(n: int, seed: int) -> dict[str, torch.Tensor]:
        seeds.append(seed)
        return sentiment_task(n, seed=seed).inputs()

    drawn = af.audit(wrapped("faithful"), draw, **{**options, "max_instances": 40})
    assert drawn.instances_used <= 40 and seeds == list(range(len(seeds)))

    strategy = st.integers(0, 10**6).map(lambda seed: sentiment_task(16, seed=seed).inputs())
    first, again = (af.audit(wrapped("faithful"), strategy, **{**options, "max_instances": 32}) for _ in range(2))
    assert first.instances["tokens"] == again.instances["tokens"] and first.instances_used <= 32


def test_bad_sources_and_options_are_refused_before_any_pass() -> None:
    with pytest.raises(af.AttnFaithError, match="never ends; give max_instances"):
        af.audit(wrapped("faithful"), lambda n, seed: sentiment_task(n).inputs(), sequential=True)
    with pytest.raises(af.AttnFaithError, match="the source is a int"):
        af.audit(wrapped("faithful"), 3, sequential=True)
    with pytest.raises(af.AttnFaithError, match="max_instances=0"):
        af.audit(wrapped("faithful"), sentiment_task(4).inputs(), sequential=True, max_instances=0)


def test_a_sequential_audit_leaves_the_model_as_it_was() -> None:
    model = wrapped("faithful")
    before = {name: value.clone() for name, value in model.module.state_dict().items()}
    af.audit(model, sentiment_task(64, seed=6).inputs(), checks=["permutation", "uniform"], **SEQUENTIAL)
    after = model.module.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not model.module._forward_hooks and not model.module.attn._forward_hooks
