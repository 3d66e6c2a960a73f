"""Where finished audits go: the pytest plugin subscribes to record them under the running test.

Imports nothing heavy, so the plugin can subscribe without importing torch.
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
    """Hand a finished ``Report`` to every subscriber."""
    for listener in list(_listeners):
        listener(report)
