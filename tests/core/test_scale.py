"""Verdicts that hold on well-trained models: the margin scale, the resolution, identical inputs, padding, the RNG,
exact bins and the binary-logit convention (DESIGN.md, Round 3)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import pytest_attnfaith as af
from pytest_attnfaith.checks._eraser import bin_sizes
from pytest_attnfaith.metrics import output_distribution
from pytest_attnfaith.report.html import render_html
from pytest_attnfaith.report.schema import session_document
from pytest_attnfaith.report.terminal import summary_lines
from pytest_attnfaith.zoo import VOCAB, AttentionOnlyClassifier, MaskedSoftmax, Tempered, ZooModel, train_saturated
from tests.core.conftest import FAST

TEMPERATURES = (0.1, 1.0, 10.0, 100.0)
USED = ("permutation", "uniform", "erasure")


@pytest.fixture(scope="module")
def saturated() -> AttentionOnlyClassifier:
    return train_saturated()


def _sweep(net: nn.Module, inputs: dict[str, Tensor]) -> list[af.Report]:
    return [
        af.audit(af.wrap(Tempered(net, t), attention="net.attn", embeddings="net.embed"), inputs, **FAST) for t in TEMPERATURES
    ]


def _assert_invariant(reports: list[af.Report]) -> None:
    first = reports[0]
    for report in reports[1:]:
        assert report.verdicts == first.verdicts
        for name in USED:
            assert report.checks[name].statistic == first.checks[name].statistic, name
            np.testing.assert_allclose(report.checks[name].per_instance, first.checks[name].per_instance, atol=1e-5)


@pytest.mark.parametrize("kind", ["faithful", "unused", "misleading"])
def test_zoo_verdicts_and_used_statistics_do_not_depend_on_the_logits_temperature(kind: str, inputs) -> None:
    reports = _sweep(ZooModel(kind), inputs)
    _assert_invariant(reports)
    assert reports[0].model["scale"] == "margin"


def test_a_saturated_attention_only_classifier_is_used_at_every_temperature(saturated: AttentionOnlyClassifier, inputs) -> None:
    with torch.no_grad():
        hot = torch.sigmoid(100.0 * saturated(inputs["input_ids"], inputs["attention_mask"]))
    assert bool(((hot == 1.0) | (hot == 0.0)).any())  # float32 σ has saturated to exactly 0 or 1
    reports = _sweep(saturated, inputs)
    _assert_invariant(reports)
    assert reports[0].verdicts["used"] == "yes"


def test_probability_scale_loses_the_saturated_classifier_where_the_margin_does_not(
    saturated: AttentionOnlyClassifier, inputs
) -> None:
    model = af.wrap(Tempered(saturated, 100.0), attention="net.attn", embeddings="net.embed")
    probability = af.audit(model, inputs, checks=USED, scale="probability", **FAST)
    margin = af.audit(model, inputs, checks=USED, **FAST)
    assert probability.verdicts["used"] != "yes" and margin.verdicts["used"] == "yes"


class NoToken(nn.Module):
    """Attention over identical values: the output is the same whatever the tokens (up to rounding)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 4)
        self.score = nn.Linear(4, 1)
        self.attn = MaskedSoftmax()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        alpha = self.attn(self.score(self.embed(input_ids)).squeeze(-1), attention_mask)
        z = 3.0 * (alpha * torch.full_like(alpha, 0.7)).sum(dim=1)
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_an_output_that_depends_on_no_token_has_undefined_agreement(inputs) -> None:
    report = af.audit(af.wrap(NoToken(), attention="attn", embeddings="embed"), inputs, checks=["gradient", "loo"])
    size = len(inputs["input_ids"])
    for name in ("gradient", "loo"):
        result = report.checks[name]
        assert np.isnan(result.per_instance).all(), name
        assert result.details["no_single_token"] == size
        assert "the output depends on no single token" in result.note
    assert report.verdicts["agrees"] == "inconclusive"


def test_identical_counterfactual_inputs_share_their_output_whatever_else_runs() -> None:
    """Deleting either word of "terrible terrible" is one input: its leave-one-out importances are equal, and τ is the
    same whether or not other checks ran."""
    net = ZooModel("faithful")
    ids = torch.tensor([[20, 6, 6, 21, 22, 23, 24, 25], [20, 2, 21, 22, 23, 24, 0, 0]])
    inputs = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    model = af.wrap(net, attention="attn", embeddings="embed")
    alone = af.audit(model, inputs, checks=["loo"])
    among = af.audit(model, inputs, checks=["permutation", "uniform", "gradient", "loo"], **FAST)
    importance = alone.checks["loo"].details["importance"][0]
    assert importance[1] == importance[2]
    np.testing.assert_array_equal(alone.checks["loo"].per_instance, among.checks["loo"].per_instance)


class UnpackedLSTM(nn.Module):
    """An LSTM run over the padding (no packing): its last state depends on how long the batch is padded."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 8, padding_idx=0)
        self.encoder = nn.LSTM(8, 8, batch_first=True)
        self.score = nn.Linear(8, 1)
        self.attn = MaskedSoftmax()
        self.head = nn.Linear(16, 2)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        states, (last, _) = self.encoder(self.embed(input_ids))
        alpha = self.attn(self.score(states).squeeze(-1), attention_mask)
        return self.head(torch.cat([(alpha.unsqueeze(-1) * states).sum(dim=1), last[0]], dim=1))


def test_padding_sensitivity_is_reported_for_an_unpacked_lstm_and_not_for_a_masked_model(inputs) -> None:
    with pytest.warns(af.ModelWarning, match="mask the padding in the model, or pack"):
        report = af.audit(af.wrap(UnpackedLSTM(), attention="attn", embeddings="embed"), inputs, checks=["uniform"])
    assert report.model["padding_sensitive"] is True
    assert any("padding" in warning for warning in report.model["warnings"])
    masked = af.audit(af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed"), inputs, checks=["uniform"])
    assert masked.model["padding_sensitive"] is False


@pytest.mark.parametrize(("q", "n", "k"), [(0.28, 25, 7), (0.1, 30, 3), (0.2, 15, 3), (0.5, 3, 2), (0.01, 7, 1)])
def test_eraser_bins_remove_exactly_the_ceiling_of_q_n(q: float, n: int, k: int) -> None:
    assert int(bin_sizes((q,), torch.tensor([n]))[0, 0]) == k


class Noisy(nn.Module):
    """Dropout applied in the forward whatever the mode: a random forward."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = ZooModel("faithful")
        self.embed, self.attn = self.inner.embed, self.inner.attn

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return nn.functional.dropout(self.inner(input_ids, attention_mask), p=0.2, training=True)


def test_a_random_forward_gives_the_same_report_for_the_same_seed_and_a_warning(inputs) -> None:
    model = af.wrap(Noisy(), attention="attn", embeddings="embed")
    with pytest.warns(af.ModelWarning, match="two identical forward passes"):
        first = af.audit(model, inputs, checks=["uniform", "loo"], seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = af.audit(model, inputs, checks=["uniform", "loo"], seed=4)
    assert first.model["repeatable"] is False
    for name in ("uniform", "loo"):
        np.testing.assert_array_equal(first.checks[name].per_instance, second.checks[name].per_instance)


def test_one_binary_logit_is_class_one_with_probability_sigmoid() -> None:
    p = output_distribution(torch.tensor([2.0]))
    assert float(p[0, 1]) == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_a_wrapped_single_logit_model_says_so_in_the_report(inputs) -> None:
    report = af.audit(af.wrap(AttentionOnlyClassifier(), attention="attn", embeddings="embed"), inputs, checks=["uniform"])
    assert report.model["output"]["class_1"] == "sigmoid(z)"


def test_require_naming_a_question_no_selected_check_answers_is_refused_before_any_work() -> None:
    with pytest.raises(af.AttnFaithError, match="no selected check answers it"):
        af.audit(object(), {}, checks=["gradient"], require=("used",))


def test_padded_ids_without_a_mask_warn_when_the_pad_id_is_known() -> None:
    words = ["<pad>", *(f"w{i}" for i in range(1, VOCAB))]
    ids = torch.tensor([[20, 2, 21, 22, 0, 0], [20, 6, 21, 22, 23, 24]])
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed", vocabulary=words)
    with pytest.warns(af.ModelWarning, match="no attention_mask"):
        af.audit(model, {"input_ids": ids}, checks=["uniform"])


def test_permutation_says_it_judged_every_instance_when_none_is_peaked(inputs) -> None:
    model = af.wrap(ZooModel("unused"), attention="attn", embeddings="embed")
    with pytest.raises(af.AttentionNotFaithful, match="judged every instance: none peaked") as raised:
        af.assert_attention_faithful(model, inputs, checks=["permutation"], peak=1.0, **FAST)
    report = raised.value.report
    assert report.checks["permutation"].details["judged_all_instances"]
    tests = {"test_x": [report.to_dict()]}
    terminal = "\n".join(text for text, _ in summary_lines(tests))
    assert "judged every instance: none peaked" in terminal
    assert "judged every instance: none peaked" in render_html(session_document(tests))
