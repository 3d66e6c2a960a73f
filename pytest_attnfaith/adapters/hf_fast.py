"""Counterfactual passes from the chosen layer up: the layers below it are not run again.

An edit of layer c's attention cannot change what enters layer c, so the hidden states entering
it are cached per instance on the reference pass (keyed by the instance's input tensors), and a
counterfactual pass whose instances are all cached runs the embeddings, then layers c, c+1, ...
only: the model's list of layers is swapped for its tail during the call, and a pre-hook on
layer c substitutes the cached hidden states for its input. Everything is undone on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class Stack:
    """The model's ``ModuleList`` of layers: where it hangs, and its layers in call order."""

    parent: nn.Module
    attribute: str
    blocks: nn.ModuleList


def find_stack(model: nn.Module, attention_modules: Sequence[nn.Module]) -> Stack | None:
    """The ``ModuleList`` whose k-th element holds the k-th attention to run (None if there is none)."""
    for name, sub in model.named_modules():
        if not isinstance(sub, nn.ModuleList) or len(sub) != len(attention_modules) or not name:
            continue
        if all(any(m is attention for m in block.modules()) for block, attention in zip(sub, attention_modules, strict=True)):
            parent_name, _, attribute = name.rpartition(".")
            return Stack(model.get_submodule(parent_name), attribute, sub)
    return None


def row_keys(kwargs: Mapping[str, Any], size: int) -> list[bytes]:
    """One key per instance from every per-instance tensor it is called with."""
    tensors = [value.detach().cpu() for _, value in sorted(kwargs.items()) if isinstance(value, Tensor) and value.dim() >= 1]
    tensors = [t for t in tensors if t.shape[0] == size]
    return [b"|".join(t[i].numpy().tobytes() + str(tuple(t[i].shape)).encode() for t in tensors) for i in range(size)]


class HiddenCache:
    """Hidden states entering layer ``layer`` of the reference instances."""

    def __init__(self, layer: int, keys: list[bytes], hidden: Tensor) -> None:
        self.layer = layer
        self.index = {key: row for row, key in enumerate(keys)}
        self.hidden = hidden

    def rows(self, keys: list[bytes]) -> Tensor | None:
        """The cached hidden states for these instances, or None unless every one is cached."""
        found = [self.index.get(key) for key in keys]
        if any(row is None for row in found):
            return None
        return self.hidden[torch.tensor(found, device=self.hidden.device)]


def _hidden_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor | None:
    value = args[0] if args else kwargs.get("hidden_states")
    return value if isinstance(value, Tensor) else None


@contextlib.contextmanager
def recording(stack: Stack, layer: int, into: list[Tensor]) -> Iterator[None]:
    """Append the hidden states entering ``layer`` to ``into`` while the block runs."""

    def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = _hidden_argument(args, kwargs)
        if hidden is not None:
            into.append(hidden.detach())

    handle = stack.blocks[layer].register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def from_layer(stack: Stack, layer: int, hidden: Tensor) -> Iterator[None]:
    """Run only layers ``layer``.. of the stack, ``layer`` receiving ``hidden`` as its input."""

    def substitute(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    handle = stack.blocks[layer].register_forward_pre_hook(substitute, with_kwargs=True)
    tail = nn.ModuleList(list(stack.blocks)[layer:])
    try:
        setattr(stack.parent, stack.attribute, tail)
        yield
    finally:
        setattr(stack.parent, stack.attribute, stack.blocks)
        handle.remove()
