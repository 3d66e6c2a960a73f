"""What attention-derived explanations read inside a Hugging Face model: per layer, the attention weights, the
value vectors, the output projection, the residual and the layer norm around the attention.

Read with forward hooks, not by re-implementing the model: a listener on transformers' ``AttentionInterface``
(stacked above the adapter's own) sees each layer's ``value`` argument and weights; a forward pre-hook on each
block of the model's layer list records the hidden states entering it (the residual) and its keyword arguments;
pre-hooks on the block's leaf modules find the **output projection** (the module whose input is the attention
output, (n, T, H·d)) and the **layer norms** (a norm whose input is the block's input: pre-LN, as Llama; a norm
whose input is residual + projection: post-LN, as BERT). The projection's matrix is read by applying it to the
identity (W_o = proj(I) − proj(0)), so ``nn.Linear`` and GPT-2's ``Conv1D`` read alike.

``record(model, batch, upto=c)`` runs the whole model once (no shortcut) and returns one ``LayerRecord`` per
layer 0..c; ``rerun_block`` runs block c alone on recorded inputs, optionally with chosen value vectors zeroed
(value zeroing). Models outside the interface (``wrap()``-ed modules, DeBERTa-v2) get an ``AttentionUnavailableError``
naming what is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters.base import AttentionModel
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.adapters.passes import Forward
from pytest_attnfaith.errors import AttentionUnavailableError


@dataclass
class LayerRecord:
    """One attention layer of one pass: weights (n, H, T, T), values (n, H, T, d) (GQA repeated to H heads), the
    hidden states entering its block (n, T, D), the block's other arguments and its output, the projection's input
    and output, and the norms seen in the block (module, input, output), in call order."""

    module: nn.Module
    weights: Tensor
    value: Tensor
    block_input: Tensor | None = None
    block_args: tuple[Any, ...] = ()
    block_kwargs: dict[str, Any] = field(default_factory=dict)
    block_output: Tensor | None = None
    projection: nn.Module | None = None
    projected: Tensor | None = None
    norms: list[tuple[nn.Module, Tensor, Tensor]] = field(default_factory=list)

    def projection_matrix(self) -> Tensor:
        """Per head, the output projection W_o^h (H, d, D_out), read as proj(I) − proj(0) (the bias removed)."""
        if self.projection is None:
            raise AttentionUnavailableError(
                f"no module of the block around {type(self.module).__name__} receives the attention output (n, T, H·d); "
                "expected an output projection (o_proj, dense, out_proj, c_proj) applied to it"
            )
        _, heads, _, width = self.value.shape
        eye = torch.eye(heads * width, dtype=self.value.dtype, device=self.value.device)
        with torch.no_grad():
            matrix = self.projection(eye) - self.projection(torch.zeros_like(eye[:1]))
        return matrix.view(heads, width, -1)

    def transformed(self) -> Tensor:
        """f^h(x_j) = v^h_j W_o^h (n, H, T, D): each value vector through its head's part of the output projection."""
        return torch.einsum("nhtv,hvd->nhtd", self.value, self.projection_matrix().to(self.value.dtype))


class _Recorder:
    """An ``AttentionInterface`` listener stacked above the adapter: it records each layer's weights and values
    and hands the call on (``inner``); in a block rerun it runs the eager attention itself, with the values at
    ``zero`` (n, T) set to 0."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.records: list[LayerRecord] = []
        self.zero: Tensor | None = None
        self.rerun = False
        self.pending: dict[str, Any] = {}

    def attend(
        self, eager: Any, module: nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, **kwargs: Any
    ) -> tuple[Tensor, Tensor | None]:
        if self.zero is not None:
            value = value * ~self.zero[:, None, :, None].to(value.device)
        seen: dict[str, Tensor] = {}

        def recording(*args: Any, **inner_kwargs: Any) -> tuple[Tensor, Tensor | None]:
            output, weights = eager(*args, **inner_kwargs)
            seen["weights"], seen["output"] = weights, output
            return output, weights

        if self.rerun:
            output, weights = recording(module, query, key, value, mask, **kwargs)
        else:
            output, weights = self.inner.attend(recording, module, query, key, value, mask, **kwargs)
        heads = seen["weights"].shape[1]
        values = value.repeat_interleave(heads // value.shape[1], dim=1) if value.shape[1] != heads else value
        used = weights if weights is not None else seen["weights"]
        self.records.append(LayerRecord(module=module, weights=used, value=values))
        self.records[-1].projected = seen["output"]  # the attention output, until the projection is found
        return output, weights


def _first_tensor(output: Any) -> Tensor:
    return output if isinstance(output, Tensor) else output[0]


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


@contextlib.contextmanager
def _block_hooks(blocks: list[nn.Module], recorder: _Recorder) -> Iterator[None]:
    """Record each block's input, keyword arguments and output, its output projection and its norms."""
    handles = []

    def enter(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        recorder.pending = {
            "input": args[0] if args else kwargs.get("hidden_states"),
            "args": args[1:],
            "kwargs": {name: value for name, value in kwargs.items() if name != "hidden_states"},
            "norms": [],
        }

    def leave(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        record, pending = recorder.records[-1], recorder.pending
        record.block_input, record.block_args, record.block_kwargs = pending["input"], pending["args"], pending["kwargs"]
        record.block_output = _first_tensor(output)
        record.norms = pending["norms"]

    def leaf(module: nn.Module, args: Any, output: Any) -> None:
        if not recorder.records or not args or not isinstance(args[0], Tensor):
            return
        record, given = recorder.records[-1], args[0]
        if _is_norm(module):
            recorder.pending["norms"].append((module, given, _first_tensor(output)))
            return
        if record.projection is None and record.projected is not None:
            attended = record.projected.reshape(*record.projected.shape[:2], -1)
            if given.shape == attended.shape and torch.equal(given, attended):
                record.projection, record.projected = module, _first_tensor(output)

    for block in blocks:
        handles.append(block.register_forward_pre_hook(enter, with_kwargs=True))
        handles.append(block.register_forward_hook(leave, with_kwargs=True))
        handles += [sub.register_forward_hook(leaf) for sub in block.modules() if not list(sub.children())]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _blocks(model: AttentionModel, what: str) -> list[nn.Module]:
    """The model's layer list (one block per attention layer), or an error naming what ``what`` needs."""
    from pytest_attnfaith.adapters import hf_fast

    layers = getattr(model, "layers", None)
    if getattr(model, "path", None) != "interface" or not layers:
        raise AttentionUnavailableError(
            f"{what} reads every layer's value vectors and output projection through transformers' AttentionInterface; "
            f"{type(model.module).__name__} ({model.kind}, read at {model.tap.where}) exposes only the attention distribution "
            "at the audited module: values, output projection, residual and layer norm are missing. Use a Hugging Face "
            "model built on AttentionInterface, or explainer='attention' / 'attention_gradient' (or 'attention_norm' on an "
            "nn.MultiheadAttention)"
        )
    stack = hf_fast.find_stack(model.module, [layer.module for layer in layers])
    if stack is None:
        raise AttentionUnavailableError(
            f"{what} needs the residual stream around each attention layer: {type(model.module).__name__} has no list of "
            f"{len(layers)} blocks, one per attention layer"
        )
    return list(stack.blocks)


def record(model: AttentionModel, batch: Batch, what: str, *, upto: int, grad: bool = False) -> tuple[Forward, list[LayerRecord]]:
    """One full pass over ``batch`` that records layers 0..``upto`` (``what``: the explainer, for errors)."""
    from pytest_attnfaith.adapters import hf_interface

    blocks = _blocks(model, what)
    recorder = _Recorder(inner=model)
    with hf_interface.listening(recorder), _block_hooks(blocks[: upto + 1], recorder):
        forward = model.forward(batch, grad=grad, embeddings=lambda native: native)
    if len(recorder.records) <= upto:
        raise AttentionUnavailableError(f"{what} needs layers 0..{upto}; only {len(recorder.records)} ran")
    return forward, recorder.records[: upto + 1]


def rerun_block(model: AttentionModel, layer: LayerRecord, rows: Tensor, zero: Tensor, what: str, index: int) -> Tensor:
    """Block ``index`` alone on the recorded input of instances ``rows`` (n,), with the value vectors at ``zero``
    (n, T) set to 0 in every head; returns the block's output (n, T, D)."""
    from pytest_attnfaith.adapters import hf_interface

    blocks = _blocks(model, what)
    assert layer.block_input is not None
    size = layer.block_input.shape[0]
    args = _rows_of(layer.block_args, rows, size)
    kwargs = {name: _rows_of(value, rows, size) for name, value in layer.block_kwargs.items()}
    recorder = _Recorder(inner=None)
    recorder.rerun, recorder.zero = True, zero
    with hf_interface.listening(recorder), torch.no_grad():
        return _first_tensor(blocks[index](layer.block_input[rows], *args, **kwargs))


def _rows_of(value: Any, rows: Tensor, size: int) -> Any:
    """A block keyword argument for the rows ``rows`` of a batch of ``size``: per-instance tensors (dim ≥ 2, first
    dim ``size``) indexed, tuples (rotary cos/sin) element-wise, the rest as recorded."""
    if isinstance(value, tuple):
        return tuple(_rows_of(item, rows, size) for item in value)
    if isinstance(value, Tensor) and value.dim() >= 2 and value.shape[0] == size:
        return value[rows.to(value.device)]
    return value
