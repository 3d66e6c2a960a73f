"""pytest-attnfaith: tests that fail CI when a model's attention is decorative.

    import pytest_attnfaith as af
    model = af.wrap(net, attention="pool.attn", embeddings="embed")
    report = af.assert_attention_faithful(model, inputs)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from pytest_attnfaith.adapters import AttentionModel, wrap
from pytest_attnfaith.assertions import assert_attention_faithful
from pytest_attnfaith.audit import audit
from pytest_attnfaith.errors import AttentionNotFaithful, AttentionUnavailableError, AttnFaithError
from pytest_attnfaith.options import CHECK_NAMES, QUESTIONS, Options
from pytest_attnfaith.results import CheckResult, Report

try:
    __version__ = version("pytest-attnfaith")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "CHECK_NAMES",
    "QUESTIONS",
    "AttentionModel",
    "AttentionNotFaithful",
    "AttentionUnavailableError",
    "AttnFaithError",
    "CheckResult",
    "Options",
    "Report",
    "assert_attention_faithful",
    "audit",
    "wrap",
]
