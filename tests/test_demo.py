"""The demo (``make demo``): trains the BiLSTMs, audits them, and writes one JSON report."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from pytest_attnfaith import demo
from pytest_attnfaith.zoo import WORDS


def answers(used: bool, agrees: bool) -> list[dict]:
    return [{"answers": {"used": used, "agrees": agrees, "unique": False}}]


@pytest.mark.parametrize(
    ("faithful", "decorative", "expected"),
    [
        ((True, True), (False, False), True),
        ((True, False), (False, False), False),
        ((False, True), (False, False), False),
        ((True, True), (True, False), False),
    ],
)
def test_expected_verdicts_need_a_used_agreeing_bilstm_and_a_decorative_twin(
    faithful: tuple[bool, bool], decorative: tuple[bool, bool], expected: bool
) -> None:
    tests = {demo.FAITHFUL: answers(*faithful), demo.DECORATIVE: answers(*decorative)}
    assert demo.expected_verdicts(tests) is expected


def test_small_demo_writes_every_audit_to_its_json_and_prints_only_paths_that_remain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out" / "demo.json"
    argv = ["--json", str(path), "--html", str(tmp_path / "demo.html"), "--train", "32", "--test", "6", "--epochs", "1"]
    status = demo.main([*argv, "--command-model", "bilstm"])
    document = json.loads(path.read_text())
    command = "attnfaith audit pytest_attnfaith.demo:bilstm"
    assert set(document["tests"]) == {*demo.MODELS, command}
    assert status == (0 if demo.expected_verdicts(document["tests"]) else 1)
    twin = document["tests"][demo.DECORATIVE][0]
    assert twin["answers"]["used"] is False
    assert all(len(reports[0]["checks"]) == 6 for reports in document["tests"].values())
    assert document["tests"][command][0]["instances"]["tokens"][0][0] in WORDS
    out = capsys.readouterr().out
    printed = {name.rstrip(":,.") for name in re.findall(rf"{re.escape(str(tmp_path))}\S*", out)}
    assert {str(path), str(tmp_path / "out" / "demo-inputs.jsonl"), str(tmp_path / "demo.html")} <= printed
    assert all(Path(name).exists() for name in printed)  # no temporary file that is gone afterwards
    status_line = f"the command would exit with status {'0' if document['tests'][command][0]['passed'] else '1'}: its verdict"
    assert status_line in out and "the demo's own status is decided below" in out
    assert document["tests"][command][0]["required"] == ["used", "agrees"]
    assert document["tests"][demo.FAITHFUL][0]["required"] == ["used", "agrees"]
    page = (tmp_path / "demo.html").read_text(encoding="utf-8")
    assert document["notes"][demo.FAITHFUL].startswith(demo.GOOD_NOTE) and html.escape(demo.GOOD_NOTE) in page
    assert html.escape(document["notes"][demo.DECORATIVE]) in page and "permutation: " in document["notes"][demo.DECORATIVE]


def test_a_verdict_is_explained_in_words_and_the_good_example_says_why_unique_is_not_required() -> None:
    check = {"name": "permutation", "verdict": "failed", "meaning": "the heat map is decorative", "reason": ""}
    undecided = {"name": "loo", "verdict": "inconclusive", "meaning": "", "reason": "about 40 instances would decide it"}
    failed = {"passed": False, "checks": {"permutation": check, "loo": undecided}}
    assert (
        demo.explain(failed)
        == "permutation: the heat map is decorative; loo is inconclusive (about 40 instances would decide it)"
    )
    assert demo.explain({"passed": True, "checks": {"permutation": check}}, demo.GOOD_NOTE) == demo.GOOD_NOTE
    assert "Jain & Wallace" in demo.GOOD_NOTE and "require=('used', 'agrees')" in demo.GOOD_NOTE
