"""Explainers and explanation audits on Hugging Face models: integrated gradients equal Captum's on a tiny random
BERT, rollout is the attention ``aggregation="rollout"`` reads, and the fine-tuned MiniLM's explanations are
judged against random orderings with its special tokens kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.metrics import output_distribution
from tests.huggingface.conftest import token_batch

captum_attr = pytest.importorskip("captum.attr", reason="Captum (the 'explain' extra) is the reference implementation")


def probabilities(model):
    return lambda input_ids, attention_mask: output_distribution(model(input_ids=input_ids, attention_mask=attention_mask).logits)


@pytest.mark.parametrize(("baseline", "token"), [("zeros", 0), ("mask", 3)])
def test_integrated_gradients_equal_captums_on_a_tiny_bert(tiny, batch, baseline, token) -> None:
    """BERT's pad row (id 0) of the word embeddings is zero, so the zero baseline is Captum's baseline id 0."""
    model = tiny["bert"]
    ours = af.explain(
        model,
        batch,
        "integrated_gradients",
        ig_baseline=baseline,
        mask_token_id=3,
        ig_steps=32,
        scale="probability",
        ig_tolerance=None,
    )
    training = model.training
    model.set_attn_implementation("eager")
    model.eval()  # the audit runs in eval mode (no dropout); so must the reference
    try:
        with torch.no_grad():
            label = probabilities(model)(batch["input_ids"], batch["attention_mask"]).argmax(dim=1)
        theirs = (
            captum_attr.LayerIntegratedGradients(probabilities(model), model.get_input_embeddings())
            .attribute(
                batch["input_ids"],
                baselines=torch.where(batch["attention_mask"].bool(), token, batch["input_ids"]),
                additional_forward_args=(batch["attention_mask"],),
                target=label,
                n_steps=32,
            )
            .sum(dim=-1)
        )
    finally:
        model.set_attn_implementation("sdpa")
        model.train(training)
    assert model.get_input_embeddings().weight[0].abs().max() == 0
    assert np.abs(ours - theirs.detach().double().numpy()).max() < 1e-5


def test_rollout_is_the_attention_aggregation_rollout_reads(tiny, batch) -> None:
    model = tiny["bert"]
    rollout = af.explain(model, batch, "rollout")
    read = af.explain(model, batch, "attention", aggregation="rollout")
    assert np.allclose(rollout, read) and not np.allclose(rollout, af.explain(model, batch, "attention"))
    assert np.allclose(rollout.sum(axis=1), 1.0)


def test_rollout_outside_the_attention_interface_is_a_clear_error(tiny) -> None:
    with pytest.raises(af.AttnFaithError, match="explainer 'rollout' needs every layer's attention"):
        af.explain(tiny["deberta-v2"], token_batch(), "rollout")


def test_special_tokens_are_never_removed(tiny) -> None:
    """With [CLS] and [SEP] marked special, only the real tokens are removed: deleting all of them leaves a row."""
    inputs = token_batch(size=4)
    inputs["special_tokens_mask"] = torch.zeros_like(inputs["input_ids"])
    inputs["special_tokens_mask"][:, 0] = 1
    report = af.audit_explanation(tiny["bert"], inputs, "leave_one_out", aopc_bins=(1.0,))
    assert np.isfinite(report.checks["comprehensiveness"].per_instance).all()
    bare = af.audit_explanation(tiny["bert"], token_batch(size=4), "leave_one_out", aopc_bins=(1.0,))
    assert np.isnan(bare.checks["comprehensiveness"].per_instance).all()  # nothing left to run: undefined


@pytest.mark.slow
def test_on_the_fine_tuned_minilm_leave_one_out_and_integrated_gradients_beat_random_orderings(minilm, sentiment) -> None:
    encoded, _ = sentiment
    comparison = af.compare_explanations(minilm, encoded, ["leave_one_out", "integrated_gradients"], removal="mask")
    for name in ("leave_one_out", "integrated_gradients"):
        assert comparison.reports[name].checks["comprehensiveness"].verdict == "passed", comparison.summary()
