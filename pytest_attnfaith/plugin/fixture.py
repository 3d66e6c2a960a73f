"""The ``attnfaith`` fixture: audits with the session's, the marker's and the call's options merged.

torch and the audit machinery are imported inside the methods, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_attnfaith.results import Comparison, Report

ATTENTION_ONLY = ("checks", "require")
"""Configured options that choose what an attention audit runs and requires; explanation audits take their own
(``checks=`` of the call, ``explanation_require``)."""


class AttnFaith:
    """What the ``attnfaith`` fixture returns.

    ``options`` holds the merged ini, command-line and marker options of the running test; each
    call's keyword options override them (see ``docs/pytest-plugin.md`` for the precedence). The
    explanation methods leave out the configured ``checks`` and ``require``, which belong to attention audits.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)

    def merged(self, **options: Any) -> dict[str, Any]:
        """The options a call with ``options`` would use (the defaults fill in the rest)."""
        return {**self.options, **options}

    def audit(self, model: Any, inputs: Any, **options: Any) -> Report:
        """``af.audit`` with the merged options; returns the ``Report`` (recorded for the reports)."""
        from pytest_attnfaith.audit import audit

        return audit(model, inputs, **self.merged(**options))

    def assert_faithful(self, model: Any, inputs: Any, **options: Any) -> Report:
        """``af.assert_attention_faithful`` with the merged options: raises ``AttentionNotFaithful`` on failure."""
        __tracebackhide__ = True
        from pytest_attnfaith.assertions import assert_attention_faithful

        return assert_attention_faithful(model, inputs, **self.merged(**options))

    def audit_explanation(self, model: Any, inputs: Any, explainer: Any, **options: Any) -> Report:
        """``af.audit_explanation`` with the merged options; returns the ``Report`` (recorded for the reports)."""
        from pytest_attnfaith.explanation_audit import audit_explanation

        return audit_explanation(model, inputs, explainer, **self.merged_for_explanations(**options))

    def assert_explanation_faithful(self, model: Any, inputs: Any, explainer: Any, **options: Any) -> Report:
        """``af.assert_explanation_faithful`` with the merged options: raises ``ExplanationNotFaithful`` on failure."""
        __tracebackhide__ = True
        from pytest_attnfaith.assertions import assert_explanation_faithful

        return assert_explanation_faithful(model, inputs, explainer, **self.merged_for_explanations(**options))

    def compare_explanations(self, model: Any, inputs: Any, explainers: Any, **options: Any) -> Comparison:
        """``af.compare_explanations`` with the merged options; every explanation's ``Report`` is recorded."""
        from pytest_attnfaith.explanation_audit import compare_explanations

        return compare_explanations(model, inputs, explainers, **self.merged_for_explanations(**options))

    def merged_for_explanations(self, **options: Any) -> dict[str, Any]:
        """The options an explanation call with ``options`` would use: the configured ones but ``checks`` and
        ``require``, then the call's."""
        configured = {key: value for key, value in self.options.items() if key not in ATTENTION_ONLY}
        return {**configured, **options}
