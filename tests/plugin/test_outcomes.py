"""pytest's outcome beside each verdict: the session JSON's ``outcomes`` and ``messages``, the terminal, the HTML,
pytest-xdist, and pytest-html's rows."""

from __future__ import annotations

import html
import re

import pytest

from pytest_attnfaith.report.html import section_anchor
from tests.plugin.conftest import read_json
from tests.plugin.test_reports import parse

OUTCOME_TESTS = """
import pytest
import pytest_attnfaith as af
from pytest_attnfaith.zoo import WORDS, ZooModel, sentiment_task

INPUTS = sentiment_task(6).inputs()
FAST = dict(checks=["uniform", "permutation"], permutations=10, require=("used",))


def wrapped(kind):
    return af.wrap(ZooModel(kind), attention="attn", embeddings="embed", vocabulary=WORDS)


def test_passes(attnfaith):
    attnfaith.assert_faithful(wrapped("faithful"), INPUTS, **FAST)


def test_fails(attnfaith):
    attnfaith.assert_faithful(wrapped("unused"), INPUTS, **FAST)


@pytest.mark.xfail(raises=af.AttentionNotFaithful, strict=True, reason="decorative: the test must catch it")
def test_expected_failure(attnfaith):
    attnfaith.assert_faithful(wrapped("unused"), INPUTS, **FAST)


@pytest.mark.xfail(reason="may not be caught")
def test_unexpected_pass(attnfaith):
    attnfaith.assert_faithful(wrapped("faithful"), INPUTS, **FAST)


def test_accepts_a_failing_verdict(attnfaith):
    report = attnfaith.audit(wrapped("unused"), INPUTS, **FAST)
    assert report.answers["used"] is False


@pytest.fixture
def broken_model():
    raise RuntimeError("checkpoint missing: model.pt")


def test_errors_before_its_audit(attnfaith, broken_model):
    attnfaith.assert_faithful(broken_model, INPUTS)


@pytest.fixture
def device():
    yield "cpu"
    raise RuntimeError("could not release the device")


def test_fails_in_teardown(attnfaith, device):
    attnfaith.audit(wrapped("faithful"), INPUTS, device=device, **FAST)


@pytest.mark.skip(reason="no GPU")
def test_skipped(attnfaith):
    pass


def test_unrelated_failure():
    assert 1 == 2
"""

OUTCOMES = {
    "test_user_repo.py::test_passes": "passed",
    "test_user_repo.py::test_fails": "failed",
    "test_user_repo.py::test_expected_failure": "xfailed",
    "test_user_repo.py::test_unexpected_pass": "xpassed",
    "test_user_repo.py::test_accepts_a_failing_verdict": "passed",
    "test_user_repo.py::test_errors_before_its_audit": "error",
    "test_user_repo.py::test_fails_in_teardown": "error",
    "test_user_repo.py::test_skipped": "skipped",
    "test_user_repo.py::test_unrelated_failure": "failed",
}
MESSAGES = {  # only the tests that use the plugin
    "test_user_repo.py::test_fails": "AttentionNotFaithful: attention is not faithful: used answered no",
    "test_user_repo.py::test_errors_before_its_audit": "RuntimeError: checkpoint missing: model.pt",
    "test_user_repo.py::test_fails_in_teardown": "RuntimeError: could not release the device",
}


@pytest.fixture
def outcome_repo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_user_repo=OUTCOME_TESTS)
    return pytester


AUDITED = {
    f"test_user_repo.py::{name}"
    for name in ("test_passes", "test_fails", "test_expected_failure", "test_unexpected_pass", "test_accepts_a_failing_verdict")
} | {"test_user_repo.py::test_fails_in_teardown"}
RED = "\x1b[31m"


def plain(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", line)


def check_document(document: dict) -> None:
    assert document["outcomes"] == OUTCOMES
    assert set(document["messages"]) == set(MESSAGES)
    for nodeid, ending in MESSAGES.items():
        assert document["messages"][nodeid].endswith(ending)
    assert set(document["tests"]) == AUDITED


def test_outcomes_are_recorded_for_every_test_and_shown_beside_each_verdict(outcome_repo: pytest.Pytester) -> None:
    result = outcome_repo.runpytest("--attnfaith-json", "out.json", "--attnfaith-html", "out.html", "--color=yes")
    result.assert_outcomes(passed=3, failed=2, xfailed=1, xpassed=1, skipped=1, errors=2)
    check_document(read_json(outcome_repo.path / "out.json"))

    styled = {plain(line): line for line in result.stdout.lines}
    for line, red in [
        ("test_user_repo.py::test_fails: FAILED (used answered no); pytest: failed", True),
        ("test_user_repo.py::test_expected_failure: FAILED (used answered no); pytest: xfailed (expected failure)", False),
        ("test_user_repo.py::test_accepts_a_failing_verdict: FAILED (used answered no); pytest: passed", False),
        ("test_user_repo.py::test_unexpected_pass: passed; pytest: xpassed (was expected to fail)", False),
    ]:
        assert (RED in styled[line]) is red, line
    text = result.stdout.str()
    assert "tests that failed before recording an audit:" in text
    assert "test_user_repo.py::test_errors_before_its_audit: pytest: error: RuntimeError: checkpoint missing: model.pt" in text
    assert "test_unrelated_failure" not in text.split("= attnfaith =")[1].split("short test summary")[0]

    page = (outcome_repo.path / "out.html").read_text(encoding="utf-8")
    summary = page.split('<table class="summary">')[1].split("</table>")[0]
    rows = {nodeid: row for row in summary.split("<tr>") for nodeid in OUTCOMES if f">{nodeid}<" in row}
    assert 'class="expected">FAILED (used answered no)' in rows["test_user_repo.py::test_expected_failure"]
    assert 'class="expected">xfailed<br>(expected failure)' in rows["test_user_repo.py::test_expected_failure"]
    assert 'class="fail"' not in rows["test_user_repo.py::test_expected_failure"]
    assert 'class="fail">FAILED (used answered no)' in rows["test_user_repo.py::test_fails"]
    assert 'class="expected">FAILED' in rows["test_user_repo.py::test_accepts_a_failing_verdict"]
    errored = rows["test_user_repo.py::test_errors_before_its_audit"]
    assert "no audit recorded" in errored and "RuntimeError: checkpoint missing: model.pt" in errored
    cards = " ".join(parse(page).text)
    assert "tests run" in cards and "pytest: 2 passed, 2 failed, 1 xfailed, 1 xpassed, 1 skipped, 2 errors" in cards
    assert 'class="fail">error' in rows["test_user_repo.py::test_fails_in_teardown"]


def test_xdist_controller_records_the_same_outcomes(outcome_repo: pytest.Pytester) -> None:
    result = outcome_repo.runpytest_subprocess("-n", "2", "-p", "xdist", "--attnfaith-json", "out.json")
    result.assert_outcomes(passed=3, failed=2, xfailed=1, xpassed=1, skipped=1, errors=2)
    check_document(read_json(outcome_repo.path / "out.json"))
    result.stdout.fnmatch_lines(["*test_expected_failure: FAILED (used answered no); pytest: xfailed (expected failure)"])


def test_pytest_html_rows_show_the_verdict_and_link_to_the_attnfaith_report(outcome_repo: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html")
    outcome_repo.runpytest("--html", "pytest-report.html", "--attnfaith-html", "reports/attnfaith.html")
    page = html.unescape((outcome_repo.path / "pytest-report.html").read_text(encoding="utf-8"))  # rows: escaped JSON
    assert "attnfaith</th>" in page
    verdicts = re.findall(r'col-attnfaith\\">([^<]*)<', page)
    assert "failed" in verdicts and "passed" in verdicts
    anchor = section_anchor("test_user_repo.py::test_expected_failure")
    assert f"reports/attnfaith.html#{anchor}" in page
    assert f'id="{anchor}"' in (outcome_repo.path / "reports" / "attnfaith.html").read_text(encoding="utf-8")


def test_the_plugin_works_without_pytest_html(outcome_repo: pytest.Pytester) -> None:
    result = outcome_repo.runpytest("-p", "no:html", "--attnfaith-json", "out.json")
    result.assert_outcomes(passed=3, failed=2, xfailed=1, xpassed=1, skipped=1, errors=2)
    check_document(read_json(outcome_repo.path / "out.json"))
