"""Hugging Face vision transformers audited without wrap(): pixel_values (B, C, H, W) in, per-instance values out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf

import pytest_attnfaith as af
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.options import CHECK_NAMES
from tests.huggingface.test_restoration import assert_unchanged, snapshot
from tests.vision.conftest import ARCHITECTURES, EXPLAINERS, SPECIAL, build_vision, images

FAST = {"permutations": 8, "adversaries": 2, "adversarial_steps": 20, "ig_steps": 8, "shapley_samples": 4}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_check_returns_per_instance_values_and_the_model_is_left_as_it_was(name):
    model = build_vision(name)
    model.train()  # as a user may hand it over
    handle = model.base_model.embeddings.register_forward_hook(lambda module, args, output: None)
    inputs = {"pixel_values": images()}
    config = model.config.to_dict()
    before = snapshot(model, inputs)
    removal = "mask" if name == "beit" else "delete"  # BEiT mean-pools the patches: none left is no output
    report = af.audit(model, inputs, removal=removal, **FAST)
    assert set(report.checks) == set(CHECK_NAMES)
    for result in report.checks.values():
        assert result.per_instance.shape == (6,)
    explained = af.audit_explanation(
        model, inputs, "leave_one_out", checks=["comprehensiveness", "sufficiency", "gradient", "loo"], removal=removal, **FAST
    )
    for result in explained.checks.values():
        assert result.per_instance.shape == (6,)
    assert_unchanged(before, snapshot(model, inputs))
    assert model.config.to_dict() == config
    handle.remove()
    # the class (and distillation) token is special: not a patch, in no statistic
    assert all(len(tokens) == 16 for tokens in report.instances["tokens"])
    assert report.instances["tokens"][0][:2] == ["0,0", "0,1"]
    assert report.model["query"].startswith("first")


@pytest.mark.parametrize("explainer", EXPLAINERS)
@pytest.mark.parametrize("removal", ["delete", "mask"])
def test_every_explainer_scores_the_patches_and_never_the_special_tokens(explainer, removal):
    model = build_vision("deit-teacher")
    # From all-zero patches LayerNorm sits at its singular point: integrated gradients' path from the zero baseline does
    # not converge within ig_max_steps on this random DeiT (NaN, warned); the mean patch is a smooth start.
    start = {"baseline": "mean"} if explainer == "integrated_gradients" else {}
    scores = af.explain(model, {"pixel_values": images()}, explainer, removal=removal, loo=removal, **FAST, **start)
    assert scores.shape == (6, 18)
    assert np.all(scores[:, :2] == 0)  # class and distillation tokens
    assert np.isfinite(scores).all() and np.abs(scores[:, 2:]).sum() > 0


def test_windowed_attention_is_refused_naming_the_architecture():
    config = tf.SwinConfig(image_size=8, patch_size=2, num_channels=1, embed_dim=16, depths=[1], num_heads=[1], window_size=2)
    swin = tf.SwinForImageClassification(config)
    with pytest.raises(AttnFaithError, match=r"SwinForImageClassification \(swin\) uses shifted-window attention"):
        af.audit(swin, {"pixel_values": images()})


def test_pixel_values_of_the_wrong_shape_are_refused_before_any_pass():
    with pytest.raises(AttnFaithError, match=r"pixel_values.*expected \(B, C, H, W\)"):
        af.audit(build_vision("vit"), {"pixel_values": torch.zeros(2, 8, 8)})
    with pytest.raises(AttnFaithError, match=r"no 'input_ids'.*pixel_values"):
        af.audit(build_vision("vit"), {"images": torch.zeros(2, 1, 8, 8)})


def test_the_special_positions_follow_the_model():
    for name, special in SPECIAL.items():
        scores = af.explain(build_vision(name), {"pixel_values": images(2)}, "attention")
        assert scores.shape == (2, 16 + special)
        assert np.all(scores[:, :special] == 0) and np.allclose(scores[:, special:].sum(axis=1), 1)
