"""Where a finished audit is recorded: the innermost subscriber only, so that a pytest session run inside a test
(``pytester``) keeps its audits out of the outer session's section."""

from __future__ import annotations

import pytest

from pytest_attnfaith import _recording


def test_an_audit_goes_to_the_innermost_recorder_only() -> None:
    outer: list[str] = []
    inner: list[str] = []
    _recording.subscribe(outer.append)
    _recording.subscribe(inner.append)
    try:
        _recording.publish("inner audit")
    finally:
        _recording.unsubscribe(inner.append)
    _recording.publish("outer audit")
    _recording.unsubscribe(outer.append)
    assert inner == ["inner audit"] and outer == ["outer audit"]


def test_a_pytester_session_keeps_its_audits_from_the_test_that_runs_it(pytester: pytest.Pytester) -> None:
    recorded: list[object] = []
    _recording.subscribe(recorded.append)  # stands for the outer session's recorder, subscribed before the inner one
    try:
        pytester.makepyfile(
            test_inner="""
import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task


def test_fails(attnfaith):
    attnfaith.assert_faithful(af.wrap(ZooModel("unused"), attention="attn", embeddings="embed"), sentiment_task(8).inputs(),
                              checks=["uniform"])
"""
        )
        result = pytester.runpytest()
    finally:
        _recording.unsubscribe(recorded.append)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_inner.py::test_fails: FAILED (used answered no)*"])
    assert recorded == []
