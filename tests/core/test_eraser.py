"""ERASER's comprehensiveness and sufficiency: the definitions against a plain per-instance, per-bin loop, the
verdict against random orderings, and the zoo's known truth.

The reference loop below runs one instance and one bin at a time, calls the model directly, ranks tokens with
``sorted`` (ties: earlier position first) and removes them by indexing (deletion) or by assigning the mask id.
"""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.zoo import BiLSTMClassifier, ZooModel, sentiment_task
from tests.core.conftest import wrapped

BINS = (0.01, 0.05, 0.1, 0.2, 0.5)
MASK_ID = 0


def probs_of(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.reshape(logits.shape[0], -1).double()
    if logits.shape[1] == 1:
        s = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - s, s], 1)
    return torch.softmax(logits, 1)


def eraser_reference(net: nn.Module, inputs: dict, scores: np.ndarray, removal: str) -> dict[str, list[float]]:
    """Comprehensiveness and sufficiency per instance, one instance and one bin at a time."""
    out: dict[str, list[float]] = {"comprehensiveness": [], "sufficiency": []}
    special = inputs.get("special_tokens_mask", torch.zeros_like(inputs["input_ids"]))
    for row in range(inputs["input_ids"].shape[0]):
        ids, mask = inputs["input_ids"][row], inputs["attention_mask"][row]
        real = [t for t in range(len(ids)) if mask[t] == 1 and special[row, t] == 0]
        if len(real) < 2:
            out["comprehensiveness"].append(math.nan)
            out["sufficiency"].append(math.nan)
            continue

        def p_without(drop: set[int], ids=ids, mask=mask) -> torch.Tensor:
            if removal == "delete":
                keep = [t for t in range(len(ids)) if t not in drop]
                return probs_of(net(ids[keep][None], mask[keep][None]))[0]
            edited = ids.clone()
            edited[sorted(drop)] = MASK_ID
            return probs_of(net(edited[None], mask[None]))[0]

        with torch.no_grad():
            p = p_without(set())
            label = int(p.argmax())
            order = sorted(real, key=lambda t, row=row: (-scores[row, t], t))
            comprehensive, sufficient = [], []
            for q in BINS:
                top = set(order[: math.ceil(q * len(real))])
                comprehensive.append(float(p[label] - p_without(top)[label]))
                sufficient.append(float(p[label] - p_without(set(real) - top)[label]))
        out["comprehensiveness"].append(float(np.mean(comprehensive)))
        out["sufficiency"].append(float(np.mean(sufficient)))
    return out


def with_special_tokens(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The first position of every row special; row 1 with one real token; row 2 padding only."""
    ids, mask = inputs["input_ids"].clone(), inputs["attention_mask"].clone()
    special = torch.zeros_like(ids)
    special[:, 0] = 1
    mask[1, 2:], ids[1, 2:] = 0, 0
    mask[2], ids[2] = 0, 0
    return {"input_ids": ids, "attention_mask": mask, "special_tokens_mask": special}


def tied_scores(inputs: dict[str, torch.Tensor]):
    """A user explainer with many exact ties (scores in 0..2), so that the order among equals decides."""
    generator = torch.Generator().manual_seed(5)
    fixed = torch.randint(0, 3, inputs["input_ids"].shape, generator=generator).double()

    def ties(given: dict[str, torch.Tensor]) -> torch.Tensor:
        return fixed

    return ties, fixed.numpy()


@pytest.mark.parametrize("removal", ["delete", "mask"])
@pytest.mark.parametrize("kind", ["misleading", "bilstm"])
def test_per_instance_values_equal_a_plain_loop_to_1e6_with_special_tokens_and_padding(kind, removal, trained_bilstms) -> None:
    """Both removal operators, special tokens kept, padded rows, one row with one real token and one of padding
    only; the misleading model reads positions / T, so a deleted row must be exactly T − r long."""
    net = copy.deepcopy(trained_bilstms["diverse"] if kind == "bilstm" else ZooModel("misleading")).double()
    inputs = with_special_tokens(sentiment_task(20, seed=3).inputs())
    explainer, scores = tied_scores(inputs)
    model = af.wrap(net, attention="attn", embeddings="embed")
    report = af.audit_explanation(model, inputs, explainer, removal=removal, mask_token_id=MASK_ID, scale="probability")
    expected = eraser_reference(net, inputs, scores, removal)
    for name in ("comprehensiveness", "sufficiency"):
        got = report.checks[name].per_instance
        assert np.allclose(got, expected[name], atol=1e-6, equal_nan=True), name
        assert np.isnan(got[[1, 2]]).all() and report.checks[name].undefined == 2


def test_a_float32_model_matches_the_loop_to_1e4_on_the_attention_it_reads() -> None:
    net = ZooModel("faithful")
    inputs = sentiment_task(24, seed=4).inputs()
    report = af.audit_explanation(wrapped("faithful"), inputs, "attention", scale="probability")
    attention = np.zeros(inputs["input_ids"].shape)
    for row, values in enumerate(report.instances["attention"]):
        attention[row, : len(values)] = values
    expected = eraser_reference(net, inputs, attention, "delete")
    for name in ("comprehensiveness", "sufficiency"):
        assert np.allclose(report.checks[name].per_instance, expected[name], atol=1e-4), name


def test_the_verdict_is_the_gain_over_the_same_random_orderings_for_every_explainer(inputs) -> None:
    comparison = af.compare_explanations(wrapped("misleading"), inputs, ["attention", "leave_one_out"])
    first, second = (comparison.reports[name].checks["comprehensiveness"] for name in ("attention", "leave_one_out"))
    baseline = first.details["random"]["per_instance"]
    assert np.array_equal(baseline, second.details["random"]["per_instance"])
    assert np.allclose(first.details["gain"], first.per_instance - baseline)
    assert first.statistic == pytest.approx(np.nanmean(first.details["gain"]))
    sufficiency = comparison.reports["attention"].checks["sufficiency"]
    assert np.allclose(sufficiency.details["gain"], sufficiency.details["random"]["per_instance"] - sufficiency.per_instance)
    curve = first.details["curve"]
    assert curve["fraction"] == [0.0, *BINS]
    assert all(low <= high for low, high in zip(curve["random_low"], curve["random_high"], strict=True))


def test_same_seed_same_report_and_batch_size_does_not_change_it(inputs) -> None:
    one = af.audit_explanation(wrapped("misleading"), inputs, "attention", seed=4)
    two = af.audit_explanation(wrapped("misleading"), inputs, "attention", seed=4, batch_size=7)
    other = af.audit_explanation(wrapped("misleading"), inputs, "attention", seed=5)
    for name in ("comprehensiveness", "sufficiency"):
        assert np.allclose(one.checks[name].details["gain"], two.checks[name].details["gain"], atol=1e-9)
        assert one.checks[name].interval == two.checks[name].interval
        assert not np.allclose(one.checks[name].details["gain"], other.checks[name].details["gain"])


def test_the_faithful_models_attention_passes_comprehensiveness_and_sufficiency(inputs) -> None:
    report = af.assert_explanation_faithful(wrapped("faithful"), inputs, "attention")
    assert report.kind == "explanation" and report.explainer == "attention"
    assert report.checks["comprehensiveness"].verdict == "passed"
    assert report.verdicts == {"comprehensive": "yes", "sufficient": "yes", "agrees": "not tested"}


def test_on_the_misleading_model_attention_ranks_below_leave_one_out_and_integrated_gradients(inputs) -> None:
    model = wrapped("misleading")
    comparison = af.compare_explanations(model, inputs, ["attention", "leave_one_out", "integrated_gradients"])
    ranking = comparison.ranking
    assert ranking.index("attention") > ranking.index("leave_one_out")
    assert ranking.index("attention") > ranking.index("integrated_gradients")
    assert comparison.passing == ranking[:2]
    with pytest.raises(af.ExplanationNotFaithful) as raised:
        af.assert_explanation_faithful(model, inputs, explainer="attention")
    message = str(raised.value)
    assert "explanation 'attention' is not faithful" in message and "comprehensiveness" in message
    assert "worst instances (tokens, attention, importance)" in message
    assert not raised.value.report.passed
    assert pickle.loads(pickle.dumps(raised.value)).report.explainer == "attention"


def scrambled(attention: np.ndarray, mask: torch.Tensor, seed: int):
    """A user explainer: the attention read, each row's real weights permuted at random (seeded)."""
    generator = np.random.default_rng(seed)
    scores = attention.copy()
    for row, real in zip(scores, mask.bool().numpy(), strict=True):
        row[real] = generator.permutation(row[real])

    def scramble(given: dict[str, torch.Tensor]) -> np.ndarray:
        return scores

    return scramble


@pytest.mark.parametrize("kind", ["faithful", "misleading", "trained"])
def test_a_scrambled_explainer_never_passes(kind, inputs, trained_bilstms) -> None:
    net = trained_bilstms["vanilla"] if kind == "trained" else ZooModel(kind)
    model = af.wrap(net, attention="attn", embeddings="embed")
    attention = af.explain(model, inputs, "attention")
    for seed in range(4):
        explainer = scrambled(attention, inputs["attention_mask"], seed)
        report = af.audit_explanation(model, inputs, explainer, seed=seed)
        assert report.explainer == "scramble"
        for name in ("comprehensiveness", "sufficiency"):
            assert report.checks[name].verdict != "passed", (kind, seed, name, report.checks[name].describe())


@pytest.mark.parametrize("removal", ["delete", "mask"])
def test_degenerate_inputs_give_nan_counted_never_a_crash(removal) -> None:
    """Rows with one real token, a batch of padding only but one row, and a single instance."""
    model = wrapped("faithful")
    one_token = {"input_ids": torch.tensor([[3, 0, 0], [5, 0, 0]]), "attention_mask": torch.tensor([[1, 0, 0], [1, 0, 0]])}
    padding = {"input_ids": torch.tensor([[3, 20, 21], [0, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [0, 0, 0]])}
    single = {"input_ids": torch.tensor([[3, 20, 21, 22]]), "attention_mask": torch.tensor([[1, 1, 1, 1]])}
    for inputs, undefined in ((one_token, 2), (padding, 1), (single, 0)):
        report = af.audit_explanation(model, inputs, "attention", removal=removal, mask_token_id=MASK_ID)
        for name in ("comprehensiveness", "sufficiency"):
            result = report.checks[name]
            assert result.undefined == undefined
            assert result.verdict == "inconclusive" and result.note
        assert not report.passed


def test_bins_removal_and_margins_are_options(inputs) -> None:
    report = af.audit_explanation(
        wrapped("faithful"),
        inputs,
        "attention",
        aopc_bins=(0.5, 0.1),
        removal="mask",
        mask_token_id=MASK_ID,
        random_orderings=3,
        comprehensiveness_threshold=0.9,
    )
    result = report.checks["comprehensiveness"]
    assert result.details["bins"] == [0.1, 0.5] and result.details["removal"] == "mask"
    assert result.details["random_orderings"] == 3 and result.threshold == 0.9
    assert result.verdict == "failed"
    with pytest.raises(af.AttnFaithError, match="aopc_bins"):
        af.audit_explanation(wrapped("faithful"), inputs, "attention", aopc_bins=(0.0, 0.5))
    with pytest.raises(af.AttnFaithError, match="mask_token_id"):
        af.audit_explanation(wrapped("faithful"), inputs, "attention", removal="mask")


def test_an_attention_audit_can_run_the_eraser_checks_on_its_attention(inputs) -> None:
    report = af.audit(wrapped("faithful"), inputs, checks=["comprehensiveness", "permutation"])
    assert report.kind == "attention" and report.checks["comprehensiveness"].verdict == "passed"
    assert set(report.verdicts) == {"used", "agrees", "unique"}


def test_bilstm_with_length_sixteen_inputs_runs_every_bin_in_one_group_per_length(trained_bilstms) -> None:
    net: BiLSTMClassifier = trained_bilstms["vanilla"]
    inputs = sentiment_task(30, seed=11, length=16).inputs()
    report = af.audit_explanation(af.wrap(net, attention="attn", embeddings="embed"), inputs, "leave_one_out")
    assert report.checks["comprehensiveness"].undefined == 0
    assert np.isfinite(report.checks["sufficiency"].per_instance).all()
