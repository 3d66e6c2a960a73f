"""Which models the package adapts without ``wrap``: recognised without importing torch or transformers."""

from __future__ import annotations

from typing import Any


def is_huggingface_model(model: Any) -> bool:
    """Whether ``model`` is a transformers ``PreTrainedModel`` (by its classes' names and modules)."""
    return any(cls.__name__ == "PreTrainedModel" and cls.__module__.startswith("transformers") for cls in type(model).__mro__)
