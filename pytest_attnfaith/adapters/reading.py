"""``Reading``: what an adapter needs to know of an audit's options, frozen for one session.

The adapters never see the audit's options bag (``pytest_attnfaith.options``, a layer above them): the session
hands them this view — which layer, head and query rows are read and replaced, how the read rows are
aggregated, what the output is (``targets``), the chunk size and the device. ``Reading.of(options)`` takes the
fields by name from any object that has them (the audit's ``Options``); the defaults equal ``Options()``'s
(a test holds them equal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reading:
    """The options an adapter reads: see ``docs/options.md`` for each."""

    layer: int = -1
    head: str | int = "mean"
    aggregation: str = "attention"
    query: str | int = "auto"
    replace: str = "head"
    targets: tuple[int, ...] | tuple[str, ...] | None = None
    mask_token_id: int | None = None
    batch_size: int = 64
    device: str | None = None

    @classmethod
    def of(cls, options: Any) -> Reading:
        """The reading of ``options`` (a ``Reading`` is returned as it is)."""
        if isinstance(options, Reading):
            return options
        return cls(**{field.name: getattr(options, field.name) for field in dataclasses.fields(cls)})
