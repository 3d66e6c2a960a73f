"""pytest-attnfaith: tests that fail CI when a model's attention is decorative.

    import pytest_attnfaith as af
    model = af.wrap(net, attention="pool.attn", embeddings="embed")
    report = af.assert_attention_faithful(model, inputs)

The names that need torch are imported on first use, so that the pytest plugin
(``pytest_attnfaith.plugin.entry``) loads without importing torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from pytest_attnfaith.errors import (
    AttentionNotFaithful,
    AttentionUnavailableError,
    AttnFaithError,
    ConvergenceWarning,
    ExplanationNotFaithful,
    InconclusiveWarning,
    ModelWarning,
)
from pytest_attnfaith.options import (
    CHECK_NAMES,
    EXPLAINER_NAMES,
    EXPLANATION_CHECK_NAMES,
    EXPLANATION_QUESTIONS,
    QUESTIONS,
    Options,
)
from pytest_attnfaith.report import html as _html  # noqa: F401 - registers how a Report renders in a notebook

if TYPE_CHECKING:
    from pytest_attnfaith.adapters import AttentionModel, wrap
    from pytest_attnfaith.adapters.huggingface import huggingface
    from pytest_attnfaith.assertions import assert_attention_faithful, assert_explanation_faithful
    from pytest_attnfaith.cost import estimate
    from pytest_attnfaith.explanation_audit import audit_explanation, compare_explanations, explain
    from pytest_attnfaith.results import CheckResult, Comparison, Report
    from pytest_attnfaith.sequential import audit

try:
    __version__ = version("pytest-attnfaith")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

_LAZY = {
    "AttentionModel": "pytest_attnfaith.adapters",
    "wrap": "pytest_attnfaith.adapters",
    "huggingface": "pytest_attnfaith.adapters.huggingface",
    "assert_attention_faithful": "pytest_attnfaith.assertions",
    "assert_explanation_faithful": "pytest_attnfaith.assertions",
    "audit": "pytest_attnfaith.sequential",
    "estimate": "pytest_attnfaith.cost",
    "explain": "pytest_attnfaith.explanation_audit",
    "audit_explanation": "pytest_attnfaith.explanation_audit",
    "compare_explanations": "pytest_attnfaith.explanation_audit",
    "CheckResult": "pytest_attnfaith.results",
    "Comparison": "pytest_attnfaith.results",
    "Report": "pytest_attnfaith.results",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pytest_attnfaith' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Keeps ``af.audit`` the function when the submodule ``pytest_attnfaith.audit`` is imported: a submodule
    named like a lazy name is not bound on the package, so the name resolves through ``__getattr__``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _LAZY and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "CHECK_NAMES",
    "EXPLAINER_NAMES",
    "EXPLANATION_CHECK_NAMES",
    "EXPLANATION_QUESTIONS",
    "QUESTIONS",
    "AttentionModel",
    "AttentionNotFaithful",
    "AttentionUnavailableError",
    "AttnFaithError",
    "CheckResult",
    "Comparison",
    "ConvergenceWarning",
    "ExplanationNotFaithful",
    "InconclusiveWarning",
    "ModelWarning",
    "Options",
    "Report",
    "assert_attention_faithful",
    "assert_explanation_faithful",
    "audit",
    "audit_explanation",
    "compare_explanations",
    "estimate",
    "explain",
    "huggingface",
    "wrap",
]
