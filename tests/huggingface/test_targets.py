"""``targets``: the output is the softmax over chosen logits — a causal LM's next-token logits at the last real token
(token ids or words), a classifier's classes — computed from the target rows of the output head only."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

import pytest_attnfaith as af
from pytest_attnfaith.adapters import prepare_batch
from pytest_attnfaith.adapters.huggingface import HuggingFaceModel
from pytest_attnfaith.options import resolve_options
from tests.huggingface.conftest import DECODERS, build, token_batch
from tests.huggingface.eager_reference import edited_logits

TARGETS = [7, 11, 42]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("name", DECODERS)
def test_targets_are_the_softmax_over_the_label_logits_at_the_last_real_token(tiny, name, side):
    inputs = token_batch(side=side)
    report = af.audit(tiny[name], inputs, checks=["uniform"], targets=TARGETS, sink="keep")
    expected = torch.softmax(edited_logits(tiny[name], inputs)[:, TARGETS], dim=1)
    assert report.instances["predicted"] == expected.argmax(dim=1).tolist()
    assert (
        max(abs(a - b) for a, b in zip(report.instances["probability"], expected.max(dim=1).values.tolist(), strict=True)) < 1e-6
    )
    assert report.model["output"]["ids"] == TARGETS and report.model["output"]["output_head"] == "target rows only (3 of 120)"


@pytest.mark.parametrize("name", DECODERS)
def test_the_output_head_cut_to_the_target_rows_equals_the_full_head(tiny, batch, name):
    """Every pass (reference and counterfactual) computes 3 of 120 rows of the output head: the same logits."""
    adapter = HuggingFaceModel(tiny[name])
    with adapter.session(resolve_options(targets=TARGETS)):
        cut = adapter.forward(prepare_batch(batch))
        assert adapter._head is not None and adapter._head.weight.shape[0] == 3
    with adapter.session(resolve_options()):
        full = adapter.forward(prepare_batch(batch))
    assert torch.allclose(cut.probs, torch.softmax(torch.log(full.probs)[:, TARGETS], dim=1), atol=1e-6)


def test_words_become_their_first_token_through_the_tokenizer(tokenizer):
    config = tf.LlamaConfig(**{**build("llama").config.to_dict(), "vocab_size": tokenizer.vocab_size})
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(config)
    inputs = tokenizer(["a wonderful film", "a boring plot"], return_tensors="pt", padding=True)
    report = af.audit(
        af.huggingface(model, tokenizer=tokenizer), inputs, checks=["uniform"], targets=["good", "terrible", "wonderfully"]
    )
    output = report.model["output"]
    first = [tokenizer.encode(word, add_special_tokens=False)[0] for word in ("good", "terrible", "wonderfully")]
    assert output["ids"] == first and output["words"] == ["good", "terrible", "wonderfully"]
    assert output["multi_token"] == ["wonderfully"]  # "wonderful", "##ly": its first token is scored
    with pytest.raises(af.AttnFaithError, match=r"'wonderful' and 'wonderfully' both start with token"):
        af.audit(af.huggingface(model, tokenizer=tokenizer), inputs, checks=["uniform"], targets=["wonderful", "wonderfully"])


class _Calls:
    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self.handle = model.register_forward_pre_hook(self.called)

    def called(self, module: torch.nn.Module, args: object) -> None:
        self.count += 1


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([7, 120], r"targets \[120\] are out of range: GPT2LMHeadModel has 120 tokens in its output vocabulary"),
        ([7], "at least two distinct token ids"),
        ([7, 7], "2 targets, 1 distinct"),
        ([" good", " bad"], "no tokenizer is known for GPT2LMHeadModel"),
    ],
)
def test_bad_targets_are_refused_before_the_model_runs(tiny, batch, targets, message):
    calls = _Calls(tiny["gpt2"])
    try:
        with pytest.raises(af.AttnFaithError, match=message):
            af.audit(tiny["gpt2"], batch, targets=targets)
    finally:
        calls.handle.remove()
    assert calls.count == 0


def test_a_sequence_classifier_takes_class_indices_or_labels(batch):
    torch.manual_seed(0)
    config = tf.BertConfig(**build("bert").config.to_dict())
    config.num_labels, config.id2label, config.label2id = (
        3,
        {0: "neg", 1: "neutral", 2: "pos"},
        {"neg": 0, "neutral": 1, "pos": 2},
    )
    model = tf.BertForSequenceClassification(config)
    by_index = af.audit(model, batch, checks=["uniform"], targets=[0, 2])
    by_label = af.audit(model, batch, checks=["uniform"], targets=["neg", "pos"])
    expected = torch.softmax(edited_logits(model, batch)[:, [0, 2]], dim=1).max(dim=1).values
    assert torch.allclose(torch.tensor(by_index.instances["probability"], dtype=torch.float64), expected, atol=1e-6)
    assert by_label.instances["probability"] == by_index.instances["probability"]
    assert by_label.model["output"]["labels"] == ["neg", "pos"]
    with pytest.raises(af.AttnFaithError, match=r"targets \['happy'\] are not labels"):
        af.audit(model, batch, targets=["neg", "happy"])


def test_a_wrapped_model_takes_the_indices_of_its_logits_and_refuses_words():
    from pytest_attnfaith.zoo import ZooModel, sentiment_task

    inputs = sentiment_task(8, seed=1).inputs()
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    report = af.audit(model, inputs, checks=["uniform"], targets=[1, 0])
    plain = af.audit(model, inputs, checks=["uniform"])
    assert report.instances["predicted"] == [1 - p for p in plain.instances["predicted"]]
    assert report.model["output"] == {"distribution": "softmax over the target logits", "ids": [1, 0]}
    with pytest.raises(af.AttnFaithError, match="are words, but ZooModel has no tokenizer"):
        af.audit(model, inputs, targets=["good", "bad"])
    with pytest.raises(af.AttnFaithError, match="returned logits of shape"):
        af.audit(model, inputs, targets=[0, 5])
