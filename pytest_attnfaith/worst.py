"""The worst instances of a failing check and their token tables.

Shared by the assertion's failure message and the pytest plugin's reports. Works on plain
sequences, so it serves a ``Report`` and its JSON form alike, and imports nothing heavy.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Iterable, Mapping, Sequence

from pytest_attnfaith.formatting import compact, plural, printable

TOKEN_WIDTH = 12
LONG_INPUT = 24  # tokens; a longer input's table shows its largest values and their neighbours
TOP = 3
WINDOW = 2


def defined(value: float | None) -> bool:
    """Whether a per-instance value is defined (not None, not NaN)."""
    return value is not None and not math.isnan(value)


def flag_count(instances: int, flagged: int, undefined: int = 0) -> str:
    """``"N instances, k flagged (x%)"``, with the undefined count when there are any."""
    extra = f", {undefined} undefined" if undefined else ""
    return f"{plural(instances, 'instance')}, {flagged} flagged ({100.0 * flagged / max(instances, 1):.0f}%){extra}"


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


def shown_positions(rows: Mapping[str, Sequence[float | None]], length: int) -> list[int | range]:
    """The columns of a token table: every position of an input of up to ``LONG_INPUT`` tokens; of a longer one,
    the ``TOP`` largest values of each row (by magnitude, among those above the row's median: ties with the mass
    of a row show nothing) with ``WINDOW`` neighbours either side, and a ``range`` for each run of positions left
    out (the first ``LONG_INPUT`` positions where no value stands out)."""
    if length <= LONG_INPUT:
        return list(range(length))
    keep: set[int] = set()
    for values in rows.values():
        sizes = {p: abs(values[p] or 0.0) for p in range(min(length, len(values))) if defined(values[p])}
        middle = statistics.median(sizes.values()) if sizes else 0.0
        ranked = sorted((p for p, size in sizes.items() if size > middle), key=lambda p: -sizes[p])
        for position in ranked[:TOP]:
            keep.update(range(max(0, position - WINDOW), min(length, position + WINDOW + 1)))
    columns: list[int | range] = []
    start = 0
    for position in sorted(keep or range(LONG_INPUT)):
        if position > start:
            columns.append(range(start, position))
        columns.append(position)
        start = position + 1
    if start < length:
        columns.append(range(start, length))
    return columns


def shown_note(length: int) -> str:
    """What a token table of a long input shows, in words (empty for a short one)."""
    if length <= LONG_INPUT:
        return ""
    return (
        f"{length} tokens: the {TOP} largest values of each row (above its median), {WINDOW} neighbours either side; "
        "… marks tokens left out"
    )


def token_table(
    tokens: Sequence[str], rows: Mapping[str, Sequence[float | None]], width: int = 100, indent: str = ""
) -> list[str]:
    """Tokens as columns and one row of values per name (attention, importances), wrapped at ``width``.

    Long inputs show only their largest values and the tokens around them (``shown_positions``), so a
    table stays a few lines long whatever the input's length."""
    label = max([len("token"), *(len(name) for name in rows)])
    columns: list[list[str]] = []
    for position in shown_positions(rows, len(tokens)):
        if isinstance(position, range):
            columns.append(["…", *("" for _ in rows)])
            continue
        token = printable(tokens[position])
        text = token if len(token) <= TOKEN_WIDTH else token[: TOKEN_WIDTH - 1] + "…"
        columns.append([text, *(compact(values[position] if position < len(values) else None) for values in rows.values())])
    lines = [indent + line for line in textwrap.wrap(shown_note(len(tokens)), max(width - len(indent), 40))]
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
        (
            indent
            + names[row].ljust(label)
            + "".join("  " + column[row].rjust(size) for column, size in zip(chunk, sizes, strict=True))
        ).rstrip()
        for row in range(len(names))
    ]


def instance_rows(
    index: int,
    attention: Sequence[Sequence[float]],
    importances: Mapping[str, Sequence[Sequence[float]] | None],
    label: str = "attention",
) -> dict[str, Sequence[float | None]]:
    """The rows of one instance's token table: its attention (or the scores named ``label``), then each available
    importance."""
    rows: dict[str, Sequence[float | None]] = {label: attention[index] if index < len(attention) else []}
    rows.update({name: values[index] for name, values in importances.items() if values and index < len(values)})
    return rows


def worst_by_instance(
    checks: Iterable[tuple[str, Sequence[float | None], Sequence[int]]], count: int, total: int | None = None
) -> dict[int, list[str]]:
    """The worst ``count`` instances of each failing check ``(name, values, flagged)``, each instance once; with
    ``total``, at most that many instances: each check's worst first, then each check's second, and so on.

    Maps an instance to the checks it is worst for, with its value, e.g. ``["permutation (0.001)"]``.
    """
    ranked = [(name, values, worst_indices(name, values, flagged, count)) for name, values, flagged in checks]
    worst: dict[int, list[str]] = {}
    for depth in range(count):
        for name, values, indices in ranked:
            if depth >= len(indices) or (indices[depth] not in worst and total is not None and len(worst) >= total):
                continue
            worst.setdefault(indices[depth], []).append(f"{name} ({compact(values[indices[depth]])})")
    return worst
