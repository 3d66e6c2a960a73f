"""wrap(): attention read and replaced through forward hooks, or by intercepting the softmax inside a module."""

from __future__ import annotations

import torch
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.zoo import VOCAB, sentiment_task

INPUTS = sentiment_task(24, seed=3, length=10).inputs()


class MHAClassifier(nn.Module):
    """A [CLS]-style classifier over nn.MultiheadAttention: the weights it returns are not used downstream."""

    def __init__(self, heads: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 8, padding_idx=0)
        self.mha = nn.MultiheadAttention(8, heads, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask=None):
        e = self.embed(input_ids)
        pad = None if attention_mask is None else attention_mask == 0
        out, _ = self.mha(e, e, e, key_padding_mask=pad)
        return self.head(out[:, 0])


def test_multihead_attention_softmax_is_intercepted_and_replacing_it_changes_the_output() -> None:
    report = af.audit(af.wrap(MHAClassifier(), attention="mha", embeddings="embed"), INPUTS, checks=["uniform", "permutation"])
    assert report.model["intercept"] == "softmax"
    assert report.checks["uniform"].details["mean"] > 1e-3
    assert report.checks["permutation"].details["mean"] > 1e-3


def test_intercepted_attention_is_the_per_head_weights_of_the_first_query_row() -> None:
    net = MHAClassifier(heads=2).eval()
    model = af.wrap(net, attention="mha", embeddings="embed")
    report = af.audit(model, INPUTS, checks=["uniform"], head=1)
    e = net.embed(INPUTS["input_ids"])
    _, weights = net.mha(e, e, e, key_padding_mask=INPUTS["attention_mask"] == 0, average_attn_weights=False)
    expected = weights[:, 1, 0, :]
    for row, values in enumerate(report.instances["attention"]):
        n = int(INPUTS["attention_mask"][row].sum())
        assert torch.allclose(torch.tensor(values), expected[row, :n] / expected[row, :n].sum(), atol=1e-5)


def test_fast_path_and_need_weights_false_are_intercepted_too() -> None:
    class NoWeights(MHAClassifier):
        def forward(self, input_ids, attention_mask=None):
            e = self.embed(input_ids)
            with torch.no_grad():
                out, _ = self.mha(e, e, e, need_weights=False)
            return self.head(out[:, 0])

    inputs = {"input_ids": INPUTS["input_ids"][:, :6].clamp(min=1)}
    report = af.audit(af.wrap(NoWeights(), attention="mha", embeddings="embed"), inputs, checks=["uniform"])
    assert report.checks["uniform"].details["mean"] > 1e-3


class FourDimensional(nn.Module):
    """A module whose output is (B, H, Tq, Tk) attention, consumed downstream."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Embedding(VOCAB, 8, padding_idx=0)
        self.qk = nn.Linear(8, 16)
        self.attn = nn.Softmax(dim=-1)
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask):
        e = self.embed(input_ids)
        q, k = self.qk(e).view(*e.shape[:2], 2, 8).unbind(2)
        scores = torch.einsum("bqd,bkd->bqk", q, k).unsqueeze(1).repeat(1, 2, 1, 1)
        scores = scores.masked_fill(attention_mask[:, None, None, :] == 0, float("-inf"))
        weights = self.attn(scores)
        attended = torch.einsum("bhqk,bkd->bhqd", weights, e).mean(1)
        return self.head(attended[:, 0])


def test_four_dimensional_attention_output_is_read_at_the_query_row_and_replaced() -> None:
    report = af.audit(af.wrap(FourDimensional(), attention="attn", embeddings="embed"), INPUTS, checks=["uniform"], query="first")
    assert report.model["intercept"] == "output"
    assert report.checks["uniform"].details["mean"] > 1e-3


def test_the_atlas_of_a_wrapped_multihead_attention_edits_each_head_alone() -> None:
    """Head h's uniform row equals a single-head audit of head h; the layer's row equals the default audit."""
    model = af.wrap(MHAClassifier(heads=2), attention="mha", embeddings="embed")
    atlas = af.audit(model, INPUTS, checks=["uniform", "gradient"], per_head=True)
    rows = {(row["head"], row["check"]): row for row in atlas.per_head}
    assert set(rows) == {(head, check) for head in (0, 1, "all") for check in ("uniform", "gradient")}
    for head in (0, 1):
        alone = af.audit(model, INPUTS, checks=["uniform"], head=head)
        assert torch.allclose(
            torch.tensor(rows[head, "uniform"]["per_instance"]), torch.tensor(alone.checks["uniform"].per_instance)
        )
    layer = atlas.checks["uniform"].per_instance
    assert torch.allclose(torch.tensor(rows["all", "uniform"]["per_instance"]), torch.tensor(layer))
    assert not torch.allclose(torch.tensor(rows[0, "uniform"]["per_instance"]), torch.tensor(rows[1, "uniform"]["per_instance"]))
