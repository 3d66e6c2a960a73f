"""Real data: scikit-learn's 8×8 digits. A classifier whose class-token attention is its only path passes *used*;
its twin that mean-pools the same patches fails; every check and explainer gives one value per instance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.adapters.vision import prepare_positions
from pytest_attnfaith.options import resolve_options
from tests.vision.conftest import EXPLAINERS

FAST = {"permutations": 30, "adversaries": 3, "adversarial_steps": 100}


def audited(trained, **options):
    net = af.wrap(trained.model, attention="attention", embeddings="embeddings")
    return af.audit(net, {"pixel_values": trained.held_out[:48]}, **{**FAST, **options})


def test_both_twins_learn_the_digits(attentive_digits, mean_digits):
    assert attentive_digits.accuracy > 0.8 and mean_digits.accuracy > 0.8


def test_attention_that_is_the_only_path_is_used(attentive_digits):
    report = audited(attentive_digits)
    assert report.verdicts["used"] == "yes"
    assert report.instances["tokens"][0] == [f"{r},{c}" for r in range(4) for c in range(4)]  # CLS is special


def test_the_mean_pooled_twin_fails_used(mean_digits):
    report = audited(mean_digits)
    assert report.verdicts["used"] == "no"
    assert not report.passed


@pytest.mark.parametrize("explainer", EXPLAINERS)
def test_every_explainer_gives_per_instance_patch_scores(attentive_digits, explainer):
    net = af.wrap(attentive_digits.model, attention="attention", embeddings="embeddings")
    inputs = {"pixel_values": attentive_digits.held_out[:8]}
    if explainer == "rollout":  # one attention layer: nothing to multiply
        with pytest.raises(af.AttnFaithError, match="one attention layer"):
            af.explain(net, inputs, explainer)
        return
    report = af.audit_explanation(
        net, inputs, explainer, checks=["comprehensiveness", "sufficiency", "gradient", "loo"], ig_steps=8, shapley_samples=4
    )
    for result in report.checks.values():
        assert result.per_instance.shape == (8,)
    scores = af.explain(net, inputs, explainer, ig_steps=8, shapley_samples=4)
    assert scores.shape == (8, 17) and np.all(scores[:, 0] == 0)


@pytest.mark.parametrize("how", ["delete", "zero", "mean", "vector"])
def test_a_removed_patch_is_edited_in_the_embeddings_after_the_position_embeddings(attentive_digits, how):
    """Deleting patch (1, 1) (position 6, after the class token) runs the model on the embeddings without it;
    masking replaces its embedding by the baseline: zeros, the mean of the instance's patches, or a vector."""
    model, images = attentive_digits.model, attentive_digits.held_out[:3]
    vector = torch.linspace(-1, 1, 32)
    baseline = {"delete": "zero", "zero": "zero", "mean": "mean", "vector": vector}[how]
    net = af.wrap(model, attention="attention", embeddings="embeddings")
    removed = torch.zeros(3, 17, dtype=torch.bool)
    removed[:, 6] = True
    with net.session(resolve_options(baseline=baseline)):
        batch = prepare_positions({"pixel_values": images}, net.count_positions)
        edited = batch.without(torch.arange(3), removed) if how == "delete" else batch.replaced(torch.arange(3), removed, None)
        probs = net.forward(edited).probs
    with torch.no_grad():
        e = model.embeddings(images)
        if how == "delete":
            e = torch.cat([e[:, :6], e[:, 7:]], dim=1)
        else:
            replacement = {"zero": torch.zeros(3, 32), "mean": e[:, 1:].mean(dim=1), "vector": vector.expand(3, -1)}[how]
            e = e.clone()
            e[:, 6] = replacement
        expected = model.out(torch.einsum("bt,btd->bd", model.attention(e), model.value(e))).double().softmax(dim=1)
    torch.testing.assert_close(probs.double(), expected, rtol=1e-5, atol=1e-6)
    assert not model.training


def test_a_baseline_of_the_wrong_width_is_refused(attentive_digits):
    net = af.wrap(attentive_digits.model, attention="attention", embeddings="embeddings")
    with pytest.raises(af.AttnFaithError, match=r"baseline is a vector of 3 values; expected 32"):
        af.explain(net, {"pixel_values": attentive_digits.held_out[:2]}, "integrated_gradients", baseline=[0.0, 1.0, 2.0])
    with pytest.raises(af.AttnFaithError, match=r"option baseline='blur' is not valid"):
        af.audit(net, {"pixel_values": attentive_digits.held_out[:2]}, baseline="blur")


def test_integrated_gradients_integrate_from_the_baseline(attentive_digits):
    """Completeness: Σ_t IG_t = p_ŷ(x) − p_ŷ(b), with b the baseline at every patch (the class token kept)."""
    model, images = attentive_digits.model, attentive_digits.held_out[:4]
    net = af.wrap(model, attention="attention", embeddings="embeddings")
    scores = af.explain(net, {"pixel_values": images}, "integrated_gradients", baseline="mean", ig_steps=64, scale="probability")
    with torch.no_grad():
        e = model.embeddings(images).double()
        base = e.clone()
        base[:, 1:] = e[:, 1:].mean(dim=1, keepdim=True)
        head = model.double()
        full = head.out(torch.einsum("bt,btd->bd", head.attention(e), head.value(e))).softmax(dim=1)
        empty = head.out(torch.einsum("bt,btd->bd", head.attention(base), head.value(base))).softmax(dim=1)
    model.float()
    predicted = full.argmax(dim=1, keepdim=True)
    gap = (full.gather(1, predicted) - empty.gather(1, predicted)).squeeze(1).numpy()
    np.testing.assert_allclose(scores.sum(axis=1), gap, atol=0.02)
