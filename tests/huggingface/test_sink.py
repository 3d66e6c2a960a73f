"""``sink``: the first attended token, kept as an ordinary token or excluded exactly as a special token is; its
attention mass is in every report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pytest_attnfaith as af
from tests.huggingface.conftest import token_batch
from tests.huggingface.eager_reference import last_real
from tests.huggingface.test_options import eager_attentions

ALL = ("gradient", "loo", "permutation", "uniform", "erasure", "adversarial")
FAST = {"permutations": 10, "adversarial_steps": 30, "adversarial_method": "search"}


def first_attended(mask: torch.Tensor) -> torch.Tensor:
    return mask.bool().int().argmax(dim=1)


@pytest.mark.parametrize(("name", "side"), [("llama", "right"), ("gpt2", "left"), ("bert", "right")])
def test_every_report_gives_the_sinks_mass_in_the_attention_read(tiny, name, side):
    inputs = token_batch(side=side)
    report = af.audit(tiny[name], inputs, checks=["uniform"])
    attentions = eager_attentions(tiny[name], inputs)[-1]
    query = last_real(inputs["attention_mask"]) if name != "bert" else torch.zeros(6, dtype=torch.long)
    rows = attentions[torch.arange(6), :, query].mean(dim=1)
    expected = rows[torch.arange(6), first_attended(inputs["attention_mask"])]
    assert np.allclose(report.instances["sink_mass"], expected.numpy(), atol=1e-6)
    assert report.model["sink"]["mean_mass"] == pytest.approx(float(expected.double().mean()), abs=1e-6)


@pytest.mark.parametrize(("name", "side"), [("llama", "right"), ("qwen2", "left"), ("bert", "right")])
def test_excluding_the_sink_is_marking_it_a_special_token(tiny, name, side):
    inputs = token_batch(side=side)
    special = torch.zeros_like(inputs["input_ids"])
    special[torch.arange(6), first_attended(inputs["attention_mask"])] = 1
    excluded = af.audit(tiny[name], inputs, checks=ALL, sink="exclude", **FAST)
    marked = af.audit(tiny[name], {**inputs, "special_tokens_mask": special}, checks=ALL, sink="keep", **FAST)
    assert excluded.model["sink"]["excluded"] and not marked.model["sink"]["excluded"]
    for check in ALL:
        assert np.allclose(excluded.checks[check].per_instance, marked.checks[check].per_instance, equal_nan=True), check
    assert excluded.instances["attention"] == marked.instances["attention"]
    assert all(
        len(row) == int(m.sum()) - 1 for row, m in zip(excluded.instances["attention"], inputs["attention_mask"], strict=True)
    )


@pytest.mark.parametrize(("name", "excluded"), [("gpt2", True), ("llama", True), ("bert", False), ("distilbert", False)])
def test_by_default_the_sink_is_excluded_under_causal_attention_only(tiny, batch, name, excluded):
    report = af.audit(tiny[name], batch, checks=["uniform"])
    assert report.options["sink"] == "auto" and report.model["sink"]["excluded"] is excluded
    kept = af.audit(tiny[name], batch, checks=["uniform"], sink="keep")
    assert not kept.model["sink"]["excluded"]


def test_a_wrapped_model_without_causal_attention_keeps_its_first_token():
    from pytest_attnfaith.zoo import ZooModel, sentiment_task

    inputs = sentiment_task(8, seed=1).inputs()
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    report = af.audit(model, inputs, checks=["uniform"])
    assert not report.model["sink"]["excluded"] and len(report.instances["sink_mass"]) == 8
    assert af.audit(model, inputs, checks=["uniform"], sink="exclude").model["sink"]["excluded"]
