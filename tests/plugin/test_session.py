"""A model repository's test file run through the plugin: outcomes, terminal summary, JSON, JUnit, xdist."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.plugin.conftest import CASES, read_json

NO_INCONCLUSIVE_WARNING = ("-W", "ignore::pytest_attnfaith.InconclusiveWarning")  # expected here; other warnings are not


def test_entry_point_module_imports_neither_torch_nor_transformers() -> None:
    code = "import sys, pytest_attnfaith.plugin.entry; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_help_lists_the_options_without_importing_torch(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import sys\ndef pytest_unconfigure(config):\n    print('torch imported:', 'torch' in sys.modules)\n")
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(
        ["*--attnfaith-json=PATH*", "*--attnfaith-baseline=PATH*", "*attnfaith_epsilon*", "torch imported: False"]
    )


def test_decorative_cases_fail_and_the_faithful_ones_pass(model_repo: pytest.Pytester) -> None:
    result = model_repo.runpytest("-rA", "--attnfaith-json", "out.json")
    result.assert_outcomes(passed=2, failed=4)
    summary = result.stdout.str().split("short test summary info")[1]
    assert all(f"{outcome.upper()} {nodeid}" in summary for nodeid, outcome in CASES.items())
    document = read_json(model_repo.path / "out.json")
    assert list(document["tests"]) == list(CASES)
    for nodeid, outcome in CASES.items():
        (report,) = document["tests"][nodeid]
        assert report["passed"] is (outcome == "passed")
        assert set(report["checks"]) == {"gradient", "loo", "permutation", "adversarial", "uniform", "erasure"}
        assert all(len(check["per_instance"]) == 8 for check in report["checks"].values())


def test_json_document_carries_versions_options_and_the_model(model_repo: pytest.Pytester) -> None:
    model_repo.runpytest("-k", "fixture and unused", "--attnfaith-json", "out.json", "--attnfaith-seed", "3")
    document = read_json(model_repo.path / "out.json")
    assert document["schema_version"] == 2
    assert document["environment"]["torch"] and document["environment"]["pytest-attnfaith"]
    assert document["summary"] == {
        "tests": 1,
        "audits": 1,
        "failed_audits": 1,
        "checks": 6,
        "failed_checks": 4,
        "inconclusive_checks": 0,
    }
    (report,) = document["tests"]["test_models.py::test_fixture[unused]"]
    assert report["options"]["seed"] == 3 and report["options"]["permutations"] == 20
    assert report["model"]["class"] == "ZooModel"
    assert report["environment"]["python"] == document["environment"]["python"]
    assert document["baseline"] is None


def test_failure_reads_as_an_explanation_not_a_tensor_dump(model_repo: pytest.Pytester) -> None:
    result = model_repo.runpytest("-k", "fixture and unused")
    result.stdout.fnmatch_lines(
        ["E *.AttentionNotFaithful: attention is not faithful: used, unique answered no", "E *worst instances*"]
    )
    assert "tensor(" not in result.stdout.str()


def test_summary_section_has_a_row_per_audit_and_check_and_no_second_copy_of_the_token_tables(
    model_repo: pytest.Pytester,
) -> None:
    """The failure message shows the worst instances; the section's own tables are for audits that did not raise."""
    result = model_repo.runpytest("-k", "fixture and (unused or faithful)")
    result.stdout.fnmatch_lines(
        [
            "*= attnfaith =*",
            "*check*statistic*value*interval*required*verdict*instances*",
            "test_models.py::test_fixture[[]faithful[]]: passed; pytest: passed",
            "  gradient *mean Kendall τ*>= 0.250*passed*8 instances, 0 flagged (0%)",
            "test_models.py::test_fixture[[]unused[]]: FAILED (used, unique answered no); pytest: failed",
            "  permutation *fraction flagged*1.000*[[]0.631, 1.000[]]*<= 0.500*FAILED*8 instances, 8 flagged (100%)",
            "2 audits in 2 tests, 1 with a failing verdict; their checks: 4 of 12 failed, 0 inconclusive",
        ]
    )
    shown = result.stdout.str().split("short test summary info")[0]  # under CI=true pytest repeats the message there
    section = shown.split("= attnfaith =")[1]
    assert "worst instances" not in section and shown.count("    instance ") == 3


def test_the_section_shows_the_worst_instances_of_an_audit_that_did_not_raise(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_quiet_audit="""
import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task


def test_audit_only():
    model = af.wrap(ZooModel("unused"), attention="attn", embeddings="embed")
    assert not af.audit(model, sentiment_task(8).inputs(), checks=["uniform"]).passed
"""
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["worst instances of the failing checks*", "  instance *, worst for uniform*", "    token *", "    attention *"]
    )


def test_quiet_lists_only_failing_checks_and_verbose_adds_the_models(model_repo: pytest.Pytester) -> None:
    quiet = model_repo.runpytest("-q", "-k", "fixture and (unused or faithful)").stdout.str()
    # up to pytest's short summary, which under CI=true repeats the whole failure message
    section = quiet.split("= attnfaith =")[1].split("short test summary info")[0]
    assert "  permutation" in section and "  gradient" not in section and "worst instances" not in section
    verbose = model_repo.runpytest("-v", "-k", "fixture and unused").stdout.str()
    assert "audited models:" in verbose and "ZooModel (torch adapter) read output of attn" in verbose


def test_junit_xml_carries_each_check_without_the_xunit2_warning(model_repo: pytest.Pytester) -> None:
    result = model_repo.runpytest("-k", "unused", "--junitxml", "junit.xml", "-W", "error::pytest.PytestWarning")
    result.assert_outcomes(failed=2)
    tree = ET.parse(model_repo.path / "junit.xml")
    for case in tree.iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert properties["attnfaith.verdict"] == "failed"
        assert properties["attnfaith.permutation.verdict"] == "failed"
        assert float(properties["attnfaith.permutation.statistic"]) == 1.0
        assert properties["attnfaith.gradient.verdict"] == "passed"


def test_a_second_audit_in_one_test_is_recorded_separately(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_two="""
        import pytest_attnfaith as af
        from pytest_attnfaith.zoo import ZooModel, sentiment_task

        def test_two(attnfaith):
            inputs = sentiment_task(8).inputs()
            for kind in ("faithful", "unused"):
                attnfaith.audit(af.wrap(ZooModel(kind), attention="attn", embeddings="embed"), inputs, checks=["uniform"])
        """
    )
    result = pytester.runpytest("--attnfaith-json", "out.json", "--junitxml", "junit.xml")
    result.stdout.fnmatch_lines(
        ["test_two.py::test_two: passed; pytest: passed", "test_two.py::test_two #2: FAILED (used answered no); pytest: passed"]
    )
    reports = read_json(pytester.path / "out.json")["tests"]["test_two.py::test_two"]
    assert [report["passed"] for report in reports] == [True, False]
    names = [p.get("name") for p in ET.parse(pytester.path / "junit.xml").iter("property")]
    assert "attnfaith.uniform.verdict" in names and "attnfaith[2].uniform.verdict" in names


def test_xdist_workers_send_every_audit_to_the_controller(model_repo: pytest.Pytester) -> None:
    result = model_repo.runpytest_subprocess(
        "-n", "2", "-p", "xdist", "--attnfaith-json", "out.json", "--attnfaith-html", "out.html", *NO_INCONCLUSIVE_WARNING
    )
    result.assert_outcomes(passed=2, failed=4)
    result.stdout.fnmatch_lines(["*= attnfaith =*", "6 audits in 6 tests, 4 with a failing verdict; their checks: *"])
    assert "warning" not in result.stdout.str().lower()
    document = read_json(model_repo.path / "out.json")
    assert set(document["tests"]) == set(CASES)
    assert document["summary"]["audits"] == 6
    html = (model_repo.path / "out.html").read_text(encoding="utf-8")
    assert all(nodeid in html for nodeid in CASES)


def test_a_failure_on_256_token_inputs_prints_a_bounded_number_of_lines(pytester: pytest.Pytester) -> None:
    from tests.plugin.test_html_layout import LONG_TESTS

    pytester.makepyfile(test_long=LONG_TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    # Everything before pytest's short summary, which under CI=true repeats the whole message.
    printed = result.stdout.str().split("short test summary")[0]
    section = printed.split("= attnfaith =")[1].splitlines()
    assert len(printed.splitlines()) <= 150 and len(section) <= 45  # 339 lines before the windowed tables
    assert "worst instances" not in "\n".join(section)  # the failure message above holds the windowed tables
    result.stdout.fnmatch_lines(["*256 tokens: the 3 largest values of each row*", "*superb*"])
