"""The demo (``make demo``): trains the BiLSTMs, audits them, and writes one JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_attnfaith import demo


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


def test_small_demo_writes_every_audit_to_its_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo.json"
    argv = ["--json", str(path), "--train", "32", "--test", "6", "--epochs", "1", "--command-model", "none"]
    status = demo.main(argv)
    document = json.loads(path.read_text())
    assert set(document["tests"]) == set(demo.MODELS)
    assert status == (0 if demo.expected_verdicts(document["tests"]) else 1)
    twin = document["tests"][demo.DECORATIVE][0]
    assert twin["answers"]["used"] is False
    assert all(len(reports[0]["checks"]) == 6 for reports in document["tests"].values())
    assert str(path) in capsys.readouterr().out
