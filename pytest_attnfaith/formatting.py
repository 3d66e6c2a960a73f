"""Words and numbers as every report prints them: plurals, compact values, printable token text.

Imports nothing heavy (the pytest plugin's reports use it without torch).
"""

from __future__ import annotations

import math


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``"1 instance"``, ``"3 instances"`` (``many``: the plural where it is not ``noun + "s"``)."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"


def compact(value: float | None) -> str:
    """A value with two significant digits, in at most six characters: ``0.98``, ``0.012``, ``3.1e-5``, ``0``.

    Exponent notation below 0.01 (and from 1000), so that a small importance never reads ``0.00``;
    ``-`` where undefined."""
    if value is None or math.isnan(value):
        return "-"
    if value == 0 or math.isinf(value):
        return f"{value:g}"
    size = abs(value)
    if 0.1 <= size < 1000:
        return f"{value:.2f}"
    if 0.01 <= size < 0.1:
        return f"{value:.3f}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fixed(value: float | None, digits: int = 3) -> str:
    """A value with ``digits`` decimals (``0.123``), ``nan`` where undefined (None or NaN): every table's number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.{digits}f}"


def printable(text: str) -> str:
    """``text`` with control and format characters (ANSI escapes, bidi overrides, newlines) written as escapes."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
