"""Where finished audits go: the pytest plugin subscribes to record them under the running test.

Subscribers nest: a finished audit goes to the most recent one only. A pytest session run inside a test
(``pytester.runpytest``, in-process) subscribes its own recorder, and its audits belong to it, not also to the
outer session's test that runs it (0.2 recorded them twice: the project's own suite listed each expected
failure as "FAILED … pytest: passed"). Imports nothing heavy, so the plugin can subscribe without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_listeners: list[Callable[[Any], None]] = []


def subscribe(listener: Callable[[Any], None]) -> None:
    _listeners.append(listener)


def unsubscribe(listener: Callable[[Any], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def publish(report: Any) -> None:
    """Hand a finished ``Report`` to the innermost subscriber (none: nobody records it)."""
    if _listeners:
        _listeners[-1](report)
