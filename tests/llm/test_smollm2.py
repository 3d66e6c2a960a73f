"""A real pretrained LLM, offline: SmolLM2-135M-Instruct as a zero-shot sentiment classifier."""

from __future__ import annotations

import numpy as np
import torch

import pytest_attnfaith as af
from benchmarks.smollm2 import TARGETS
from tests.huggingface.eager_reference import eager_attentions, edited_logits, last_real, tvd, uniform_over
from tests.llm.conftest import MARKS

pytestmark = MARKS


def label_ids(tokenizer) -> list[int]:
    return [tokenizer.encode(word, add_special_tokens=False)[0] for word in TARGETS]


def test_targets_give_the_softmax_over_the_label_logits(smollm2_model, prompts):
    model, tokenizer = smollm2_model
    report = af.audit(af.huggingface(model, tokenizer=tokenizer), prompts, checks=["uniform"], targets=list(TARGETS))
    with torch.no_grad():
        logits = model(**prompts).logits.double()
    expected = torch.softmax(logits[torch.arange(4), last_real(prompts["attention_mask"])][:, label_ids(tokenizer)], dim=1)
    assert report.instances["predicted"] == [1, 0, 1, 0], "the label words read the four reviews right"
    assert np.allclose(report.instances["probability"], expected.max(dim=1).values.numpy(), atol=1e-4)
    assert report.model["output"]["tokens"] == ["negative", "positive"]  # the words, not byte-level BPE's "Ġnegative"
    words = [token for tokens in report.instances["tokens"] for token in tokens]
    assert {"gorgeous", "↵", "és"} <= set(words) and not any("Ġ" in word or "Ċ" in word for word in words)
    assert report.model["output"]["output_head"] == "target rows only (2 of 49152)"


def test_the_sink_is_excluded_and_its_mass_reported(smollm2_model, prompts):
    model, tokenizer = smollm2_model
    report = af.audit(af.huggingface(model, tokenizer=tokenizer), prompts, checks=["uniform"], targets=list(TARGETS))
    attention = eager_attentions(model, prompts)[-1]
    last = last_real(prompts["attention_mask"])
    expected = attention[torch.arange(4), :, last, 0].mean(dim=1)
    assert report.model["sink"]["excluded"]
    assert np.allclose(report.instances["sink_mass"], expected.numpy(), atol=1e-4)
    assert all(tokens[0] != "Review" for tokens in report.instances["tokens"])


def test_a_small_atlas_runs_through_the_one_token_shortcut(smollm2_model, prompts):
    model, tokenizer = smollm2_model
    inputs = {key: value[:2] for key, value in prompts.items()}
    report = af.audit(
        af.huggingface(model, tokenizer=tokenizer), inputs, checks=["uniform"], per_head=True, targets=list(TARGETS)
    )
    assert len(report.per_head) == 30 * 10
    assert report.model["forward"].startswith("one-token passes") and "at layers 0-29" in report.model["forward"]
    mask = inputs["attention_mask"].bool().clone()
    mask[:, 0] = False  # the sink, excluded
    ids = label_ids(tokenizer)
    clean = torch.softmax(edited_logits(model, inputs)[:, ids], dim=1)
    for layer, head in ((0, 3), (14, 0), (29, 8), (29, "all")):
        row = next(r for r in report.per_head if r["layer"] == layer and r["head"] == head)
        heads = None if head == "all" else torch.full((2,), head)
        edited = torch.softmax(edited_logits(model, inputs, layer, uniform_over(mask), heads=heads)[:, ids], dim=1)
        assert np.allclose(row["per_instance"], tvd(edited, clean).numpy(), atol=1e-4), (layer, head)
