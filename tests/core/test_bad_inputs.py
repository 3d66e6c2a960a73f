"""Bad input raises AttnFaithError (a ValueError) naming the problem and the expectation, before heavy work."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task

IDS = sentiment_task(4, seed=1).input_ids
MASK = sentiment_task(4, seed=1).attention_mask


def zoo() -> af.AttentionModel:
    return af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")


BAD_INPUTS = {
    "not a mapping": (IDS, "expected a mapping"),
    "no input_ids": ({"attention_mask": MASK}, "no 'input_ids'"),
    "float input_ids": ({"input_ids": IDS.float()}, "expected integer token ids"),
    "1-D input_ids": ({"input_ids": IDS[0]}, r"expected \(B, T\)"),
    "empty batch": ({"input_ids": IDS[:0]}, "is empty"),
    "mask shape mismatch": ({"input_ids": IDS, "attention_mask": MASK[:, :-1]}, "expected .* the shape of input_ids"),
    "mask not 0/1": ({"input_ids": IDS, "attention_mask": MASK * 2}, "values other than 0 and 1"),
    "special mask shape": ({"input_ids": IDS, "special_tokens_mask": MASK[:2]}, "special_tokens_mask"),
    "extra key wrong rows": ({"input_ids": IDS, "labels": torch.zeros(3)}, "one per instance"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_are_named_with_what_was_expected(case: str) -> None:
    inputs, message = BAD_INPUTS[case]
    with pytest.raises(af.AttnFaithError, match=message):
        af.audit(zoo(), inputs)


BAD_OPTIONS = {
    "unknown check": ({"checks": ["gradient", "attention"]}, "unknown check 'attention'"),
    "no check": ({"checks": []}, "selects no check"),
    "unknown option": ({"epsilion": 0.1}, "did you mean 'epsilon'"),
    "epsilon above 1": ({"epsilon": 1.5}, r"epsilon=1.5 is not valid: expected a number in \(0, 1\]"),
    "zero permutations": ({"permutations": 0}, "permutations=0 is not valid: expected an integer >= 1"),
    "delta above ln 2": ({"delta": 0.9}, "delta=0.9"),
    "boolean seed": ({"seed": True}, "seed=True"),
    "unknown question": ({"require": ["used", "honest"]}, "unknown question 'honest'"),
    "bad method": ({"adversarial_method": "magic"}, "adversarial_method='magic'"),
    "one target": ({"targets": [3]}, r"targets=\[3\] is not valid: expected a sequence of at least two distinct"),
    "targets mixed": ({"targets": [3, "good"]}, "targets="),
    "a word as targets": ({"targets": "good"}, "targets='good'"),
    "bad sink": ({"sink": "drop"}, "sink='drop' is not valid: expected 'auto' or 'keep' or 'exclude'"),
    "bad replace": ({"replace": "all"}, "replace='all' is not valid: expected 'head' or 'layer'"),
}


def test_targets_from_ini_text_keep_quoted_spaces() -> None:
    from pytest_attnfaith.options import parse_option_text

    assert parse_option_text("targets", '" negative", " positive"') == (" negative", " positive")
    assert parse_option_text("targets", "3524, 2731") == (3524, 2731)
    assert parse_option_text("query", "all") == "all"


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_name_the_option_value_and_expectation(case: str) -> None:
    options, message = BAD_OPTIONS[case]
    with pytest.raises(af.AttnFaithError, match=message):
        af.audit(zoo(), {"input_ids": IDS, "attention_mask": MASK}, **options)


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "mps", "tpu:0"])
def test_a_device_this_machine_lacks_is_named_with_the_available_ones(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    model = zoo()
    with pytest.raises(af.AttnFaithError, match=rf"device='{device}' is (not available on this machine|not a device).*"):
        af.audit(model, {"input_ids": IDS, "attention_mask": MASK}, device=device)
    assert next(model.module.parameters()).device.type == "cpu"


def test_wrong_module_path_suggests_the_closest_paths() -> None:
    with pytest.raises(af.AttnFaithError, match="did you mean 'attn'"):
        af.wrap(ZooModel("faithful"), attention="atn", embeddings="embed")


def test_plain_module_without_wrap_is_told_how_to_wrap() -> None:
    with pytest.raises(af.AttnFaithError, match=r"af\.wrap"):
        af.audit(ZooModel("faithful"), {"input_ids": IDS})


class NeverAttends(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(40, 4)
        self.attn = nn.Softmax(dim=-1)
        self.head = nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.embed(input_ids).mean(1))


def test_attention_module_that_is_never_called_is_an_error() -> None:
    with pytest.raises(af.AttentionUnavailableError, match="never computed"):
        af.audit(af.wrap(NeverAttends(), attention="attn", embeddings="embed"), {"input_ids": IDS})


class NotADistribution(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(40, 4)
        self.attn = nn.Sigmoid()
        self.head = nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask=None):
        e = self.embed(input_ids)
        weights = self.attn(e.sum(-1))
        return self.head((weights.unsqueeze(-1) * e).sum(1))


def test_attention_that_is_not_a_distribution_over_unmasked_positions_is_an_error() -> None:
    with pytest.raises(af.AttnFaithError, match="not a distribution over the unmasked positions"):
        af.audit(af.wrap(NotADistribution(), attention="attn", embeddings="embed", intercept="output"), {"input_ids": IDS})


class PadAttending(ZooModel):
    def forward(self, input_ids, attention_mask=None):
        return super().forward(input_ids, None)


def test_attention_on_padded_positions_is_an_error() -> None:
    with pytest.raises(af.AttnFaithError, match="masked positions"):
        model = af.wrap(PadAttending("faithful"), attention="attn", embeddings="embed")
        af.audit(model, {"input_ids": IDS, "attention_mask": MASK})


class NanOutput(ZooModel):
    def forward(self, input_ids, attention_mask=None):
        return super().forward(input_ids, attention_mask) * float("nan")


def test_nan_outputs_are_an_error() -> None:
    with pytest.raises(af.AttnFaithError, match="NaN or inf"):
        af.audit(af.wrap(NanOutput("faithful"), attention="attn", embeddings="embed"), {"input_ids": IDS, "attention_mask": MASK})


def test_one_real_token_gives_nan_values_that_are_counted_not_a_crash() -> None:
    ids = IDS.clone()
    mask = MASK.clone()
    mask[0] = 0
    mask[0, 0] = 1
    report = af.audit(zoo(), {"input_ids": ids, "attention_mask": mask}, permutations=10, adversarial_steps=20)
    for result in report.checks.values():
        assert result.undefined >= 1, result.name
        assert result.to_dict()["per_instance"][0] is None
        assert result.statistic == result.statistic  # the mean is not NaN


class LinearAttention(nn.Module):
    """The path names a Linear inside the attention block (its value projection), not the distribution."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(40, 4)
        self.pool = nn.Module()
        self.pool.attn = nn.Module()
        self.pool.attn.v = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask=None):
        values = self.pool.attn.v(self.embed(input_ids))
        weights = torch.softmax(values.sum(-1), dim=-1)
        return self.head((weights.unsqueeze(-1) * values).sum(1))


def test_a_module_that_runs_but_is_not_a_distribution_is_reported_with_what_it_returned() -> None:
    with pytest.raises(af.AttentionUnavailableError) as raised:
        af.audit(af.wrap(LinearAttention(), attention="pool.attn.v", embeddings="embed"), {"input_ids": IDS})
    message = str(raised.value)
    assert message.startswith("attention='pool.attn.v' is not an attention distribution: the module ran and returned ")
    assert f"a 3-D torch.float32 tensor of shape (B, {IDS.shape[1]}, 4), and computed no softmax inside" in message
    assert "never computed" not in message and "non-negative rows summing to 1" in message


def test_an_input_key_the_forward_does_not_take_is_named_before_any_pass() -> None:
    inputs = {"input_ids": IDS, "attention_mask": torch.ones_like(IDS), "token_type_ids": torch.zeros_like(IDS)}
    with pytest.raises(af.AttnFaithError) as raised:
        af.audit(af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed"), inputs)
    message = str(raised.value)
    assert message.startswith("input 'token_type_ids' is not a parameter of ZooModel.forward, whose parameters are ")
    assert "input_ids, attention_mask" in message and "return_token_type_ids=False" in message
