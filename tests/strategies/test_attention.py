"""Attention strategies: distributions over the real positions, permutations of them, and
counterfactual attention whose output stays within the TVD bound."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

import pytest_attnfaith as af
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import tvd
from pytest_attnfaith.strategies import AttentionCandidate, attention_distributions, position_permutations, tvd_bounded_attention
from pytest_attnfaith.zoo import SCALE, ZooModel

FEW = settings(max_examples=30, deadline=None, database=None)
FIRST_FOUND = settings(database=None, deadline=None, max_examples=100, phases=[Phase.generate])
REAL = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])


def faithful_output(model: ZooModel, inputs: Any, attention: torch.Tensor) -> torch.Tensor:
    """The faithful zoo model's output for a given attention, from its definition z = c · Σ α_t s_t."""
    sentiment = model.embed(inputs["input_ids"])[..., 1].detach()
    z = SCALE * (attention * sentiment).sum(dim=1)
    return torch.softmax(torch.stack([torch.zeros_like(z), z], dim=1), dim=1)


@FEW
@given(data=st.data())
def test_distributions_put_all_mass_on_the_real_positions(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["peaked", "flat", "dirichlet", "any"]), label="kind")
    alpha = data.draw(attention_distributions(REAL, kind))
    assert alpha.shape == REAL.shape and alpha.dtype == torch.float32
    assert bool((alpha >= 0).all()) and bool((alpha[REAL == 0] == 0).all())
    assert torch.allclose(alpha.sum(dim=1), torch.tensor([1.0, 1.0, 1.0, 0.0]), atol=1e-6)
    real = alpha[1][REAL[1].bool()]
    if kind == "peaked":
        assert float(real.max()) >= 0.5 - 1e-6
    if kind == "flat":
        assert float(real.max() / real.min()) <= 5 / 3 + 1e-5


@FEW
@given(index=position_permutations(REAL))
def test_permutations_move_real_positions_among_themselves(index: torch.Tensor) -> None:
    positions = torch.arange(REAL.shape[1]).expand_as(REAL)
    assert torch.equal(index.sort(dim=1).values, positions)
    assert torch.equal(index[REAL == 0], positions[REAL == 0])
    assert bool((REAL.gather(1, index) == REAL).all())


def test_peaked_rows_shrink_to_one_hot_on_the_first_real_position() -> None:
    alpha = find(attention_distributions(REAL[1:2], "peaked"), lambda a: True, settings=settings(database=None, deadline=None))
    assert alpha.tolist() == [[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]]


@pytest.fixture(scope="module")
def faithful() -> ZooModel:
    return ZooModel("faithful")


@pytest.fixture(scope="module")
def faithful_candidates(faithful: ZooModel, zoo_inputs: Any) -> st.SearchStrategy[AttentionCandidate]:
    return tvd_bounded_attention(af.wrap(faithful, attention="attn", embeddings="embed"), zoo_inputs, epsilon=0.05)


@settings(FEW, max_examples=15)
@given(data=st.data())
def test_bounded_candidates_keep_the_output_within_epsilon(
    faithful: ZooModel, zoo_inputs: Any, faithful_candidates: st.SearchStrategy[AttentionCandidate], data: st.DataObject
) -> None:
    candidate = data.draw(faithful_candidates)
    real = zoo_inputs["attention_mask"].bool()
    assert bool((candidate.attention[~real] == 0).all())
    assert torch.allclose(candidate.attention.sum(dim=1), torch.ones(len(real)), atol=1e-5)
    original = faithful_output(faithful, zoo_inputs, candidate.original)
    moved = faithful_output(faithful, zoo_inputs, candidate.attention)
    assert bool((tvd(moved, original) <= 0.05 + 1e-5).all())
    assert torch.allclose(candidate.tvd, tvd(moved, original).double(), atol=1e-5)


def test_bounded_candidates_reach_attention_that_differs_from_the_original(faithful_candidates: Any) -> None:
    candidate = find(faithful_candidates, lambda c: float(c.jsd.max()) > 0.01, settings=FIRST_FOUND)
    assert float(candidate.mixture.max()) > 0 and float(candidate.tvd.max()) <= 0.05


def test_unused_attention_admits_far_candidates(zoo_inputs: Any) -> None:
    strategy = tvd_bounded_attention(af.wrap(ZooModel("unused"), attention="attn", embeddings="embed"), zoo_inputs, kind="peaked")
    candidate = find(strategy, lambda c: float(c.jsd.max()) > 0.3, settings=FIRST_FOUND)
    assert float(candidate.tvd.max()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: attention_distributions(REAL, "spiky"), "kind='spiky' is not valid"),
        (lambda: attention_distributions(REAL, "peaked", peak=0.3), "peak=0.3 is not valid"),
        (lambda: attention_distributions(REAL * 2, "flat"), "values other than 0 and 1"),
        (lambda: position_permutations(torch.ones(3)), "expected a \\(B, T\\) 0/1 tensor"),
    ],
)
def test_bad_attention_arguments_are_refused(make: Any, message: str) -> None:
    with pytest.raises(AttnFaithError, match=message):
        make()


def test_bounded_candidates_refuse_an_epsilon_outside_the_option_range(zoo_inputs: Any) -> None:
    with pytest.raises(AttnFaithError, match="epsilon"):
        tvd_bounded_attention(af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed"), zoo_inputs, epsilon=0.0)
