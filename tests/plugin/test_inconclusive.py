"""An inconclusive check through pytest: a warning in pytest's summary naming the check and the instances it needs;
it fails the test by default and passes with ``inconclusive="pass"``."""

from __future__ import annotations

import pytest

from tests.plugin.conftest import read_json

FEW_INSTANCES = """
import pytest
import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task

INPUTS = sentiment_task(3, seed=1).inputs()


def test_default(attnfaith):
    attnfaith.assert_faithful(af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed"), INPUTS, checks=["uniform"])


@pytest.mark.attnfaith(inconclusive="pass")
def test_lenient(attnfaith):
    attnfaith.assert_faithful(af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed"), INPUTS, checks=["uniform"])
"""


def test_an_inconclusive_check_warns_and_fails_unless_told_to_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_few=FEW_INSTANCES)
    result = pytester.runpytest("--attnfaith-json", "out.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AttentionNotFaithful: attention is not faithful: used answered inconclusive*",
            "*InconclusiveWarning: attnfaith: uniform: fraction flagged = 0.000 [[]0.000, 0.708[]]*INCONCLUSIVE*",
            "*test_few.py::test_lenient: passed (used answered inconclusive)*",
        ]
    )
    (lenient,) = read_json(pytester.path / "out.json")["tests"]["test_few.py::test_lenient"]
    assert lenient["passed"] is True and lenient["verdicts"]["used"] == "inconclusive"
    # 0 of n flagged: the Clopper–Pearson upper bound 1 − 0.025^(1/n) first reaches ≤ 0.5 at n = 6
    assert lenient["checks"]["uniform"]["reason"] == "about 6 instances would decide it"
