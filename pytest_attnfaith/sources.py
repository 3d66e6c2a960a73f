"""Where a sequential audit draws its instances from: batches in order, within a budget of instances.

A source is one of:

* a **mapping** (a tokenizer's output): read in order, ``batch_size`` rows at a time (every value with as many rows
  as ``input_ids`` is sliced; anything else is passed with each batch);
* an **iterable of mappings**: each one a batch as it comes (a ``DataLoader``, a generator);
* a **callable** ``draw(n, seed) -> mapping`` of ``n`` fresh rows (``seed``: the audit's seed plus the batch's index);
* a **Hypothesis strategy** of mappings: examples drawn with a seeded random (``hypothesis.seed``), each a batch.

Every batch is cut so that the instances drawn never exceed ``max_instances``. A callable or a strategy never ends,
so it needs ``max_instances``. No torch here: batches are sliced with ``value[start:stop]``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pytest_attnfaith.errors import AttnFaithError

EXPECTED = (
    "expected a mapping with 'input_ids' (read batch_size rows at a time), an iterable of such mappings, "
    "a callable draw(n, seed) -> mapping or a Hypothesis strategy of mappings"
)
STRATEGY_CHUNK = 16
"""Examples a strategy source draws per seeded run of Hypothesis."""


def batches(source: Any, batch_size: int, max_instances: int | None, seed: int) -> Iterator[Mapping[str, Any]]:
    """The batches of ``source``, in order, cut so that their rows add up to at most ``max_instances``."""
    drawn = _batches(source, batch_size, max_instances, seed)
    used = 0
    for batch in drawn:
        size = rows_of(batch)
        if max_instances is not None and used + size > max_instances:
            batch, size = sliced(batch, 0, max_instances - used), max_instances - used
        if size > 0:
            yield batch
        used += size
        if max_instances is not None and used >= max_instances:
            return


def _batches(source: Any, batch_size: int, max_instances: int | None, seed: int) -> Iterator[Mapping[str, Any]]:
    if isinstance(source, Mapping):
        return _rows_in_order(source, batch_size)
    strategy = _is_strategy(source)
    if (strategy or callable(source)) and max_instances is None:
        what = "a Hypothesis strategy" if strategy else "a draw(n, seed) callable"
        raise AttnFaithError(f"the source is {what}, which never ends; give max_instances=N, the most instances to draw")
    if strategy:
        return _examples(source, seed)
    if callable(source):
        return _draws(source, batch_size, seed)
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        return iter(source)
    raise AttnFaithError(f"the source is a {type(source).__name__}; {EXPECTED}")


def rows_of(batch: Any) -> int:
    """How many instances a drawn batch holds (its ``input_ids`` rows)."""
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise AttnFaithError(f"the source gave a {type(batch).__name__} without 'input_ids'; {EXPECTED}")
    return len(batch["input_ids"])


def sliced(inputs: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Rows ``start:stop`` of every value with as many rows as ``input_ids``; other values as they are."""
    count = rows_of(inputs)
    return {key: value[start:stop] if _has_rows(value, count) else value for key, value in inputs.items()}


def _has_rows(value: Any, count: int) -> bool:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return len(shape) >= 1 and shape[0] == count
    return isinstance(value, list) and len(value) == count


def _rows_in_order(inputs: Mapping[str, Any], batch_size: int) -> Iterator[dict[str, Any]]:
    count = rows_of(inputs)
    for start in range(0, count, batch_size):
        yield sliced(inputs, start, min(start + batch_size, count))


def _draws(draw: Callable[[int, int], Mapping[str, Any]], batch_size: int, seed: int) -> Iterator[Mapping[str, Any]]:
    index = 0
    while True:
        batch = draw(batch_size, seed + index)
        if rows_of(batch) == 0:
            return
        yield batch
        index += 1


def _is_strategy(source: Any) -> bool:
    strategies = sys.modules.get("hypothesis.strategies")
    return strategies is not None and isinstance(source, strategies.SearchStrategy)


def _examples(strategy: Any, seed: int) -> Iterator[Mapping[str, Any]]:
    """Examples of ``strategy``, ``STRATEGY_CHUNK`` per seeded Hypothesis run (seed, seed + 1, ...), no database."""
    run = 0
    while True:
        drawn: list[Mapping[str, Any]] = []
        collect = _collector(strategy, seed + run, drawn)
        collect()
        if not drawn:
            return
        yield from drawn
        run += 1


def _collector(strategy: Any, seed: int, drawn: list[Mapping[str, Any]]) -> Callable[[], None]:
    """A Hypothesis test that appends ``STRATEGY_CHUNK`` examples of ``strategy`` (run with ``seed``) to ``drawn``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded

    @seeded(seed)
    @settings(
        max_examples=STRATEGY_CHUNK,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: Mapping[str, Any]) -> None:
        drawn.append(example)

    return collect  # type: ignore[no-any-return]
