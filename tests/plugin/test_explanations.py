"""Explanation audits in a pytest run: the fixture's methods, recorded per test, the terminal leaderboard, the JSON,
and the HTML leaderboard with a deletion curve per explainer."""

from __future__ import annotations

import pytest

from tests.plugin.conftest import read_json
from tests.plugin.test_reports import parse

EXPLANATION_TESTS = """
import pytest
import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task

INPUTS = sentiment_task(24, seed=7).inputs()


def wrapped(kind):
    return af.wrap(ZooModel(kind), attention="attn", embeddings="embed")


def test_compare(attnfaith):
    comparison = attnfaith.compare_explanations(wrapped("misleading"), INPUTS, ["attention", "leave_one_out"])
    assert comparison.ranking == ["leave_one_out", "attention"]


def test_assert_attention_explanation(attnfaith):
    attnfaith.assert_explanation_faithful(wrapped("misleading"), INPUTS, "attention")


def test_bare_audit():
    af.audit_explanation(wrapped("faithful"), INPUTS, "integrated_gradients")
"""


@pytest.fixture
def explanation_repo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_repo_explanations=EXPLANATION_TESTS)
    # attention-audit settings that must not reach explanation audits through the fixture
    pytester.makeini("[pytest]\nattnfaith_checks = permutation uniform\nattnfaith_require = used\n")
    return pytester


def test_explanation_audits_are_recorded_per_test_with_a_leaderboard(explanation_repo: pytest.Pytester) -> None:
    result = explanation_repo.runpytest("--attnfaith-json", "out.json", "--attnfaith-html", "out.html")
    result.assert_outcomes(passed=2, failed=1)
    tests = read_json(explanation_repo.path / "out.json")["tests"]
    compared = tests["test_repo_explanations.py::test_compare"]
    assert [(audit["kind"], audit["explainer"]) for audit in compared] == [
        ("explanation", "attention"),
        ("explanation", "leave_one_out"),
    ]
    assert set(compared[0]["checks"]) == {"comprehensiveness", "sufficiency"}
    assert tests["test_repo_explanations.py::test_bare_audit"][0]["explainer"] == "integrated_gradients"
    assert "ExplanationNotFaithful" in result.stdout.str() or "explanation 'attention' is not faithful" in result.stdout.str()
    result.stdout.re_match_lines(
        [
            r"explanations \(statistic \[interval\] per check.*",
            r"test_repo_explanations.py::test_compare",
            r"  rank +explainer +verdict +comprehensiveness +sufficiency",
            r"  1 +leave_one_out +passed +\d\.\d+ \[.*\] passed .*",
            r"  2 +attention +FAILED +-?\d\.\d+ \[.*\] FAILED .*",
        ]
    )
    page_text = (explanation_repo.path / "out.html").read_text(encoding="utf-8")
    page = parse(page_text)
    assert "Explanations: which one clears the bar" in " ".join(page.text)
    assert page_text.count('class="leaderboard"') == 3
    assert "fraction of tokens removed" in page_text and "random orderings" in page_text


def test_an_explainer_that_cannot_run_is_a_row_with_its_reason_in_the_terminal_json_and_html(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_refused="""
import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task


def test_compare(attnfaith):
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    inputs = sentiment_task(16, seed=7).inputs()
    comparison = attnfaith.compare_explanations(model, inputs, ["attention", "shapley"], removal="mask", checks=["gradient"])
    assert comparison.ranking == ["attention"] and list(comparison.unavailable) == ["shapley"]
"""
    )
    result = pytester.runpytest("--attnfaith-json", "out.json", "--attnfaith-html", "out.html")
    result.assert_outcomes(passed=1)
    reason = "shapley could not run: option removal='mask' needs a mask or pad token id"
    result.stdout.re_match_lines([r"  — +shapley +could not run .*", f"  {reason}.*"])
    audits = read_json(pytester.path / "out.json")["tests"]["test_refused.py::test_compare"]
    assert [audit["error"] for audit in audits][1].startswith("option removal='mask' needs a mask")
    assert reason in (pytester.path / "out.html").read_text(encoding="utf-8")
