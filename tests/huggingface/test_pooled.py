"""``query="all"``: mean-pooled encoders, whose output pools every query row, read the mean of the rows and replace
every row; the report warns when the rows read are not what the output pools (measured by the gradient flow)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import transformers as tf
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.zoo import VOCAB, sentiment_task, train_classifier
from tests.huggingface.conftest import minilm_path, sentiment_texts, token_batch
from tests.huggingface.eager_reference import edited_logits, tvd
from tests.huggingface.test_options import eager_attentions


class MeanPooledMiniLM(nn.Module):
    """A sentence-transformers-style classifier: the packaged MiniLM, mean pooling over the tokens, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bert = tf.BertModel.from_pretrained(minilm_path(), add_pooling_layer=False)
        self.head = nn.Linear(self.bert.config.hidden_size, 2)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return self.head((states * mask).sum(dim=1) / mask.sum(dim=1))


class MeanPooledTransformer(nn.Module):
    """``nn.TransformerEncoderLayer`` over token embeddings, mean pooling, one binary logit."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 16)
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.layer(self.embed(input_ids), src_key_padding_mask=~attention_mask.bool())
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return self.head((states * mask).sum(dim=1) / mask.sum(dim=1)).squeeze(-1)


@pytest.fixture(scope="module")
def pooled_minilm(tokenizer: Any) -> tuple[af.AttentionModel, Any]:
    """Fine-tuned for four steps (embeddings frozen) on the generated sentiment task — held-out accuracy 1.0, mean
    confidence 0.94 (more steps saturate it to 0.999, where no edit moves the output) — and held-out encodings."""
    net = MeanPooledMiniLM()
    net.bert.get_input_embeddings().weight.requires_grad_(False)
    texts, labels = sentiment_texts(128, seed=0)
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    optimiser = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=3e-4)
    net.train()
    for part in torch.arange(len(texts)).split(32):
        loss = nn.functional.cross_entropy(net(encoded["input_ids"][part], encoded["attention_mask"][part]), labels[part])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    held_out, _ = sentiment_texts(24, seed=1)
    model = af.wrap(net.eval(), attention="bert.encoder.layer.5.attention.self", embeddings="bert.embeddings.word_embeddings")
    return model, tokenizer(held_out, padding=True, return_tensors="pt")


def test_a_mean_pooled_minilm_is_judged_by_every_row_not_by_cls(pooled_minilm):
    model, inputs = pooled_minilm
    first = af.audit(model, inputs, checks=["uniform"], scale="probability")
    every = af.audit(model, inputs, checks=["uniform"], query="all", scale="probability")
    assert first.checks["uniform"].statistic == 1.0, "flattening [CLS]'s row moves nothing: 100% flagged"
    assert every.checks["uniform"].statistic < 0.2, "flattening every row moves the outputs"
    assert np.median(every.checks["uniform"].per_instance) > 10 * np.median(first.checks["uniform"].per_instance)
    assert first.model["read_share"]["mean"] < 0.5 and "query='all'" in first.model["warnings"][0]
    assert "query=&#x27;all&#x27; reads and replaces every row" in first._repr_html_()
    assert every.model["read_share"]["mean"] == pytest.approx(1.0) and every.model["warnings"] == []
    assert every.model["replaced"] == "every real query row of every head"


def test_a_mean_pooled_transformer_encoder_layer_through_wrap():
    net = train_classifier(MeanPooledTransformer(), sentiment_task(1000, seed=0), epochs=4)
    model = af.wrap(net, attention="layer.self_attn", embeddings="embed")
    inputs = sentiment_task(64, seed=3).inputs()
    last = af.audit(model, inputs, checks=["uniform", "permutation"], query="last", scale="probability")
    every = af.audit(model, inputs, checks=["uniform", "permutation"], query="all", scale="probability")
    assert last.checks["uniform"].statistic == 1.0 and last.checks["permutation"].statistic == 1.0
    assert every.checks["uniform"].statistic < 0.8 and every.checks["permutation"].verdict == "passed"
    assert last.model["read_share"]["mean"] < 0.2 and last.model["warnings"]


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_query_all_reads_the_mean_of_the_real_rows(tiny, name):
    inputs = token_batch()
    report = af.audit(tiny[name], inputs, checks=["uniform"], query="all", sink="keep", scale="probability")
    attention = eager_attentions(tiny[name], inputs)[-1].mean(dim=1)  # (B, T, T)
    mask = inputs["attention_mask"].bool()
    expected = (attention * mask[:, :, None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
    for row, want, keep in zip(report.instances["attention"], expected, mask, strict=True):
        assert np.allclose(row, (want[keep] / want[keep].sum()).numpy(), atol=1e-6)


def test_every_row_of_a_causal_model_is_flattened_over_the_keys_it_may_see(tiny):
    """Row q of a decoder sees tokens 0..q: its uniform counterfactual is 1/(q + 1) on them (an independent
    implementation through transformers' eager attention, every real row at once)."""
    model, targets = tiny["llama"], [7, 11]
    inputs = token_batch()
    report = af.audit(model, inputs, checks=["uniform"], query="all", sink="keep", targets=targets, scale="probability")
    mask = inputs["attention_mask"].bool()
    seen = mask[:, None, :] & torch.ones(mask.shape[1], mask.shape[1], dtype=torch.bool).tril()[None]
    flat = seen.double() / seen.sum(dim=2, keepdim=True).clamp(min=1)
    clean = torch.softmax(edited_logits(model, inputs)[:, targets], dim=1)
    edited = torch.softmax(edited_logits(model, inputs, layer=1, every=(flat, mask))[:, targets], dim=1)
    assert np.allclose(report.checks["uniform"].per_instance, tvd(edited, clean).numpy(), atol=1e-6)
