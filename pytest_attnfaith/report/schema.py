"""The session JSON document written by ``--attnfaith-json`` (documented in ``docs/json-schema.md``)."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

SESSION_SCHEMA_VERSION = 2
DISTRIBUTIONS = ("pytest-attnfaith", "pytest", "torch", "transformers", "numpy", "scipy", "matplotlib", "pytest-xdist")

Tests = dict[str, list[dict[str, Any]]]


def environment() -> dict[str, Any]:
    """Python, the platform and the installed versions of the packages that shape the results (None: absent)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{name: _version(name) for name in DISTRIBUTIONS},
    }


def summary(tests: Tests) -> dict[str, int]:
    """Counts of tests with audits, audits and checks, and how many of them failed."""
    audits = [report for reports in tests.values() for report in reports]
    checks = [check for report in audits for check in report.get("checks", {}).values()]
    return {
        "tests": len(tests),
        "audits": len(audits),
        "failed_audits": sum(not report.get("passed", False) for report in audits),
        "checks": len(checks),
        "failed_checks": sum(check.get("verdict") == "failed" for check in checks),
        "inconclusive_checks": sum(check.get("verdict") == "inconclusive" for check in checks),
    }


def session_document(
    tests: Tests,
    baseline: dict[str, Any] | None = None,
    outcomes: dict[str, str] | None = None,
    messages: dict[str, str] | None = None,
    notes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The whole session: environment, counts, every recorded audit per test node id, pytest's outcome of every
    test run (``outcomes``) and the one-line failure of those that use the plugin (``messages``), the baseline
    comparison, and ``notes`` (node id → why its verdict is what it is, in words: the demo's). Outside pytest (the
    ``attnfaith`` command) ``outcomes`` and ``messages`` are empty."""
    return {
        "schema_version": SESSION_SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "summary": summary(tests),
        "tests": tests,
        "outcomes": dict(outcomes or {}),
        "messages": dict(messages or {}),
        "notes": dict(notes or {}),
        "baseline": baseline,
    }


def write_json(path: str | Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as indented JSON (strict: no NaN), creating parent folders."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return target


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
