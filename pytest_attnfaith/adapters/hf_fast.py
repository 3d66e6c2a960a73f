"""Counterfactual passes from the chosen layer up: the layers below it are not run again.

An edit of layer c's attention cannot change what enters layer c, so the hidden states entering
it are cached per instance (``RowCache``, keyed by the instance's input rows; an instance not
cached yet runs the layers below c once, stopped at c's input), and a counterfactual pass runs
the embeddings, then layers c, c+1, ... only: the model's list of layers is swapped for its tail
during the call, and a pre-hook on layer c substitutes the cached hidden states for its input.
Everything is undone on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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


class Entered(Exception):  # noqa: N818 (control flow, not an error)
    """Raised by ``stopping`` once the hidden states entering the layer are known: the rest is not run."""

    def __init__(self, hidden: Tensor) -> None:
        super().__init__("hidden states recorded")
        self.hidden = hidden


@contextlib.contextmanager
def stopping(stack: Stack, layer: int) -> Iterator[None]:
    """Raise ``Entered`` with the hidden states entering ``layer``, so that the layers from it on never run."""

    def stop(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = _hidden_argument(args, kwargs)
        if hidden is not None:
            raise Entered(hidden.detach())

    handle = stack.blocks[layer].register_forward_pre_hook(stop, with_kwargs=True)
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
