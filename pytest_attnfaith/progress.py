"""Progress display for long audits: one step per check, as a tqdm bar when tqdm is installed,
else one plain line per check on stderr.

Silent unless asked: ``audit(..., progress=True)`` (or the marker / ini option of the same name
under pytest); the ``attnfaith`` command asks for it when stderr is a terminal. The display
advances between checks only, never inside a check's loops.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO


class _PlainLines:
    """The fallback: ``attnfaith [2/6] loo (1.3 s)`` per check on ``stream``."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.start = time.perf_counter()

    def begin(self, label: str) -> None:
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"attnfaith [{self.done + 1}/{self.total}] {label} ({elapsed:.1f} s)\n")
        self.stream.flush()

    def end(self) -> None:
        self.done += 1

    def close(self) -> None:
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"attnfaith: {self.done}/{self.total} checks in {elapsed:.1f} s\n")
        self.stream.flush()


class _Bar:
    """A tqdm bar over the checks, the running check's name as its postfix."""

    def __init__(self, total: int, stream: TextIO, tqdm: Any) -> None:
        self.bar = tqdm(total=total, desc="attnfaith", unit="check", file=stream, leave=False, dynamic_ncols=True)

    def begin(self, label: str) -> None:
        self.bar.set_postfix_str(label)

    def end(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def display(total: int, stream: TextIO | None = None) -> _Bar | _PlainLines:
    """A tqdm bar if tqdm can be imported, else plain lines; both on ``stream`` (default: stderr)."""
    stream = stream if stream is not None else sys.stderr
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainLines(total, stream)
    return _Bar(total, stream, tqdm)


def track(names: Sequence[str], enabled: bool, stream: TextIO | None = None) -> Iterator[str]:
    """Yield ``names`` one by one, showing progress while the caller works on each when ``enabled``."""
    if not enabled:
        yield from names
        return
    shown = display(len(names), stream)
    try:
        for name in names:
            shown.begin(name)
            yield name
            shown.end()
    finally:
        shown.close()
