"""Results of an audit: one ``CheckResult`` per check, and the ``Report`` that answers the questions.

These are plain data (numpy arrays, floats, dicts); ``Report.to_dict()`` is the JSON schema
documented in ``docs/json-schema.md`` (``SCHEMA_VERSION``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from pytest_attnfaith.formatting import fixed, plural

SCHEMA_VERSION = 2
HTML_RENDERERS: dict[str, Callable[[dict[str, Any], str], str]] = {}
"""Result objects do not render themselves: the report layer registers how a report's dict becomes HTML (name →
``render(report_dict, label)``), so that nothing here imports a layer above."""


class RaggedRows(Sequence[list[float]]):
    """Rows of different lengths (per instance, one value per real token) in one float32 array.

    About 4 bytes a value instead of a Python float's 32 in a list, so a report of many instances
    stays small; ``rows[i]`` is instance i's row as a list, and ``to_dict()`` writes lists."""

    def __init__(self, values: np.ndarray, lengths: np.ndarray) -> None:
        self.values = np.asarray(values, dtype=np.float32)
        self.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, index: int) -> list[float]: ...
    @overload
    def __getitem__(self, index: slice) -> list[list[float]]: ...
    def __getitem__(self, index: int | slice) -> list[float] | list[list[float]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = range(len(self))[index]
        return list(self.values[self.offsets[row] : self.offsets[row + 1]].tolist())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def tolist(self) -> list[list[float]]:
        return list(self)


@dataclass
class CheckResult:
    """The outcome of one check.

    ``statistic`` — a mean over instances that must reach ``threshold`` (``higher_is_better``: Kendall
    τ), or a fraction of flagged instances that must not exceed it — comes with a ``confidence``-level
    ``interval`` over the instances, and the ``verdict`` reads the interval: ``"passed"`` (all of it
    on the passing side of the threshold), ``"failed"`` (all of it on the failing side) or
    ``"inconclusive"`` (it straddles the threshold; ``instances_needed`` says about how many
    instances would decide it). ``per_instance`` holds one value per instance (NaN where undefined);
    ``flagged`` marks the instances that count against the model; ``note`` says why a verdict could
    not be reached, where that is the reason.
    """

    name: str
    statistic: float
    threshold: float
    interval: tuple[float, float]
    verdict: str
    per_instance: np.ndarray
    flagged: np.ndarray
    higher_is_better: bool
    statistic_name: str
    meaning: str
    confidence: float = 0.95
    interval_method: str = ""
    instances_needed: int | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """``verdict == "passed"``."""
        return self.verdict == "passed"

    @property
    def undefined(self) -> int:
        """How many instances have an undefined (NaN) value."""
        return int(np.isnan(self.per_instance).sum())

    def describe(self) -> str:
        """One line: the statistic with its interval against the threshold, and the verdict (and why)."""
        relation = ">=" if self.higher_is_better else "<="
        verdict = {"passed": "passed", "failed": "FAILED"}.get(self.verdict, "INCONCLUSIVE")
        line = (
            f"{self.name}: {self.statistic_name} = {fixed(self.statistic)} {format_interval(self.interval)} "
            f"(required {relation} {fixed(self.threshold)}) {verdict}"
        )
        return f"{line}: {self.reason()}" if self.verdict == "inconclusive" else line

    def reason(self) -> str:
        """Why an inconclusive check is inconclusive, in words."""
        if self.note:
            return self.note
        if self.instances_needed is not None:
            return f"about {plural(self.instances_needed, 'instance')} would decide it"
        return "the statistic sits on the threshold"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": bool(self.passed),
            "verdict": self.verdict,
            "statistic": _clean(self.statistic),
            "statistic_name": self.statistic_name,
            "interval": [_clean(self.interval[0]), _clean(self.interval[1])],
            "confidence": self.confidence,
            "interval_method": self.interval_method,
            "instances_needed": self.instances_needed,
            "reason": self.reason() if self.verdict == "inconclusive" else "",
            "threshold": _clean(self.threshold),
            "higher_is_better": self.higher_is_better,
            "meaning": self.meaning,
            "instances": int(self.per_instance.size),
            "flagged": int(self.flagged.sum()),
            "undefined": self.undefined,
            "per_instance": [_clean(v) for v in self.per_instance.tolist()],
            "flagged_instances": [int(i) for i in np.flatnonzero(self.flagged)],
            "details": _clean(self.details),
        }


ANSWERS = {"yes": True, "no": False}


def question_answer(verdicts: Sequence[str]) -> str:
    """A question's answer from the verdicts of its checks that ran: ``yes`` (all passed), ``no`` (one failed),
    ``inconclusive`` (else), ``not tested`` (none ran)."""
    if not verdicts:
        return "not tested"
    if "failed" in verdicts:
        return "no"
    return "yes" if all(verdict == "passed" for verdict in verdicts) else "inconclusive"


@dataclass
class Report:
    """The verdict of an audit: per-check results and the answer to each question.

    ``verdicts``: question → ``"yes"`` (every check of the question that ran passed), ``"no"`` (one
    failed), ``"inconclusive"`` or ``"not tested"``; ``answers`` the same as True / False / None.
    ``passed``: no required question answered no, nor inconclusive unless ``inconclusive="pass"``.
    ``kind``: ``"attention"`` (``af.audit``: used, agrees, unique) or ``"explanation"`` (``af.audit_explanation``:
    comprehensive, sufficient, agrees, of the scores of ``explainer``; ``instances["scores"]`` holds them).
    Per-token values (``instances["attention"]``, the ``importance`` of ``gradient`` and ``loo``)
    are ``RaggedRows``: ``rows[i]`` is instance i's list; ``to_dict()`` / ``to_json()`` write lists.
    """

    checks: dict[str, CheckResult]
    verdicts: dict[str, str]
    required: tuple[str, ...]
    passed: bool
    options: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    instances: dict[str, Any]
    per_head: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "attention"
    explainer: str | None = None

    @property
    def answers(self) -> dict[str, bool | None]:
        """Question → True (yes), False (no) or None (inconclusive, or not tested)."""
        return {question: ANSWERS.get(verdict) for question, verdict in self.verdicts.items()}

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [result for result in self.checks.values() if result.verdict == "failed"]

    @property
    def inconclusive_checks(self) -> list[CheckResult]:
        return [result for result in self.checks.values() if result.verdict == "inconclusive"]

    @property
    def failed_questions(self) -> list[str]:
        """The required questions answered no."""
        return [question for question in self.required if self.verdicts.get(question) == "no"]

    @property
    def inconclusive_questions(self) -> list[str]:
        """The required questions answered inconclusive."""
        return [question for question in self.required if self.verdicts.get(question) == "inconclusive"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "explainer": self.explainer,
            "passed": bool(self.passed),
            "verdicts": dict(self.verdicts),
            "answers": self.answers,
            "required": list(self.required),
            "checks": {name: result.to_dict() for name, result in self.checks.items()},
            "options": _clean(self.options),
            "model": _clean(self.model),
            "environment": dict(self.environment),
            "instances": _clean(self.instances),
            "per_head": _clean(self.per_head),
        }

    def to_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    def _repr_html_(self) -> str | None:
        """The audit as the HTML report shows it (checks, Jain & Wallace figures, heat maps): what a notebook displays.
        Rendered by the report layer (``report.html`` registers itself in ``HTML_RENDERERS``; importing
        ``pytest_attnfaith`` imports it); None (the text repr) if no renderer is registered."""
        render = HTML_RENDERERS.get("audit")
        return render(self.to_dict(), f"audit of {self.model.get('class', 'a model')}") if render else None

    def summary(self) -> str:
        """A few lines: the verdict, each question's answer, each check with its interval against its threshold."""
        subject = "attention" if self.explainer is None else f"explanation {self.explainer!r}"
        lines = [f"{subject} faithfulness: {'PASSED' if self.passed else 'FAILED'}"]
        for question, verdict in self.verdicts.items():
            need = " (required)" if question in self.required else ""
            lines.append(f"  {question}: {verdict.upper() if verdict in ('no', 'inconclusive') else verdict}{need}")
        lines.extend(f"  {result.describe()}" for result in self.checks.values())
        return "\n".join(lines)


def ranking_key(checks: Mapping[str, Any]) -> tuple[int, float]:
    """How an explanation ranks (higher first): the number of its checks that passed, then the sum of their
    statistics (ERASER's: the mean gain in p_ŷ over random orderings; NaN counts as −∞). ``checks``: name →
    ``CheckResult`` or its ``to_dict()``."""

    def field_of(check: Any, name: str) -> Any:
        return check[name] if isinstance(check, Mapping) else getattr(check, name)

    passed = sum(field_of(check, "verdict") == "passed" for check in checks.values())
    statistics = [field_of(check, "statistic") for check in checks.values()]
    total = sum(value if value is not None and math.isfinite(value) else -math.inf for value in statistics)
    return passed, total


def rank_explanations(checks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Explainer names, most faithful first by ``ranking_key`` (ties keep the given order)."""
    return sorted(checks, key=lambda name: ranking_key(checks[name]), reverse=True)


@dataclass
class Comparison:
    """Explanations tested on the same inputs (``af.compare_explanations``): ``reports`` (explainer name →
    ``Report``) and ``ranking`` (names, most faithful first: most checks passed, then the highest sum of
    their statistics — ``ranking_key``)."""

    reports: dict[str, Report]

    @property
    def ranking(self) -> list[str]:
        return rank_explanations({name: report.checks for name, report in self.reports.items()})

    @property
    def passing(self) -> list[str]:
        """The explainers whose audit passed, in ranking order."""
        return [name for name in self.ranking if self.reports[name].passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "explanation comparison",
            "ranking": self.ranking,
            "passing": self.passing,
            "reports": {name: report.to_dict() for name, report in self.reports.items()},
        }

    def to_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> str:
        """The ranking, one line per explainer: its verdict and each check's statistic with its interval."""
        lines = ["explanations, most faithful first:"]
        for rank, name in enumerate(self.ranking, start=1):
            report = self.reports[name]
            checks = "; ".join(
                f"{check.name} {fixed(check.statistic)} {format_interval(check.interval)} {check.verdict}"
                for check in report.checks.values()
            )
            lines.append(f"  {rank}. {name}: {'passed' if report.passed else 'FAILED'} ({checks})")
        return "\n".join(lines)


def format_interval(interval: tuple[float | None, float | None] | list[float | None]) -> str:
    """``[0.123, 0.456]``, or ``[no interval]`` where it is undefined."""
    low, high = interval
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "[no interval]"
    return f"[{low:.3f}, {high:.3f}]"


def _clean(value: Any) -> Any:
    """JSON-ready copy: numpy to Python, NaN and inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, RaggedRows)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    return value
