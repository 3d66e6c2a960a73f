"""Baselines: store each (test, audit, check) statistic with its interval, and find the ones that regressed since.

A statistic regresses when its current confidence interval lies entirely on the worse side of the
baseline's statistic (moved by ``tolerance``, absolute, in the statistic's own units; default 0):
a τ that must be high has its whole interval below ``baseline - tolerance``, a flagged fraction
that must be low has its whole interval above ``baseline + tolerance``, or a defined statistic
becomes undefined. Sampling noise — a current estimate whose interval still reaches the baseline —
is not a regression. Tests and checks absent from either side are listed, never failed. Baselines
of schema version 1 (statistics without intervals) are read too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_attnfaith.report.schema import Tests, environment, write_json
from pytest_attnfaith.results import format_interval

BASELINE_KIND = "pytest-attnfaith baseline"
BASELINE_SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


class BaselineError(ValueError):
    """A baseline file that cannot be read, with the reason."""


@dataclass(frozen=True)
class Regression:
    test: str
    audit: int
    check: str
    baseline: float
    current: float | None
    higher_is_better: bool
    interval: tuple[float | None, float | None] = (None, None)

    def regressed(self, tolerance: float) -> bool:
        """Whether the current interval lies entirely beyond the baseline (moved by ``tolerance``) against the model,
        or the statistic became undefined."""
        low, high = self.interval
        if self.current is None:
            return True
        if self.higher_is_better:
            return (high if high is not None else self.current) < self.baseline - tolerance
        return (low if low is not None else self.current) > self.baseline + tolerance

    def describe(self) -> str:
        where = self.test if self.audit == 0 else f"{self.test} (audit {self.audit + 1})"
        now = "undefined" if self.current is None else f"{self.current:.3f} {format_interval(self.interval)}"
        direction = "below" if self.higher_is_better else "above"
        return f"{where} {self.check}: {self.baseline:.3f} -> {now} (the whole interval {direction} the baseline)"


def baseline_document(tests: Tests) -> dict[str, Any]:
    """Each test's audits as ``{check: {statistic, threshold, higher_is_better, passed}}``."""
    return {
        "kind": BASELINE_KIND,
        "schema_version": BASELINE_SCHEMA_VERSION,
        "environment": environment(),
        "tests": {nodeid: [_statistics(report) for report in reports] for nodeid, reports in tests.items()},
    }


def save_baseline(path: str | Path, tests: Tests) -> Path:
    return write_json(path, baseline_document(tests))


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a baseline written by ``--attnfaith-save-baseline``; ``BaselineError`` says what is wrong."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise BaselineError(f"cannot read baseline {path}: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise BaselineError(f"baseline {path} is not JSON: {err}") from None
    if not isinstance(document, dict) or document.get("kind") != BASELINE_KIND:
        raise BaselineError(f"{path} is not a pytest-attnfaith baseline (write one with --attnfaith-save-baseline)")
    if document.get("schema_version") not in READABLE_VERSIONS:
        raise BaselineError(
            f"baseline {path} has schema_version {document.get('schema_version')!r}; expected one of {READABLE_VERSIONS}"
        )
    return document


def compare(tests: Tests, baseline: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """Compare the recorded audits with ``baseline``: the regressions, and what could not be compared."""
    current = baseline_document(tests)["tests"]
    stored = baseline["tests"]
    regressions, compared = [], 0
    for nodeid, audits in current.items():
        before = stored.get(nodeid, [])
        for index, checks in enumerate(audits):
            for name, now in checks.items():
                then = before[index].get(name) if index < len(before) else None
                if then is None or then.get("statistic") is None:
                    continue
                compared += 1
                interval = (now["interval"][0], now["interval"][1]) if now.get("interval") else (None, None)
                regression = Regression(
                    nodeid, index, name, then["statistic"], now["statistic"], now["higher_is_better"], interval
                )
                if regression.regressed(tolerance):
                    regressions.append(regression)
    return {
        "tolerance": tolerance,
        "compared": compared,
        "regressions": [asdict(regression) for regression in regressions],
        "new": sorted(set(current) - set(stored)),
        "missing": sorted(set(stored) - set(current)),
        "passed": not regressions,
    }


def regressions_of(comparison: dict[str, Any]) -> list[Regression]:
    return [
        Regression(**{**item, "interval": tuple(item.get("interval") or (None, None))})
        for item in comparison.get("regressions", [])
    ]


def _statistics(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    keys = ("statistic", "interval", "threshold", "higher_is_better", "verdict", "passed")
    return {name: {key: check.get(key) for key in keys} for name, check in report.get("checks", {}).items()}
