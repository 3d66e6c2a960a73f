"""The attention-derived explainers: agreement with the authors' formulas (``derived_reference``) on a tiny BERT,
every name on every tiny architecture, and a BERT built so that raw attention points at tokens whose value vectors
are zero while the output depends on a weakly attended token."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf

import pytest_attnfaith as af
from pytest_attnfaith.errors import AttentionUnavailableError, AttnFaithError
from tests.huggingface import derived_reference
from tests.huggingface.conftest import ARCHITECTURES, build, token_batch

DERIVED = ("attention_norm", "value_zeroing", "alti", "attention_gradient", "attention_flow")
REFERENCES = {name: getattr(derived_reference, name) for name in DERIVED}


def _restricted(scores: torch.Tensor, real: torch.Tensor) -> np.ndarray:
    kept = torch.where(real.bool(), scores.detach().double(), 0.0)
    return (kept / kept.sum(dim=1, keepdim=True)).numpy()


@pytest.mark.parametrize("name", DERIVED)
@pytest.mark.parametrize("layer", [0, -1])
def test_agrees_with_the_authors_formulas_on_a_tiny_bert(name: str, layer: int) -> None:
    model, inputs = build("bert"), token_batch(size=5, length=8, padded=2)
    ours = af.explain(model, inputs, name, layer=layer)
    theirs = _restricted(REFERENCES[name](model, inputs, layer % 2), inputs["attention_mask"])
    assert ours.shape == (5, 8)
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
    assert (ours[inputs["attention_mask"].numpy() == 0] == 0).all()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_name_runs_on_every_tiny_architecture(architecture: str) -> None:
    model, inputs = build(architecture), token_batch(size=4, length=7, padded=2)
    inputs = {**inputs, "special_tokens_mask": torch.zeros_like(inputs["input_ids"])}
    inputs["special_tokens_mask"][:, 0] = 1
    real = inputs["attention_mask"].bool() & ~inputs["special_tokens_mask"].bool()
    for name in DERIVED:
        if architecture == "deberta-v2" and name != "attention_gradient":  # outside AttentionInterface
            with pytest.raises(AttentionUnavailableError, match="output projection"):
                af.explain(model, inputs, name)
            continue
        scores = af.explain(model, inputs, name)
        assert scores.shape == (4, 7) and np.isfinite(scores).all(), name
        assert (scores[~real.numpy()] == 0).all(), name
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-9, err_msg=name)


def test_the_model_is_left_as_it_was() -> None:
    model, inputs = build("llama"), token_batch(size=3, length=6, padded=1)
    model.train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    implementation = model.config._attn_implementation
    for name in DERIVED:
        af.explain(model, inputs, name)
    assert model.training and model.config._attn_implementation == implementation
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_wrapped_models_name_what_is_missing() -> None:
    from pytest_attnfaith.zoo import ZooModel

    inputs = token_batch(size=3, length=6, padded=0)
    inputs["input_ids"] %= 20
    wrapped = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    with pytest.raises(AttentionUnavailableError, match="values, output projection, residual and layer norm are missing"):
        af.explain(wrapped, inputs, "alti")
    with pytest.raises(AttentionUnavailableError, match=r"holds no torch\.nn\.MultiheadAttention"):
        af.explain(wrapped, inputs, "attention_norm")
    with pytest.raises(AttnFaithError, match="one attention layer"):
        af.explain(wrapped, inputs, "attention_flow")
    scores = af.explain(wrapped, inputs, "attention_gradient")
    assert scores.shape == (3, 6)


# -- raw attention on zero values: the decoy BERT ------------------------------------------------------
CLS, SEP, PAD, DECOYS, POSITIVE, NEGATIVE, FILLERS = 1, 2, 0, (3, 4), 5, 6, (7, 8, 9)
WIDTH = 16


def _solve(embedded: torch.Tensor, targets: dict[int, float]) -> torch.Tensor:
    """A direction d with d · E'[t] = targets.get(t, 0) for every token t (least squares; exact here)."""
    wanted = torch.tensor([targets.get(token, 0.0) for token in range(embedded.shape[0])])
    return torch.linalg.lstsq(embedded, wanted[:, None]).solution[:, 0]


def decoy_bert() -> tf.BertForSequenceClassification:
    """One layer, one head. [CLS]'s query scores the decoys 6 above every other key, so raw attention puts ~0.98 on
    them; every value vector is zero but the evidence token's (+u for positive, −u for negative); no FFN; the pooler
    reads the [CLS] output along the positive-minus-negative direction with a large gain."""
    torch.manual_seed(0)
    config = tf.BertConfig(
        vocab_size=10,
        hidden_size=WIDTH,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=4,
        max_position_embeddings=32,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = tf.BertForSequenceClassification(config).eval()
    embeddings, layer = model.bert.embeddings, model.bert.encoder.layer[0]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (embeddings.LayerNorm, layer.attention.output.LayerNorm, layer.output.LayerNorm):
            norm.weight.fill_(1.0)
        embeddings.word_embeddings.weight.copy_(torch.randn(10, WIDTH))
        embedded = embeddings.LayerNorm(embeddings.word_embeddings.weight)
        query, key = _solve(embedded, {CLS: 1.0}), _solve(embedded, dict.fromkeys(DECOYS, 1.0))
        value = _solve(embedded, {POSITIVE: 1.0, NEGATIVE: -1.0})
        axis = torch.zeros(WIDTH)
        axis[0] = 1.0
        direction = torch.randn(WIDTH)
        attention = layer.attention.self
        attention.query.weight.copy_(6.0 * WIDTH**0.5 * torch.outer(axis, query))
        attention.key.weight.copy_(torch.outer(axis, key))
        attention.value.weight.copy_(torch.outer(direction, value))
        layer.attention.output.dense.weight.copy_(torch.eye(WIDTH))
        inputs, labels = decoy_sentences(64, seed=0)
        cls = model.bert(input_ids=inputs["input_ids"])[0][:, 0]
        positive, negative = cls[labels == 1].mean(dim=0), cls[labels == 0].mean(dim=0)
        reading = positive - negative
        model.bert.pooler.dense.weight[0] = 50.0 * reading / reading.norm() ** 2
        model.bert.pooler.dense.bias[0] = -50.0 * reading @ ((positive + negative) / 2) / reading.norm() ** 2
        model.classifier.weight.copy_(torch.tensor([[-4.0] + [0.0] * (WIDTH - 1), [4.0] + [0.0] * (WIDTH - 1)]))
    return model


def _encoded(bodies: list[list[int]]) -> dict[str, torch.Tensor]:
    ids = torch.tensor([[CLS, *body, SEP] for body in bodies])
    special = torch.zeros_like(ids)
    special[:, [0, -1]] = 1
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "special_tokens_mask": special}


def decoy_sentences(count: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Bodies of 8 tokens: 3 decoys, one evidence token, 4 fillers, shuffled; label 1 = positive evidence."""
    generator = np.random.default_rng(seed)
    bodies, labels = [], []
    for index in range(count):
        label = index % 2
        body = [*generator.choice(DECOYS, 3), POSITIVE if label else NEGATIVE, *generator.choice(FILLERS, 4)]
        bodies.append([int(token) for token in generator.permutation(body)])
        labels.append(label)
    return _encoded(bodies), torch.tensor(labels)


def test_the_decoy_bert_is_built_as_described() -> None:
    model = decoy_bert()
    inputs, labels = decoy_sentences(40, seed=1)
    plain = {key: value for key, value in inputs.items() if key != "special_tokens_mask"}
    model.set_attn_implementation("eager")
    with torch.no_grad():
        output = model(**plain, output_attentions=True)
    assert torch.equal(output.logits.argmax(dim=1), labels)  # decided by the evidence token
    decoys = torch.isin(inputs["input_ids"], torch.tensor(DECOYS))
    cls_row = output.attentions[0][:, 0, 0]
    assert (cls_row * decoys).sum(dim=1).min() > 0.9  # raw attention: on the decoys
    evidence = torch.isin(inputs["input_ids"], torch.tensor([POSITIVE, NEGATIVE]))
    assert (cls_row * evidence).sum(dim=1).max() < 0.02  # the evidence: weakly attended


@pytest.mark.parametrize("removal", ["delete", "mask"])
def test_attention_norm_passes_comprehensiveness_where_attention_fails(removal: str) -> None:
    model = decoy_bert()
    inputs, _ = decoy_sentences(40, seed=2)
    comparison = af.compare_explanations(model, inputs, ["attention", "attention_norm"], removal=removal, mask_token_id=PAD)
    assert comparison.reports["attention"].checks["comprehensiveness"].verdict == "failed"
    assert comparison.reports["attention_norm"].checks["comprehensiveness"].verdict == "passed"
    assert comparison.ranking.index("attention_norm") < comparison.ranking.index("attention")
