"""What an explainer says about its own numbers (integrated gradients' steps and completeness gaps, Shapley values'
standard errors): left in ``Context.memo`` under ``REPORT_KEY`` by ``note`` and taken by the explanation audit
into ``report.model["explainer"]``."""

from __future__ import annotations

from typing import Any

from pytest_attnfaith.session import Context

REPORT_KEY = "explainer_report"


def note(context: Context, entry: dict[str, Any]) -> None:
    """Leave ``entry`` for the report of the explainer that just ran."""
    context.memo[REPORT_KEY] = entry


def take(context: Context) -> dict[str, Any] | None:
    """The entry the last explainer left (None: it said nothing), removed so that the next one starts clean."""
    return context.memo.pop(REPORT_KEY, None)  # type: ignore[no-any-return]
