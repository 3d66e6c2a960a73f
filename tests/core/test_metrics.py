"""The pure statistics against scipy and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from scipy.spatial.distance import jensenshannon

from pytest_attnfaith.metrics import jsd, kendall_tau, nan_summary, output_distribution, restrict, tvd


def test_tvd_is_half_the_l1_distance() -> None:
    p = torch.tensor([[0.7, 0.2, 0.1]])
    q = torch.tensor([[0.1, 0.2, 0.7]])
    assert tvd(p, q).item() == pytest.approx(0.6)


def test_binary_tvd_is_the_full_probability_change_not_half() -> None:
    p = output_distribution(torch.tensor([0.0]))
    q = output_distribution(torch.tensor([math.log(3.0)]))
    assert tvd(p, q).item() == pytest.approx(0.25)


def test_jsd_matches_scipy_in_nats_and_is_bounded_by_ln2() -> None:
    generator = np.random.default_rng(0)
    p = generator.dirichlet(np.ones(6), size=20)
    q = generator.dirichlet(np.ones(6), size=20)
    expected = jensenshannon(p, q, axis=1) ** 2
    assert np.allclose(jsd(torch.tensor(p), torch.tensor(q)).numpy(), expected, atol=1e-12)
    disjoint = jsd(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])).item()
    assert disjoint == pytest.approx(math.log(2.0))


def test_output_distribution_of_one_logit_is_sigmoid_and_complement() -> None:
    for logits in (torch.tensor([2.0]), torch.tensor([[2.0]])):
        p = output_distribution(logits)
        assert p[0, 1].item() == pytest.approx(1 / (1 + math.exp(-2.0)))
        assert p.sum().item() == pytest.approx(1.0)


def test_kendall_tau_matches_scipy_on_the_real_positions_only() -> None:
    generator = np.random.default_rng(1)
    x = generator.random((5, 9))
    y = generator.random((5, 9)).round(1)  # ties
    real = np.ones((5, 9), dtype=bool)
    real[:, 6:] = False
    real[2, 4:] = False
    tau, pvalue = kendall_tau(x, y, real)
    for row in range(5):
        expected = scipy.stats.kendalltau(x[row][real[row]], y[row][real[row]])
        assert tau[row] == pytest.approx(expected.statistic, abs=1e-12)
        assert pvalue[row] == pytest.approx(expected.pvalue, abs=1e-12)


def test_kendall_tau_is_nan_not_an_error_for_one_token_or_constant_scores() -> None:
    x = np.array([[0.3, 0.1, 0.2], [0.5, 0.2, 0.9]])
    y = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    real = np.array([[True, False, False], [True, True, True]])
    tau, pvalue = kendall_tau(x, y, real)
    assert np.isnan(tau).all() and np.isnan(pvalue).all()
    summary = nan_summary(np.array([0.5, np.nan, 0.1]))
    assert summary["mean"] == pytest.approx(0.3) and summary["undefined"] == 1


def test_restrict_renormalises_over_real_positions() -> None:
    weights = torch.tensor([[0.5, 0.25, 0.25]])
    real = torch.tensor([[False, True, True]])
    assert restrict(weights, real).tolist() == [[0.0, 0.5, 0.5]]
