"""A real pretrained LLM, offline: SmolLM2-135M-Instruct as a zero-shot sentiment classifier."""

from __future__ import annotations

import numpy as np
import torch

import pytest_attnfaith as af
from benchmarks.smollm2 import TARGETS
from pytest_attnfaith.explainers import integrated_gradients, notes
from pytest_attnfaith.options import resolve_options
from pytest_attnfaith.session import opened
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
        af.huggingface(model, tokenizer=tokenizer),
        inputs,
        checks=["uniform"],
        per_head=True,
        targets=list(TARGETS),
        scale="probability",
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


def label_output(model, embeds, mask, labels, classes, *, log_odds: bool) -> torch.Tensor:
    """f computed here from ``inputs_embeds``: the probability of ``classes`` over the label words, or its logit
    difference against the other label word."""
    with torch.no_grad():
        logits = model(inputs_embeds=embeds, attention_mask=mask).logits.double()
    z = logits[torch.arange(len(mask)), last_real(mask)][:, labels]
    chosen, other = z.gather(1, classes[:, None])[:, 0], z.gather(1, 1 - classes[:, None])[:, 0]
    return chosen - other if log_odds else torch.softmax(z, dim=1).gather(1, classes[:, None])[:, 0]


def independent_baseline(model, tokenizer, prompts, kind: str) -> torch.Tensor:
    """The default path's start, built here: every attended token but the first (the sink) replaced."""
    embeds = model.get_input_embeddings()(prompts["input_ids"]).detach()
    real = prompts["attention_mask"].bool().clone()
    real[:, 0] = False
    if kind == "zeros":
        start = torch.zeros_like(embeds)
    elif kind == "mask":
        start = model.get_input_embeddings().weight[tokenizer.pad_token_id].detach().expand_as(embeds)
    else:
        start = ((embeds * real[..., None]).sum(1, keepdim=True) / real.sum(1)[:, None, None]).expand_as(embeds)
    return torch.where(real[..., None], start, embeds)


def test_integrated_gradients_are_complete_with_the_default_options(smollm2_model, prompts):
    """Σ_t IG_t = f(x) − f(b) within 0.02 + 5% of |f(x) − f(b)| on every prompt, with f the default margin of the two
    label words (z_ŷ − z_other), f(x) and f(b) computed here from ``inputs_embeds`` (0.2's 50 fixed nodes from the
    zero baseline missed by up to 0.53 in probability)."""
    model, tokenizer = smollm2_model
    options = resolve_options(targets=list(TARGETS))
    with opened(af.huggingface(model, tokenizer=tokenizer), prompts, options) as context:
        scores = integrated_gradients.attribute(context).cpu()
        classes = context.predicted.cpu()
        entry = notes.take(context)
    mask, labels = prompts["attention_mask"], label_ids(tokenizer)
    embeds = model.get_input_embeddings()(prompts["input_ids"]).detach()
    start = independent_baseline(model, tokenizer, prompts, options.ig_baseline)
    change = label_output(model, embeds, mask, labels, classes, log_odds=True) - label_output(
        model, start, mask, labels, classes, log_odds=True
    )
    assert entry is not None and entry["unconverged"] == 0
    assert not scores.isnan().any() and scores[:, 0].eq(0).all(), "the sink keeps its embedding: no attribution"
    assert ((scores.sum(dim=1) - change).abs() <= 0.02 + 0.05 * change.abs()).all()
    assert change.abs().max() > 0.1, "the path moves f: completeness is not met by scores of 0"
