"""The per-head atlas and the passes behind it: every (layer, head) edited alone, equal to an independent
implementation through transformers' eager attention; shortcuts equal to full passes; FDR-controlled verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

import pytest_attnfaith as af
from pytest_attnfaith import head_atlas
from pytest_attnfaith.explainers import gradient_x_input, leave_one_out
from pytest_attnfaith.results import CheckResult
from tests.huggingface.conftest import token_batch
from tests.huggingface.eager_reference import edited_logits, tvd, uniform_over

TARGETS = [7, 11]
MODELS = ("llama", "gpt2", "qwen2", "bert", "distilbert")
EVERY_CHECK = ("gradient", "loo", "permutation", "uniform", "erasure", "adversarial")
FAST = {"permutations": 8, "adversarial_steps": 20, "adversarial_method": "search"}


def options_for(name: str) -> dict[str, object]:
    return {"targets": TARGETS} if name in ("llama", "gpt2", "qwen2") else {}


def reference_uniform(model, inputs, report, layer: int, head: int | None) -> np.ndarray:
    """Per instance, TVD of the output when head ``head`` (None: every head) of ``layer`` reads uniform over the real
    tokens at the query row, computed by the full model under transformers' eager attention."""
    mask = inputs["attention_mask"]
    real = mask.bool().clone()
    if report.model["sink"]["excluded"]:
        real[torch.arange(len(real)), mask.int().argmax(dim=1)] = False
    decoder = report.model["query"] == "last real token"
    query = None if decoder else torch.zeros(len(real), dtype=torch.long)
    heads = None if head is None else torch.full((len(real),), head)
    columns = TARGETS if decoder else slice(None)
    clean = torch.softmax(edited_logits(model, inputs)[:, columns], dim=1)
    edited = torch.softmax(edited_logits(model, inputs, layer, uniform_over(real), query, heads)[:, columns], dim=1)
    return tvd(edited, clean).numpy()


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("name", MODELS)
def test_every_atlas_row_of_uniform_equals_the_eager_reference(tiny, name, side):
    inputs = token_batch(side=side)
    report = af.audit(tiny[name], inputs, checks=["uniform"], per_head=True, **options_for(name))
    cells = {(layer, head) for layer in (0, 1) for head in (0, 1, 2, 3, "all")}
    assert {(row["layer"], row["head"]) for row in report.per_head} == cells
    for row in report.per_head:
        head = None if row["head"] == "all" else row["head"]
        expected = reference_uniform(tiny[name], inputs, report, row["layer"], head)
        assert np.allclose(row["per_instance"], expected, atol=1e-6), (row["layer"], row["head"])
    shortcut = "one-token passes" if name in ("llama", "gpt2", "qwen2") else "cached hidden states"
    assert shortcut in report.model["forward"]


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_the_atlas_through_its_shortcuts_equals_the_atlas_in_full_passes(tiny, batch, name):
    """Every check, every row: the one-token passes (decoders) and the shared edited layer (encoders) change nothing."""
    fast = af.audit(af.huggingface(tiny[name]), batch, checks=EVERY_CHECK, per_head=True, **FAST, **options_for(name))
    full = af.audit(
        af.huggingface(tiny[name], shortcuts=False), batch, checks=EVERY_CHECK, per_head=True, **FAST, **options_for(name)
    )
    assert full.model["forward"] == "full"
    for a, b in zip(fast.per_head, full.per_head, strict=True):
        assert (a["layer"], a["head"], a["check"]) == (b["layer"], b["head"], b["check"])
        assert np.allclose(a["per_instance"], b["per_instance"], atol=1e-5, equal_nan=True), (a["layer"], a["head"], a["check"])


@pytest.mark.parametrize("name", ["qwen2", "bert"])
def test_a_single_head_audit_edits_that_head_alone_unless_replace_is_layer(tiny, batch, name):
    alone = af.audit(tiny[name], batch, checks=["uniform"], layer=0, head=2, **options_for(name))
    layer = af.audit(tiny[name], batch, checks=["uniform"], layer=0, head=2, replace="layer", **options_for(name))
    assert np.allclose(alone.checks["uniform"].per_instance, reference_uniform(tiny[name], batch, alone, 0, 2), atol=1e-6)
    assert np.allclose(layer.checks["uniform"].per_instance, reference_uniform(tiny[name], batch, layer, 0, None), atol=1e-6)
    assert alone.model["replaced"] == "layer 0: the query row of head 2 alone"
    assert layer.model["replaced"] == "layer 0: the query row of every head"


def test_verdicts_are_controlled_for_false_discoveries_across_heads(tiny):
    report = af.audit(
        tiny["gpt2"], token_batch(size=24), checks=["uniform", "gradient"], per_head=True, epsilon=0.002, targets=TARGETS
    )
    level = (1 - report.options["confidence"]) / 2
    for check in ("uniform", "gradient"):
        for heads in ([0, 1, 2, 3], ["all"]):
            rows = [row for row in report.per_head if row["check"] == check and row["head"] in heads]
            for side in ("pass", "fail"):
                p = np.nan_to_num(np.array([row[f"p_{side}"] for row in rows], dtype=float), nan=1.0)
                assert np.allclose([row[f"q_{side}"] for row in rows], scipy.stats.false_discovery_control(p))
            for row in rows:
                expected = "passed" if row["q_pass"] <= level else "failed" if row["q_fail"] <= level else "inconclusive"
                assert row["verdict"] == expected and row["passed"] == (expected == "passed")
            assert sorted(row["rank"] for row in rows) == list(range(1, len(rows) + 1))
    fraction = next(row for row in report.per_head if row["check"] == "uniform")
    flagged = round(fraction["statistic"] * fraction["instances"])
    assert fraction["p_pass"] == pytest.approx(
        scipy.stats.binomtest(flagged, fraction["instances"], 0.5, alternative="less").pvalue
    )


def test_a_single_head_verdict_is_the_interval_verdict_for_a_fraction():
    """With one test the rule reads the Clopper–Pearson interval: q = p, and p ≤ α/2 exactly when the interval clears."""
    for flagged in range(0, 25):
        estimate = af.metrics.fraction_interval(flagged, 24, 0.95)
        verdict = af.metrics.decide(estimate, 0.5, higher_is_better=False)
        result = CheckResult(
            "uniform",
            estimate.statistic,
            0.5,
            estimate.interval,
            verdict,
            np.zeros(24),
            np.arange(24) < flagged,
            False,
            "",
            "",
            details={"eligible": 24},
        )
        row = {"p_pass": head_atlas._p_value(result, True), "p_fail": head_atlas._p_value(result, False)}
        head_atlas._control_false_discoveries([row], 0.95)
        assert row["verdict"] == verdict, flagged


def test_importances_that_do_not_depend_on_the_head_are_computed_once(tiny, batch, monkeypatch):
    calls = {"gradient": 0, "loo": 0}

    def counting(key, original):
        def importance(context):
            calls[key] += 1
            return original(context)

        return importance

    # The explainers remember their importance per context; count the computations behind that memo.
    monkeypatch.setattr(gradient_x_input, "_importance", counting("gradient", gradient_x_input._importance))
    monkeypatch.setattr(leave_one_out, "_importance", counting("loo", leave_one_out._importance))
    report = af.audit(tiny["llama"], batch, checks=["gradient", "loo"], per_head=True)
    assert calls == {"gradient": 2, "loo": 1}  # one per layer (layer 1's is the audit's own), one per audit
    assert len(report.per_head) == 2 * 5 * 2


def test_a_one_token_shortcut_that_disagrees_with_the_full_pass_is_dropped(tiny, batch):
    adapter = af.huggingface(tiny["llama"])
    original = adapter._clean_pass

    def corrupted(kwargs):
        output, entries = original(kwargs)
        if entries is not None:
            entries["hidden1"] = entries["hidden1"] + 1.0  # a wrong cached state: the shortcut no longer reproduces the model
        return output, entries

    adapter._clean_pass = corrupted
    report = af.audit(adapter, batch, checks=["uniform"], targets=TARGETS)
    assert report.model["forward"].startswith("full at layer 1, where the one-token shortcut disagreed with the full pass; ")
    assert "on cached hidden states" in report.model["forward"]  # the next shortcut, checked on its own
    assert np.allclose(report.checks["uniform"].per_instance, reference_uniform(tiny["llama"], batch, report, 1, None), atol=1e-6)
