"""Degenerate inputs never crash a check: undefined values are NaN, counted, and the verdict says why.

Every check × {no row with two real tokens, one real token per row, every row padding but one, an output with
no gradient path to the embeddings, a single instance}, on real zoo models.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task

TASK = sentiment_task(6, seed=3)
FAST = {"permutations": 10, "adversarial_steps": 30}


class ConstantValues(ZooModel):
    """Attention (computed from the embeddings) over values that do not depend on the input: with the attention
    detached, as the gradient check detaches it, the output has no gradient path to the embeddings."""

    def __init__(self) -> None:
        super().__init__("faithful")

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        alpha = self.attn(self.score(self.embed(input_ids)).squeeze(-1), mask)
        values = torch.linspace(-2.0, 2.0, input_ids.shape[1])
        z = (alpha * values).sum(dim=1)
        return torch.stack([torch.zeros_like(z), z], dim=1)


def only_special(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every position but the first of each row special, the first special too in odd rows: no row has two real tokens."""
    special = inputs["attention_mask"].clone()
    special[0::2, 0] = 0
    return {**inputs, "special_tokens_mask": special}


def one_real_token(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    mask = torch.zeros_like(inputs["attention_mask"])
    mask[:, 0] = 1
    return {**inputs, "attention_mask": mask}


def padding_but_one(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    mask = inputs["attention_mask"].clone()
    mask[1:] = 0
    return {**inputs, "attention_mask": mask, "input_ids": inputs["input_ids"] * mask}


def single(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    return {key: value[:1] for key, value in inputs.items()}


SCENARIOS = {
    "no row with two real tokens": (ZooModel("faithful"), only_special),
    "one real token per row": (ZooModel("faithful"), one_real_token),
    "every row padding but one": (ZooModel("faithful"), padding_but_one),
    "no gradient path": (ConstantValues(), lambda inputs: inputs),
    "a single instance": (ZooModel("faithful"), single),
}


@pytest.mark.parametrize("check", af.CHECK_NAMES)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_check_gives_counted_nan_values_and_a_verdict_that_says_why(scenario: str, check: str) -> None:
    net, make = SCENARIOS[scenario]
    inputs = make(TASK.inputs())
    size = len(inputs["input_ids"])
    report = af.audit(af.wrap(net, attention="attn", embeddings="embed"), inputs, checks=[check], **FAST)
    result = report.checks[check]
    assert result.per_instance.shape == (size,)
    real = inputs["attention_mask"].bool() & ~inputs.get("special_tokens_mask", torch.zeros_like(inputs["input_ids"])).bool()
    too_short = (real.sum(dim=1) < 2).numpy()
    assert np.isnan(result.per_instance[too_short]).all()
    assert result.undefined >= int(too_short.sum())
    assert result.to_dict()["undefined"] == result.undefined
    defined = int((~np.isnan(result.per_instance)).sum())
    if defined == 0:
        assert math.isnan(result.statistic) and result.verdict == "inconclusive"
        assert result.note.startswith("undefined on every instance")
    if defined <= 1:
        assert result.verdict == "inconclusive" and result.reason()
    if scenario == "no gradient path" and check == "gradient":
        assert defined == 0 and "the output depends on no single token" in result.note
    assert report.verdicts[_question(check)] in ("yes", "no", "inconclusive")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_assertion_explains_instead_of_crashing(scenario: str) -> None:
    net, make = SCENARIOS[scenario]
    model = af.wrap(net, attention="attn", embeddings="embed")
    with pytest.raises(af.AttentionNotFaithful) as raised:
        af.assert_attention_faithful(model, make(TASK.inputs()), **FAST)
    message = str(raised.value)
    assert "answered" in message and ("inconclusive" in message or "no" in message)


def test_rows_of_padding_only_are_not_run_on_an_empty_attention() -> None:
    """The zoo's softmax over no unmasked position would be NaN: such rows see their first position and have no
    real token, so their values are NaN and the other rows' are unchanged."""
    inputs = padding_but_one(TASK.inputs())
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    report = af.audit(model, inputs, checks=["uniform", "loo"])
    alone = af.audit(model, single(TASK.inputs()), checks=["uniform", "loo"])
    for name in ("uniform", "loo"):
        assert report.checks[name].per_instance[0] == pytest.approx(alone.checks[name].per_instance[0], abs=1e-9)
        assert np.isnan(report.checks[name].per_instance[1:]).all()
    assert report.instances["predicted"][1:] == [None] * (len(inputs["input_ids"]) - 1)


def _question(check: str) -> str:
    return next(question for question, checks in af.QUESTIONS.items() if check in checks)
