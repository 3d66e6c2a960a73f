"""The ``attnfaith`` fixture: audits with the session's, the marker's and the call's options merged.

torch and the audit machinery are imported inside the methods, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_attnfaith.results import Report


class AttnFaith:
    """What the ``attnfaith`` fixture returns.

    ``options`` holds the merged ini, command-line and marker options of the running test; each
    call's keyword options override them (see ``docs/pytest-plugin.md`` for the precedence).
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
