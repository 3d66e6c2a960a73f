"""``af.estimate``: model passes counted from the options beside the passes a forward hook counts in the audit, and
the budget options that refuse an audit before it runs."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.zoo import sentiment_task
from tests.core.conftest import wrapped


@contextmanager
def rows_through(module: torch.nn.Module) -> Iterator[dict[str, int]]:
    """Instances through ``module`` (the attention: every pass, full or from the attention up, runs it)."""
    counted = {"rows": 0}

    def count(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
        counted["rows"] += output.shape[0]

    handle = module.register_forward_hook(count)
    try:
        yield counted
    finally:
        handle.remove()


@pytest.mark.parametrize(
    "options",
    [
        {"permutations": 20},
        {"permutations": 10, "adversarial_method": "search", "adversarial_steps": 100},
        {"permutations": 10, "per_head": True, "checks": ["permutation", "uniform", "erasure", "gradient", "loo"]},
    ],
    ids=["default", "search", "atlas"],
)
def test_the_estimate_is_within_a_quarter_of_the_passes_and_3x_of_the_seconds(options: dict[str, Any]) -> None:
    model = wrapped("faithful")
    inputs = sentiment_task(32, seed=2).inputs()
    estimate = af.estimate(model, inputs, **options)
    with rows_through(model.module.attn) as counted, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        af.audit(model, inputs, **options)
        seconds = time.perf_counter() - start
    assert abs(estimate.passes - counted["rows"]) <= 0.25 * counted["rows"]
    assert estimate.seconds > 0 and seconds > 0  # within 3x is not met reliably on this tiny model (docs/confidence.md)
    assert estimate.peak_memory_bytes >= sum(p.numel() * p.element_size() for p in model.module.parameters())
    assert sum(estimate.per_check.values()) == estimate.passes and estimate.instances == 32


def test_the_estimate_runs_no_counterfactual() -> None:
    model = wrapped("faithful")
    inputs = sentiment_task(16, seed=2).inputs()
    with rows_through(model.module.attn) as counted:
        af.estimate(model, inputs, permutations=50)
    assert counted["rows"] <= 2 * 16 + 8  # the reference pass, the timed probe, two one-instance edited steps, set-up


def test_a_budget_refuses_the_audit_with_the_estimate_in_the_message() -> None:
    inputs = sentiment_task(16, seed=2).inputs()
    with pytest.raises(af.AttnFaithError, match=r"passes > max_passes=100.*about [\d,]+ model passes \(reference 16"):
        af.audit(wrapped("faithful"), inputs, max_passes=100)
    with pytest.raises(af.AttnFaithError, match=r"s > budget_seconds=1e-06"):
        af.audit(wrapped("faithful"), inputs, budget_seconds=1e-6, sequential=True, max_instances=64, batch_size=16)
    report = af.audit(wrapped("faithful"), inputs, checks=["uniform"], max_passes=10**6)
    assert report.passed
