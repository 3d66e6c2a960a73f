"""Per-instance values cached by the content of the instance's inputs (bounded, in reused buffers).

Counterfactual passes repeat and reorder the audited instances (permutation, uniform, erasure, the
adversarial search); what the edited attention cannot change — a ``wrap()`` model's upstream
values, a transformer's hidden states entering the edited layer — is computed once per instance
and found again by a hash of the instance's input rows, then an exact comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

PRIME = 2_147_483_647


def per_instance(kwargs: dict[str, Any]) -> dict[str, Tensor]:
    """The model call's per-instance tensors (one row per instance), by argument name."""
    return {name: value for name, value in kwargs.items() if isinstance(value, Tensor) and value.dim() >= 1}


def row_keys(tensors: list[Tensor]) -> Tensor:
    """A hash of each row's content (exact integers, no rounding): equal rows, equal keys."""
    parts = []
    for t in tensors:
        flat = t.reshape(t.shape[0], -1)
        ints = flat.double().view(torch.int64) if flat.is_floating_point() else flat.long()
        parts.append(ints.remainder(PRIME))
    flat = torch.cat(parts, dim=1)
    weights = torch.randint(1, 4096, (flat.shape[1],), generator=torch.Generator().manual_seed(flat.shape[1])).to(flat.device)
    return (flat * weights).sum(dim=1)


def row_keys_of(kwargs: dict[str, Any]) -> Tensor:
    """``row_keys`` of a model call's per-instance tensors, in the order ``RowCache`` uses."""
    inputs = per_instance(kwargs)
    return row_keys([inputs[name] for name in sorted(inputs)])


class RowCache:
    """Values of at most ``capacity`` instances, by name; a full cache starts afresh in the same buffers."""

    KEY = "__key__"

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.stored: dict[str, Tensor] = {}
        self.clear()

    def clear(self) -> None:
        """Forget every row but keep the buffers."""
        self.count = 0
        self.order = torch.zeros(0, dtype=torch.long)

    def slots(self, inputs: dict[str, Tensor], compute: Callable[[Tensor], dict[str, Tensor] | None]) -> Tensor | None:
        """Per row of ``inputs`` (per-instance tensors by name), its slot in ``stored``.

        Rows not cached yet are computed by ``compute(picked)``, ``picked`` indexing one row of each
        distinct missing instance, and stored. None when ``compute`` gives up or two different rows
        share a key (the caller then runs the full forward)."""
        keys = row_keys([inputs[name] for name in sorted(inputs)])
        slots = self.find(inputs, keys)
        missing = slots < 0
        if not bool(missing.any()):
            return slots
        if self.count + len(torch.unique(keys[missing])) > self.capacity:
            self.clear()
            slots, missing = torch.full_like(slots, -1), torch.ones_like(missing)
        unique, inverse = torch.unique(keys[missing], return_inverse=True)
        first = torch.full((len(unique),), len(inverse), dtype=torch.long, device=keys.device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(inverse), device=keys.device), reduce="amin")
        where = missing.nonzero().flatten()
        picked = where[first]
        for value in inputs.values():
            chosen = value[picked.to(value.device)][inverse.to(value.device)]
            if not bool((chosen == value[where.to(value.device)]).reshape(len(where), -1).all()):
                return None
        values = compute(picked)
        if values is None:
            return None
        distinct = {name: value[picked.to(value.device)] for name, value in inputs.items()}
        slots[missing] = self.add({**distinct, **values}, unique)[inverse]
        return slots

    def find(self, inputs: dict[str, Tensor], keys: Tensor) -> Tensor:
        """Per row, its slot in the cache (-1 where absent)."""
        if self.count == 0 or any(inputs[name].shape[1:] != self.stored[name].shape[1:] for name in inputs):
            return torch.full_like(keys, -1)
        ordered = self.stored[self.KEY][self.order]
        position = torch.searchsorted(ordered, keys).clamp(max=self.count - 1)
        slots = torch.where(ordered[position] == keys, self.order[position], -1)
        safe = slots.clamp(min=0)
        for name, value in inputs.items():
            same = (self.stored[name][safe.to(value.device)] == value).reshape(len(keys), -1).all(dim=1)
            slots = torch.where(same.to(slots.device), slots, -1)
        return slots

    def add(self, values: dict[str, Tensor], keys: Tensor) -> Tensor:
        """Store rows (inputs and computed values by name) in buffers that double as they fill; returns their slots."""
        values = {**values, self.KEY: keys}
        if any(name in self.stored and self.stored[name][0].shape != v[0].shape for name, v in values.items()):
            self.stored = {}  # rows of another shape: start afresh
            self.clear()
        needed = self.count + len(keys)
        for name, value in values.items():
            store = self.stored.get(name)
            if store is None or store.shape[0] < needed:
                grown = value.new_empty((max(needed, 2 * self.count, 16), *value.shape[1:]))
                if store is not None:
                    grown[: self.count] = store[: self.count]
                self.stored[name] = store = grown
            store[self.count : needed] = value
        slots = torch.arange(self.count, needed, device=keys.device)
        self.count = needed
        self.order = self.stored[self.KEY][:needed].argsort()
        return slots
