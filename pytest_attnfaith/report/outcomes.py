"""pytest's outcome of each test beside its audits' verdicts: what the terminal and the HTML print, and their colour.

An audit's verdict and its test's outcome are different things: a test may expect a failing verdict
(``xfail``), or assert only what it needs (``assert report.answers["unique"] is False``) and pass.
Such a failing verdict is *expected*: shown as such, not as a failure.
"""

from __future__ import annotations

from typing import Any

OUTCOMES = ("passed", "failed", "xfailed", "xpassed", "skipped", "error")
OUTCOME_TEXT = {
    "passed": "passed",
    "failed": "failed",
    "xfailed": "xfailed (expected failure)",
    "xpassed": "xpassed (was expected to fail)",
    "skipped": "skipped",
    "error": "error",
}
ACCEPTING = ("passed", "xfailed", "xpassed")  # outcomes of a test that did not fail on its audit's verdict


def verdict_state(report: dict[str, Any], outcome: str | None) -> str:
    """``"passed"``; ``"expected"`` for a failed verdict its test expected or accepted; else ``"failed"``."""
    if report["passed"]:
        return "passed"
    return "expected" if outcome in ACCEPTING else "failed"


def outcome_text(outcome: str | None) -> str:
    """``"pytest: xfailed (expected failure)"``; empty outside pytest (the ``attnfaith`` command)."""
    return f"pytest: {OUTCOME_TEXT.get(outcome, outcome)}" if outcome else ""


def unaudited_failures(tests: dict[str, Any], outcomes: dict[str, str], messages: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(node id, outcome, message)`` of every test that failed or errored without recording an audit (among the
    tests ``messages`` covers: those that use the plugin)."""
    return [
        (nodeid, outcomes.get(nodeid, "error"), message)
        for nodeid, message in messages.items()
        if nodeid not in tests and outcomes.get(nodeid) in ("failed", "error")
    ]


def failure_note(message: str | None) -> str | None:
    """A failed test's message where it adds to its audit's verdict: not the verdict's own ``AttentionNotFaithful``
    (or ``ExplanationNotFaithful``)."""
    return None if message is None or "NotFaithful" in message else message
