"""Exceptions raised by pytest-attnfaith.

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import os
import sys
from typing import Any


class AttnFaithError(ValueError):
    """Bad input: names the problem and what was expected. Raised before heavy work."""


class AttentionUnavailableError(AttnFaithError):
    """The attention of a model cannot be read or replaced (with the reason and what to do)."""


class InconclusiveWarning(UserWarning):
    """A check of an audit could not decide: its interval straddles the threshold (the message says how many
    instances would likely decide it). Shown in pytest's warnings summary."""


class ModelWarning(UserWarning):
    """The model makes the audit's statistics depend on something else than its attention: trailing padding changes
    its output, or two identical passes differ (the message says what to do)."""


class ConvergenceWarning(UserWarning):
    """An explainer's numbers failed their own test on some instances (integrated gradients missed completeness
    within ``ig_tolerance`` by ``ig_max_steps``): those instances' scores are NaN, and the message names the gap."""


class _NotFaithful(AssertionError):  # noqa: N818 - the base of the public names below
    """A failed verdict that carries its ``report`` (a ``results.Report``; typed ``Any`` so that this bottom module
    imports nothing of the package) and survives pickling, e.g. across pytest-xdist."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.report))


class AttentionNotFaithful(_NotFaithful):
    """Raised by ``assert_attention_faithful`` when the verdict fails; carries the ``report``."""


class ExplanationNotFaithful(_NotFaithful):
    """Raised by ``assert_explanation_faithful`` when an explanation's verdict fails; carries the ``report``."""


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the caller point at the first frame outside this package (the
    user's code), however many of the package's own frames lie between."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level
