"""The worst instances of a failing check and their token tables.

Shared by the assertion's failure message and the pytest plugin's reports. Works on plain
sequences, so it serves a ``Report`` and its JSON form alike, and imports nothing heavy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

TOKEN_WIDTH = 12


def defined(value: float | None) -> bool:
    """Whether a per-instance value is defined (not None, not NaN)."""
    return value is not None and not math.isnan(value)


def flag_count(instances: int, flagged: int, undefined: int = 0) -> str:
    """``"N instances, k flagged (x%)"``, with the undefined count when there are any."""
    extra = f", {undefined} undefined" if undefined else ""
    return f"{instances} instances, {flagged} flagged ({100.0 * flagged / max(instances, 1):.0f}%){extra}"


def answered(verdicts: Iterable[tuple[str, str]]) -> str:
    """``"used, unique answered no; agrees answered inconclusive"`` from (question, verdict) pairs, in order."""
    groups: dict[str, list[str]] = {}
    for question, verdict in verdicts:
        groups.setdefault(verdict, []).append(question)
    return "; ".join(f"{', '.join(questions)} answered {verdict}" for verdict, questions in groups.items())


def worst_indices(check: str, values: Sequence[float | None], flagged: Sequence[int], count: int) -> list[int]:
    """The flagged instances that count most against the model, worst first.

    The adversarial check's worst instance has the highest max JSD, the sufficiency check's the highest
    sufficiency; every other check's has the lowest value (τ, TVD, TVD margin or comprehensiveness). Ties
    keep the instance order.
    """
    candidates = [int(i) for i in flagged if defined(values[i])]
    sign = -1.0 if check in ("adversarial", "sufficiency") else 1.0
    return sorted(candidates, key=lambda i: (sign * (values[i] or 0.0), i))[:count]


def token_table(
    tokens: Sequence[str], rows: Mapping[str, Sequence[float | None]], width: int = 100, indent: str = ""
) -> list[str]:
    """Tokens as columns and one row of values per name (attention, importances), wrapped at ``width``."""
    label = max([len("token"), *(len(name) for name in rows)])
    columns = []
    for position, token in enumerate(tokens):
        text = token if len(token) <= TOKEN_WIDTH else token[: TOKEN_WIDTH - 1] + "…"
        cells = [_number(values[position] if position < len(values) else None) for values in rows.values()]
        columns.append([text, *cells])
    lines: list[str] = []
    chunk: list[list[str]] = []
    used = len(indent) + label
    for column in columns:
        size = max(len(cell) for cell in column) + 2
        if chunk and used + size > width:
            lines.extend(_render(chunk, ["token", *rows], label, indent))
            chunk, used = [], len(indent) + label
        chunk.append(column)
        used += size
    if chunk:
        lines.extend(_render(chunk, ["token", *rows], label, indent))
    return lines


def _render(chunk: list[list[str]], names: list[str], label: int, indent: str) -> list[str]:
    sizes = [max(len(cell) for cell in column) for column in chunk]
    return [
        indent
        + names[row].ljust(label)
        + "".join("  " + column[row].rjust(size) for column, size in zip(chunk, sizes, strict=True))
        for row in range(len(names))
    ]


def _number(value: float | None) -> str:
    return f"{value:.3f}" if defined(value) else "-"


def instance_rows(
    index: int, attention: Sequence[Sequence[float]], importances: Mapping[str, Sequence[Sequence[float]] | None]
) -> dict[str, Sequence[float | None]]:
    """The rows of one instance's token table: its attention, then each available importance."""
    rows: dict[str, Sequence[float | None]] = {"attention": attention[index] if index < len(attention) else []}
    rows.update({name: values[index] for name, values in importances.items() if values and index < len(values)})
    return rows


def worst_by_instance(checks: Iterable[tuple[str, Sequence[float | None], Sequence[int]]], count: int) -> dict[int, list[str]]:
    """The worst ``count`` instances of each failing check ``(name, values, flagged)``, each instance once.

    Maps an instance to the checks it is worst for, with its value, e.g. ``["permutation (0.001)"]``.
    """
    worst: dict[int, list[str]] = {}
    for name, values, flagged in checks:
        for index in worst_indices(name, values, flagged, count):
            worst.setdefault(index, []).append(f"{name} ({values[index]:.3f})")
    return worst
