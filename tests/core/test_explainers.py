"""The explainers on wrapped torch models: integrated gradients and Shapley values equal Captum's on the same model
(to 1e-5), the properties that hold by definition, and the errors a user meets."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.metrics import output_distribution
from pytest_attnfaith.zoo import ZooModel, sentiment_task
from tests.core.conftest import wrapped

captum_attr = pytest.importorskip("captum.attr", reason="Captum (the 'explain' extra) is the reference implementation")


def probabilities(net: torch.nn.Module):
    """The model's output distribution in float64, as the audit computes it, for Captum's forward function."""
    return lambda input_ids, attention_mask: output_distribution(net(input_ids, attention_mask))


def predicted(net: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return probabilities(net)(inputs["input_ids"], inputs["attention_mask"]).argmax(dim=1)


def real_replaced(inputs: dict[str, torch.Tensor], token: int) -> torch.Tensor:
    return torch.where(inputs["attention_mask"].bool(), token, inputs["input_ids"])


@pytest.fixture(scope="module")
def bilstm(trained_bilstms) -> torch.nn.Module:
    return trained_bilstms["vanilla"]


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"])
def test_integrated_gradients_equal_captums_layer_integrated_gradients(bilstm, bilstm_inputs, method) -> None:
    """Zero baseline: the BiLSTM's padding row (id 0) is the zero embedding, so Captum's baseline ids are 0."""
    inputs = {key: value[:20] for key, value in bilstm_inputs.items()}
    ours = af.explain(
        af.wrap(bilstm, attention="attn", embeddings="embed"),
        inputs,
        "integrated_gradients",
        ig_method=method,
        scale="probability",
        ig_tolerance=None,
    )
    assert bilstm.embed.weight[0].abs().max() == 0
    assert np.abs(ours - captum_integrated_gradients(bilstm, inputs, 0, 50, method)).max() < 1e-5


def test_integrated_gradients_with_the_mask_baseline_equal_captums(bilstm, bilstm_inputs) -> None:
    inputs = {key: value[:12] for key, value in bilstm_inputs.items()}
    model = af.wrap(bilstm, attention="attn", embeddings="embed")
    ours = af.explain(
        model,
        inputs,
        "integrated_gradients",
        ig_baseline="mask",
        mask_token_id=7,
        ig_steps=24,
        batch_size=8,
        scale="probability",
        ig_tolerance=None,
    )
    assert np.abs(ours - captum_integrated_gradients(bilstm, inputs, 7, 24)).max() < 1e-5


def captum_integrated_gradients(bilstm, inputs, baseline_id: int, steps: int, method: str = "gausslegendre") -> np.ndarray:
    """Captum's ``LayerIntegratedGradients`` at the embeddings, real tokens replaced by ``baseline_id``, summed over D."""
    lig = captum_attr.LayerIntegratedGradients(probabilities(bilstm), bilstm.embed)
    theirs = lig.attribute(
        inputs["input_ids"],
        baselines=real_replaced(inputs, baseline_id),
        additional_forward_args=(inputs["attention_mask"],),
        target=predicted(bilstm, inputs),
        n_steps=steps,
        method=method,
    ).sum(dim=-1)
    return theirs.detach().double().numpy()


def test_integrated_gradients_are_complete_and_zero_off_the_real_positions(bilstm, bilstm_inputs) -> None:
    """Σ_t IG_t = p_ŷ(x) − p_ŷ(baseline) up to the quadrature's error (Sundararajan et al.'s completeness)."""
    net = copy.deepcopy(bilstm).double()
    inputs = {key: value[:10] for key, value in bilstm_inputs.items()}
    scores = af.explain(
        af.wrap(net, attention="attn", embeddings="embed"), inputs, "integrated_gradients", ig_steps=64, scale="probability"
    )
    label = predicted(net, inputs)
    with torch.no_grad():
        full = probabilities(net)(inputs["input_ids"], inputs["attention_mask"]).gather(1, label[:, None])[:, 0]
        empty = probabilities(net)(real_replaced(inputs, 0), inputs["attention_mask"]).gather(1, label[:, None])[:, 0]
    assert np.allclose(scores.sum(axis=1), (full - empty).numpy(), atol=1e-6)
    assert (scores[inputs["attention_mask"].numpy() == 0] == 0).all()


def test_exact_shapley_values_equal_captums_shapley_values(bilstm) -> None:
    """Every permutation of 4-token inputs (4! = 24 ≤ shapley_samples): Captum's exact ShapleyValues, a feature per
    token, the mask token as the baseline."""
    inputs = sentiment_task(6, seed=3, length=4, min_length=4).inputs()
    model = af.wrap(bilstm, attention="attn", embeddings="embed")
    ours = af.explain(model, inputs, "shapley", removal="mask", mask_token_id=7, shapley_samples=24, scale="probability")
    theirs = captum_attr.ShapleyValues(probabilities(bilstm)).attribute(
        inputs["input_ids"],
        baselines=7,
        additional_forward_args=(inputs["attention_mask"],),
        target=predicted(bilstm, inputs),
        feature_mask=torch.arange(4).unsqueeze(0),
    )
    assert np.abs(ours - theirs.double().numpy()).max() < 1e-5


def coalition_value(net, ids, mask, special, keep: set[int], label: int) -> float:
    """p_label with every real token outside ``keep`` deleted."""
    positions = [t for t in range(len(ids)) if mask[t] == 0 or special[t] == 1 or t in keep]
    with torch.no_grad():
        return float(probabilities(net)(ids[positions][None], mask[positions][None])[0, label])


def test_exact_shapley_values_with_deletion_equal_the_definition_over_every_coalition(bilstm) -> None:
    """φ_t = Σ_S |S|!(n−|S|−1)!/n! [v(S ∪ t) − v(S)], v deleting the absent tokens; the first position is special."""
    net = copy.deepcopy(bilstm).double()
    inputs = sentiment_task(5, seed=8, length=5, min_length=4).inputs()
    inputs["special_tokens_mask"] = torch.zeros_like(inputs["input_ids"])
    inputs["special_tokens_mask"][:, 0] = 1
    scores = af.explain(
        af.wrap(net, attention="attn", embeddings="embed"), inputs, "shapley", shapley_samples=24, scale="probability"
    )
    labels = predicted(net, inputs)
    for row in range(5):
        ids, mask, special = (inputs[key][row] for key in ("input_ids", "attention_mask", "special_tokens_mask"))
        real = [t for t in range(len(ids)) if mask[t] == 1 and special[t] == 0]
        n = len(real)
        for t in real:
            others = [u for u in real if u != t]
            phi = sum(
                math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
                * (coalition_value(net, ids, mask, special, {*s, t}, int(labels[row]))
                   - coalition_value(net, ids, mask, special, set(s), int(labels[row])))
                for size in range(n) for s in itertools.combinations(others, size)
            )  # fmt: skip
            assert scores[row, t] == pytest.approx(phi, abs=1e-9)


def test_exact_shapley_values_without_a_special_token_take_the_uniform_output_for_the_empty_input(bilstm) -> None:
    """A wrapped model's rows have no special token: deleting every token leaves nothing to run, so v(∅) = 1/C
    (no evidence), and the values are the definition over every coalition with that v(∅)."""
    net = copy.deepcopy(bilstm).double()
    inputs = sentiment_task(4, seed=8, length=4, min_length=3).inputs()
    scores = af.explain(
        af.wrap(net, attention="attn", embeddings="embed"), inputs, "shapley", shapley_samples=24, scale="probability"
    )
    labels, special = predicted(net, inputs), torch.zeros_like(inputs["input_ids"])

    def value(row: int, keep: set[int]) -> float:
        ids, mask = inputs["input_ids"][row], inputs["attention_mask"][row]
        return coalition_value(net, ids, mask, special[row], keep, int(labels[row])) if keep else 0.5

    for row in range(4):
        real = inputs["attention_mask"][row].nonzero().squeeze(1).tolist()
        full, empty = value(row, set(real)), value(row, set())
        assert scores[row].sum() == pytest.approx(full - empty, abs=1e-9)
        for t in real:
            others = [u for u in real if u != t]
            phi = sum(
                math.factorial(len(s)) * math.factorial(len(real) - len(s) - 1) / math.factorial(len(real))
                * (value(row, {*s, t}) - value(row, set(s)))
                for size in range(len(real)) for s in itertools.combinations(others, size)
            )  # fmt: skip
            assert scores[row, t] == pytest.approx(phi, abs=1e-9)


def test_sampled_shapley_values_are_efficient_seeded_and_independent_of_the_chunking(bilstm, bilstm_inputs) -> None:
    """Every sampled permutation's marginals sum to v(x) − v(∅), so their mean does too (Štrumbelj & Kononenko)."""
    net = copy.deepcopy(bilstm).double()
    inputs = {key: value[:9] for key, value in bilstm_inputs.items()}
    model = af.wrap(net, attention="attn", embeddings="embed")
    options = {"removal": "mask", "mask_token_id": 7, "shapley_samples": 6, "scale": "probability"}
    scores = af.explain(model, inputs, "shapley", **options)
    label = predicted(net, inputs)
    with torch.no_grad():
        full = probabilities(net)(inputs["input_ids"], inputs["attention_mask"]).gather(1, label[:, None])[:, 0]
        empty = probabilities(net)(real_replaced(inputs, 7), inputs["attention_mask"]).gather(1, label[:, None])[:, 0]
    assert np.allclose(scores.sum(axis=1), (full - empty).numpy(), atol=1e-9)
    assert np.allclose(af.explain(model, inputs, "shapley", batch_size=3, **options), scores, atol=1e-12)
    assert not np.allclose(af.explain(model, inputs, "shapley", seed=1, **options), scores)


def test_every_registry_explainer_gives_b_by_t_float64_zero_off_the_real_positions(bilstm) -> None:
    inputs = sentiment_task(7, seed=2).inputs()
    inputs["special_tokens_mask"] = torch.zeros_like(inputs["input_ids"])
    inputs["special_tokens_mask"][:, 0] = 1
    model = af.wrap(bilstm, attention="attn", embeddings="embed")
    real = (inputs["attention_mask"] == 1) & (inputs["special_tokens_mask"] == 0)
    for name in af.EXPLAINER_NAMES:
        if name in ("rollout", "attention_norm", "value_zeroing", "alti", "attention_flow"):  # read transformer layers
            continue
        scores = af.explain(model, inputs, name, shapley_samples=4)
        assert scores.shape == tuple(inputs["input_ids"].shape) and scores.dtype == np.float64, name
        assert (scores[~real.numpy()] == 0).all() and np.isfinite(scores).all(), name


def test_rollout_needs_more_than_one_attention_layer(inputs) -> None:
    with pytest.raises(af.AttnFaithError, match="one attention layer"):
        af.explain(wrapped("faithful"), inputs, "rollout")


def test_a_callable_gets_the_inputs_on_the_audit_device_and_its_scores_are_validated(inputs) -> None:
    seen = {}

    def by_position(given: dict[str, torch.Tensor]) -> np.ndarray:
        seen.update(given)
        return np.tile(np.arange(given["input_ids"].shape[1], dtype=np.float32), (given["input_ids"].shape[0], 1))

    scores = af.explain(wrapped("faithful"), inputs, by_position)
    assert set(seen) == set(inputs) and torch.equal(seen["input_ids"], inputs["input_ids"])
    assert (scores[inputs["attention_mask"].numpy() == 0] == 0).all() and scores[0, 3] == 3.0
    model = wrapped("faithful")
    with pytest.raises(af.AttnFaithError, match=r"explainer 'wrong_shape' returned scores of shape \(48, 3\)"):

        def wrong_shape(given):
            return torch.zeros(48, 3)

        af.explain(model, inputs, wrong_shape)
    with pytest.raises(af.AttnFaithError, match="non-finite score at instance 0, position 1"):

        def one_nan(given):
            scores = torch.zeros(given["input_ids"].shape)
            scores[0, 1] = float("nan")
            scores[:, -1] = float("inf")  # off the real positions of most rows: ignored there
            return scores

        af.explain(model, inputs, one_nan)
    with pytest.raises(af.AttnFaithError, match="not numbers"):
        af.explain(model, inputs, lambda given: "scores")
    with pytest.raises(af.AttnFaithError, match="did you mean 'shapley'"):
        af.explain(model, inputs, "shapely")


def test_the_model_is_left_as_it_was_after_every_explainer(bilstm_inputs) -> None:
    net = ZooModel("misleading").train()
    before = copy.deepcopy(net.state_dict())
    model = af.wrap(net, attention="attn", embeddings="embed")
    for name in ("integrated_gradients", "shapley", "leave_one_out"):
        af.explain(model, sentiment_task(5, seed=1).inputs(), name, removal="mask", mask_token_id=0)
    assert net.training and all(module.training for module in net.modules())
    assert all(torch.equal(value, net.state_dict()[key]) for key, value in before.items())
    assert not net.embed._forward_hooks and not net.attn._forward_hooks
