"""The explanation API: what a report of an explanation says, the comparison and its ranking, the options that
belong to it, and the attention assertion that names the explainers that pass."""

from __future__ import annotations

import json

import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.results import rank_explanations
from tests.core.conftest import wrapped


def test_an_explanation_report_says_what_it_tested_and_keeps_schema_version_2(inputs) -> None:
    report = af.audit_explanation(wrapped("misleading"), inputs, "integrated_gradients")
    data = json.loads(report.to_json())
    assert data["schema_version"] == 2 and data["kind"] == "explanation" and data["explainer"] == "integrated_gradients"
    assert data["required"] == ["comprehensive", "sufficient"] and set(data["checks"]) == {"comprehensiveness", "sufficiency"}
    assert len(data["instances"]["scores"]) == 48 and len(data["instances"]["attention"]) == 48
    details = data["checks"]["comprehensiveness"]["details"]
    assert {"random", "gain", "curve", "mean", "bins", "removal"} <= set(details)
    assert report.summary().startswith("explanation 'integrated_gradients' faithfulness: PASSED")
    attention = af.audit(wrapped("misleading"), inputs, checks=["uniform"]).to_dict()
    assert attention["kind"] == "attention" and attention["explainer"] is None


def test_the_agreement_checks_take_the_explainers_scores(inputs) -> None:
    report = af.audit_explanation(wrapped("misleading"), inputs, "gradient_x_input", checks=["gradient", "loo"])
    assert report.checks["gradient"].statistic == pytest.approx(1.0)
    assert report.verdicts["agrees"] in ("yes", "no", "inconclusive")
    assert report.verdicts["comprehensive"] == "not tested" and report.passed  # nothing required was tested


def test_a_comparison_ranks_serialises_and_names_its_explainers(inputs) -> None:
    def uniform(given):
        return given["attention_mask"].double()

    comparison = af.compare_explanations(
        wrapped("misleading"), inputs, {"ig": "integrated_gradients", "attn": "attention", "flat": uniform}
    )
    assert set(comparison.reports) == {"ig", "attn", "flat"}
    assert comparison.ranking[0] == "ig" and comparison.passing == ["ig"]
    assert comparison.reports["attn"].explainer == "attn"
    data = json.loads(comparison.to_json())
    assert data["kind"] == "explanation comparison" and data["ranking"] == comparison.ranking
    assert set(data["reports"]) == {"ig", "attn", "flat"}
    assert comparison.summary().splitlines()[1].startswith("  1. ig: passed")
    assert rank_explanations({name: report["checks"] for name, report in data["reports"].items()}) == comparison.ranking


def test_the_ranking_key_is_checks_passed_then_the_sum_of_statistics() -> None:
    def check(verdict: str, statistic: float | None) -> dict:
        return {"verdict": verdict, "statistic": statistic}

    table = {
        "a": {"comprehensiveness": check("failed", 0.9), "sufficiency": check("failed", 0.9)},
        "b": {"comprehensiveness": check("passed", 0.1), "sufficiency": check("failed", -0.2)},
        "c": {"comprehensiveness": check("passed", 0.2), "sufficiency": check("inconclusive", None)},
        "d": {"comprehensiveness": check("passed", 0.1), "sufficiency": check("failed", 0.0)},
    }
    assert rank_explanations(table) == ["d", "b", "c", "a"]


def test_options_that_belong_to_attention_audits_are_refused_with_the_way_out(inputs) -> None:
    model = wrapped("faithful")
    with pytest.raises(af.AttnFaithError, match="explanation_require"):
        af.audit_explanation(model, inputs, "attention", require=("comprehensive",))
    with pytest.raises(af.AttnFaithError, match="check 'permutation' edits the attention"):
        af.audit_explanation(model, inputs, "attention", checks=["permutation"])
    with pytest.raises(af.AttnFaithError, match="explanation audits take explanation_require"):
        af.audit(model, inputs, require=("comprehensive",))
    with pytest.raises(af.AttnFaithError, match="two explainers are named 'attention'"):
        af.compare_explanations(model, inputs, ["attention", "attention"])
    report = af.audit_explanation(model, inputs, "attention", explanation_require=("sufficient",))
    assert report.required == ("sufficient",)


def test_inconclusive_explanations_warn_and_count_as_the_option_says() -> None:
    inputs = {"input_ids": torch.tensor([[3, 20, 21]]), "attention_mask": torch.tensor([[1, 1, 1]])}
    with pytest.warns(af.InconclusiveWarning, match="comprehensiveness"):
        report = af.audit_explanation(wrapped("faithful"), inputs, "attention")
    assert not report.passed
    with pytest.warns(af.InconclusiveWarning):
        assert af.assert_explanation_faithful(wrapped("faithful"), inputs, "attention", inconclusive="pass").passed


def test_a_failing_attention_assertion_names_the_explainers_that_pass_when_asked(inputs) -> None:
    model = wrapped("misleading")
    checks = ["gradient", "loo"]
    with pytest.raises(af.AttentionNotFaithful) as quiet:
        af.assert_attention_faithful(model, inputs, checks=checks)
    assert "explainers that pass" not in str(quiet.value)
    with pytest.raises(af.AttentionNotFaithful) as raised:
        af.assert_attention_faithful(
            model, inputs, checks=checks, suggest_explainers=("attention", "integrated_gradients", "leave_one_out")
        )
    last = str(raised.value).splitlines()[-1]
    assert last == "  explainers that pass on these inputs (comprehensive and sufficient): integrated_gradients, leave_one_out"
    assert raised.value.report.kind == "attention"


def test_explanation_options_parse_from_text_and_validate() -> None:
    from pytest_attnfaith.options import parse_option_text, validate_option

    assert parse_option_text("aopc_bins", "0.5, 0.1 0.2") == (0.5, 0.1, 0.2)
    assert validate_option("aopc_bins", (0.5, 0.1, 0.2)) == (0.1, 0.2, 0.5)
    assert parse_option_text("suggest_explainers", "integrated_gradients leave_one_out") == (
        "integrated_gradients",
        "leave_one_out",
    )
    assert parse_option_text("explanation_require", "comprehensive") == ("comprehensive",)
    with pytest.raises(af.AttnFaithError, match="did you mean 'shapley'"):
        validate_option("suggest_explainers", ["shapely"])
    with pytest.raises(af.AttnFaithError, match="ig_method"):
        validate_option("ig_method", "simpson")
    with pytest.raises(af.AttnFaithError, match="fractions"):
        parse_option_text("aopc_bins", "a few")


def test_the_worst_instance_of_sufficiency_is_its_highest_value() -> None:
    from pytest_attnfaith.worst import worst_indices

    assert worst_indices("sufficiency", [0.1, 0.5, 0.3], [0, 1, 2], 2) == [1, 2]
    assert worst_indices("comprehensiveness", [0.1, 0.5, 0.3], [0, 1, 2], 2) == [0, 2]


def test_the_readme_comparison_runs_on_a_wrapped_model_and_names_what_could_not_run(inputs) -> None:
    explainers = ["attention", "integrated_gradients", "leave_one_out", "shapley"]
    comparison = af.compare_explanations(wrapped("faithful"), inputs, explainers)
    assert sorted(comparison.ranking) == sorted(explainers) and comparison.unavailable == {}
    # the mask removal needs a mask token the wrapped model does not have: shapley cannot run, the rest is ranked
    masked = af.compare_explanations(wrapped("faithful"), inputs, ["attention", "shapley"], removal="mask", checks=["gradient"])
    assert masked.ranking == ["attention"] and list(masked.unavailable) == ["shapley"]
    assert "mask_token_id" in masked.unavailable["shapley"]
    assert json.loads(masked.to_json())["unavailable"] == masked.unavailable
    assert "shapley: could not run: option removal='mask' needs a mask or pad token id" in masked.summary()
    with pytest.raises(af.AttnFaithError, match="removal='mask' needs a mask"):
        af.audit_explanation(wrapped("faithful"), inputs, "shapley", removal="mask")
