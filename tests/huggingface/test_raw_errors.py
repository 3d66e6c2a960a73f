"""Bad values that torch would report with its own errors (an index error deep inside an embedding, a reduction
over an empty dimension, a copy out of the meta device) are the package's errors, raised before heavy work and
naming the value, the range and the fix."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.zoo import VOCAB, BiLSTMClassifier, sentiment_task
from tests.huggingface.conftest import VOCAB as HF_VOCAB
from tests.huggingface.conftest import build, token_batch

INPUTS = sentiment_task(6, seed=1, length=9).inputs()
FAST = {"checks": ["uniform", "permutation"], "permutations": 5}


def bilstm() -> Any:
    return af.wrap(BiLSTMClassifier(seed=0), attention="attn", embeddings="embed")


def with_ids(inputs: dict[str, torch.Tensor], position: tuple[int, int], value: int) -> dict[str, torch.Tensor]:
    ids = inputs["input_ids"].clone()
    ids[position] = value
    return {**inputs, "input_ids": ids}


@pytest.mark.parametrize("value", [VOCAB, VOCAB + 7, -1])
def test_token_ids_outside_a_wrapped_models_vocabulary(value: int) -> None:
    with pytest.raises(af.AttnFaithError, match=rf"input_ids.*{value}.*instance 2.*\[0, {VOCAB}\)"):
        af.audit(bilstm(), with_ids(INPUTS, (2, 3), value), **FAST)


@pytest.mark.parametrize("value", [HF_VOCAB, -5])
def test_token_ids_outside_a_huggingface_models_vocabulary(value: int) -> None:
    with pytest.raises(af.AttnFaithError, match=rf"input_ids.*{value}.*\[0, {HF_VOCAB}\)"):
        af.audit(build("bert"), with_ids(token_batch(), (1, 2), value), **FAST)


def test_a_mask_token_outside_the_vocabulary() -> None:
    with pytest.raises(af.AttnFaithError, match=rf"mask_token_id={VOCAB + 3}.*\[0, {VOCAB}\)"):
        af.audit(bilstm(), INPUTS, checks=["loo"], loo="mask", mask_token_id=VOCAB + 3)
    with pytest.raises(af.AttnFaithError, match=rf"mask_token_id={HF_VOCAB}.*\[0, {HF_VOCAB}\)"):
        af.audit(build("bert"), token_batch(), checks=["loo"], loo="mask", mask_token_id=HF_VOCAB)


class NoClasses(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = BiLSTMClassifier(seed=0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(input_ids, attention_mask).reshape(len(input_ids), -1)[:, :0]


def test_logits_without_a_class() -> None:
    model = af.wrap(NoClasses(), attention="net.attn", embeddings="net.embed")
    with pytest.raises(af.AttnFaithError, match=r"logits of shape \(\d+, 0\).*at least one"):
        af.audit(model, INPUTS, **FAST)


def test_inputs_on_the_meta_device() -> None:
    inputs = {key: value.to("meta") for key, value in INPUTS.items()}
    with pytest.raises(af.AttnFaithError, match=r"input_ids.*meta device"):
        af.audit(bilstm(), inputs, **FAST)


def test_a_model_on_the_meta_device() -> None:
    with torch.device("meta"):
        net = BiLSTMClassifier(seed=0)
    with pytest.raises(af.AttnFaithError, match=r"meta device.*weights"):
        af.audit(af.wrap(net, attention="attn", embeddings="embed"), INPUTS, **FAST)


class Infinite(nn.Module):
    """Non-finite logits on instance 0 (the one that tells the adapter whether the attention is causal)."""

    def __init__(self, poison: torch.Tensor) -> None:
        super().__init__()
        self.net = BiLSTMClassifier(seed=0)
        self.poison = poison

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.net(input_ids, attention_mask)
        poisoned = (input_ids == self.poison.to(input_ids.device)).all(dim=1)
        return torch.where(poisoned[:, None], torch.full_like(logits, float("nan")), logits)


def test_a_non_finite_reference_output_names_the_instance_not_a_counterfactual() -> None:
    inputs = sentiment_task(6, seed=1, length=9).inputs()
    model = af.wrap(Infinite(inputs["input_ids"][0]), attention="net.attn", embeddings="net.embed")
    with pytest.raises(af.AttnFaithError, match=r"instance 0 of the inputs") as raised:
        af.audit(model, inputs, **FAST)
    assert "counterfactual" not in str(raised.value)


def test_a_negative_query_counts_from_the_end_of_the_inputs() -> None:
    model, batch = build("bert"), token_batch(padded=0)
    length = batch["input_ids"].shape[1]
    last = af.audit(model, batch, checks=["uniform"], query=-1)
    assert last.instances["attention"] == af.audit(model, batch, checks=["uniform"], query=length - 1).instances["attention"]
    assert last.model["query"] == "position -1 (counted from the end of the inputs)"


@pytest.mark.parametrize("query", [9, 50, -10])
def test_a_query_beyond_the_inputs_is_refused(query: int) -> None:
    with pytest.raises(af.AttnFaithError, match=rf"query={query}.*9 positions.*0\.\.8.*-1\.\.-9"):
        af.audit(build("bert"), token_batch(length=9), checks=["uniform"], query=query)
