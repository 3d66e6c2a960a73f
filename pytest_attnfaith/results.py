"""Results of an audit: one ``CheckResult`` per check, and the ``Report`` that answers the questions.

These are plain data (numpy arrays, floats, dicts); ``Report.to_dict()`` is the JSON schema
documented in ``docs/json-schema.md`` (``SCHEMA_VERSION``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

SCHEMA_VERSION = 1


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

    ``statistic`` is compared with ``threshold``: a mean Kendall τ that must reach the threshold
    (``higher_is_better``), or a fraction of flagged instances that must not exceed it.
    ``per_instance`` holds one value per instance (NaN where undefined); ``flagged`` marks the
    instances that count against the model.
    """

    name: str
    passed: bool
    statistic: float
    threshold: float
    per_instance: np.ndarray
    flagged: np.ndarray
    higher_is_better: bool
    statistic_name: str
    meaning: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def undefined(self) -> int:
        """How many instances have an undefined (NaN) value."""
        return int(np.isnan(self.per_instance).sum())

    def describe(self) -> str:
        """One line: the statistic against its threshold and the verdict."""
        relation = ">=" if self.higher_is_better else "<="
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"{self.name}: {self.statistic_name} = {_fmt(self.statistic)} (required {relation} {_fmt(self.threshold)}) {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": bool(self.passed),
            "statistic": _clean(self.statistic),
            "statistic_name": self.statistic_name,
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


@dataclass
class Report:
    """The verdict of an audit: per-check results and the answers to used / agrees / unique.

    Per-token values (``instances["attention"]``, the ``importance`` of ``gradient`` and ``loo``)
    are ``RaggedRows``: ``rows[i]`` is instance i's list; ``to_dict()`` / ``to_json()`` write lists.
    """

    checks: dict[str, CheckResult]
    answers: dict[str, bool | None]
    required: tuple[str, ...]
    passed: bool
    options: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    instances: dict[str, Any]
    per_head: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [result for result in self.checks.values() if not result.passed]

    @property
    def failed_questions(self) -> list[str]:
        return [question for question in self.required if self.answers.get(question) is False]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "passed": bool(self.passed),
            "answers": dict(self.answers),
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

    def summary(self) -> str:
        """A few lines: the verdict, each question's answer, each check against its threshold."""
        lines = [f"attention faithfulness: {'PASSED' if self.passed else 'FAILED'}"]
        for question, answer in self.answers.items():
            mark = {True: "yes", False: "NO", None: "not tested"}[answer]
            need = " (required)" if question in self.required else ""
            lines.append(f"  {question}: {mark}{need}")
        lines.extend(f"  {result.describe()}" for result in self.checks.values())
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


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
