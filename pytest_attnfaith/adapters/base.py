"""The one interface every check uses: ``AttentionModel``.

An adapter runs the user's model on a ``Batch``, reads the attention distribution the checks
use (one row per instance: the chosen query row of the chosen attention, per head), replaces
it through an ``Edit``, and exposes the embeddings' output for gradients. Subclasses only say
how to install their taps (forward hooks, an attention function) and how to call the model.

The model is left exactly as it was: ``session()`` records the train/eval flag of every
submodule, the device and the hooks it adds, and restores them on exit, also on error.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.errors import AttentionUnavailableError, AttnFaithError
from pytest_attnfaith.formatting import plural
from pytest_attnfaith.metrics import binary_logit_gap, distribution_tolerance, logits_of, output_distribution
from pytest_attnfaith.options import Options

EditFn = Callable[..., Tensor]


class NonFiniteOutputError(AttnFaithError):
    """The model's output holds NaN or inf; ``row`` is the first such row of the pass."""

    def __init__(self, row: int, logits: Tensor) -> None:
        self.row = row
        self.values = [round(value, 4) for value in logits.detach().reshape(logits.shape[0], -1)[row, :4].tolist()]
        super().__init__(self.describe(f"row {row} of a pass with edited attention or tokens (a counterfactual)"))

    def describe(self, where: str) -> str:
        return f"the model's output contains NaN or inf for {where} (logits {self.values}); expected finite logits"


@dataclass
class Edit:
    """A counterfactual: ``fn(rows, real, **params)`` returns the new rows (n, H, Tk).

    ``params`` are per-instance tensors aligned with the batch, sliced along with it.
    """

    fn: EditFn
    params: dict[str, Tensor] = field(default_factory=dict)

    def chunk(self, part: slice) -> Edit:
        return Edit(self.fn, {name: value[part] for name, value in self.params.items()})

    def __call__(self, rows: Tensor, real: Tensor) -> Tensor:
        return self.fn(rows, real, **self.params)


@dataclass
class Forward:
    """One forward pass: output distribution (n, C), attention rows read (n, H, Tk) before any
    edit, the distribution the checks use (n, Tk), and the embeddings' output when captured."""

    probs: Tensor
    rows: Tensor
    attention: Tensor
    embeddings: Tensor | None = None
    gap: Tensor | None = None  # binary outputs: log p₁ − log p₀ from the logits, exact where p saturates


@dataclass
class _Armed:
    size: int
    query: Tensor
    real: Tensor
    mask: Tensor
    edit: Edit | None
    detach: bool
    calls: int = 0
    rows: Tensor | None = None


class AttentionTap:
    """Reads and replaces the chosen query row of an attention tensor as the model computes it.

    An adapter's hook passes each attention tensor it intercepts through ``apply``. Accepted
    shapes: (n, Tk) — one distribution per instance; (n, Tk, 1); (n·H, Tq, Tk); (n, H, Tq, Tk).
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.armed: _Armed | None = None

    def arm(self, armed: _Armed) -> None:
        self.armed = armed

    def disarm(self) -> _Armed | None:
        armed, self.armed = self.armed, None
        return armed

    def apply(self, native: Tensor) -> Tensor:
        armed = self.armed
        if armed is None:
            return native
        armed.calls += 1
        attn = self._as_4d(native, armed.size)
        tq, tk = attn.shape[-2], attn.shape[-1]
        if tk != armed.real.shape[1]:
            raise AttentionUnavailableError(
                f"the attention at {self.where} has {tk} key positions but the inputs have {armed.real.shape[1]} tokens; "
                "expected attention over the input tokens (self-attention over input_ids)"
            )
        query = armed.query.clamp(max=tq - 1)
        index = torch.arange(armed.size, device=attn.device)
        rows = attn[index, :, query, :]
        armed.rows = rows.detach()
        result = attn
        if armed.edit is not None:
            new_rows = armed.edit(rows, armed.real).to(attn.dtype)
            at_query = torch.nn.functional.one_hot(query, tq).bool()[:, None, :, None]
            result = torch.where(at_query, new_rows[:, :, None, :], attn)
        if armed.detach:
            result = result.detach()
        if result is attn:
            return native
        return result.reshape(native.shape)

    def _as_4d(self, native: Tensor, size: int) -> Tensor:
        shape = tuple(native.shape)
        if native.dim() == 2 and shape[0] == size:
            return native.view(size, 1, 1, shape[1])
        if (
            native.dim() == 3
            and shape[0] == size
            and shape[2] == 1
            and self.armed is not None
            and shape[1] == self.armed.real.shape[1]
        ):
            return native.view(size, 1, 1, shape[1])
        if native.dim() >= 3:
            lead = 1
            for dim in shape[:-2]:
                lead *= dim
            if lead % size == 0:
                return native.reshape(size, lead // size, shape[-2], shape[-1])
        raise AttentionUnavailableError(
            f"the attention at {self.where} has shape {shape} for a batch of {size}; "
            "expected (B, T) or (B, H, Tq, Tk) (or (B·H, Tq, Tk) as computed inside nn.MultiheadAttention)"
        )


class AttentionModel(ABC):
    """Run a model, read its attention, replace it, and capture its embeddings' output."""

    kind = "model"
    default_query = "first"

    def __init__(self, module: nn.Module, where: str) -> None:
        self.module = module
        self.tap = AttentionTap(where)
        self.options = Options()
        self._embeddings_leaf: Tensor | None = None
        self._capture_embeddings = False
        self._heads = 1

    # -- what subclasses provide -------------------------------------------------------------
    @abstractmethod
    def _install(self) -> contextlib.AbstractContextManager[None]:
        """Install the attention tap and the embeddings hook; remove them on exit."""

    @abstractmethod
    def embeddings_module(self) -> nn.Module:
        """The module whose output (n, T, D) are the token embeddings fed to the model."""

    def _call(self, kwargs: Mapping[str, Any]) -> Any:
        return self.module(**kwargs)

    def describe(self) -> dict[str, Any]:
        """What was read and what was replaced, for the report."""
        return {"class": type(self.module).__name__, "adapter": self.kind, "attention": self.tap.where}

    def layer_indices(self) -> list[int]:
        """The attention layers that can be read (one for a wrapped module)."""
        return [self.options.layer]

    def head_count(self, layer: int) -> int:
        """Heads of the attention read at ``layer`` (known after a forward pass)."""
        return self._heads

    def mask_token_id(self) -> int | None:
        """The token that replaces a token for ``loo="mask"`` (None: not available)."""
        return self.options.mask_token_id

    def tokens(self, batch: Batch) -> list[list[str]]:
        """Per instance, the display text of each real token (ids where no vocabulary is known; one string per id)."""
        names: dict[int, str] = {}
        return [
            [names.setdefault(i, str(i)) for i, keep in zip(row, real, strict=True) if keep]
            for row, real in zip(batch.input_ids.tolist(), batch.real.tolist(), strict=True)
        ]

    def read(self, rows: Tensor) -> Tensor:
        """The distribution the checks use, from the per-head rows (n, H, Tk)."""
        head = self.options.head
        if head == "mean":
            return rows.mean(dim=1)
        if not -rows.shape[1] <= int(head) < rows.shape[1]:
            raise AttnFaithError(f"option head={head} is out of range: the attention has {plural(rows.shape[1], 'head')}")
        return rows[:, int(head)]

    # -- shared machinery ---------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model computes in (its first floating-point parameter's; float32 without one)."""
        return next((p.dtype for p in self.module.parameters() if p.is_floating_point()), torch.float32)

    @property
    def device(self) -> torch.device:
        if self.options.device is not None:
            return torch.device(self.options.device)
        for tensor in self.module.parameters():
            return tensor.device
        return torch.device("cpu")

    @contextlib.contextmanager
    def session(self, options: Options) -> Iterator[AttentionModel]:
        """Audit mode: eval(), taps installed, on the chosen device; everything restored on exit."""
        self.options = options
        if options.device is not None:
            available_device(options.device)
        training = {name: sub.training for name, sub in self.module.named_modules()}
        original = next((t.device for t in self.module.parameters()), None)
        moved = original is not None and options.device is not None and torch.device(options.device) != original
        try:
            if moved:
                self.module.to(self.device)
            self.module.eval()
            with self._install():
                yield self
        finally:
            for name, sub in self.module.named_modules():
                sub.training = training.get(name, sub.training)
            if moved:
                self.module.to(original)

    def query_positions(self, batch: Batch) -> Tensor:
        """Per instance, the query row read in (B, H, Tq, Tk) attention: first or last real token."""
        query = self.options.query
        if query == "auto":
            query = self.default_query
        mask = batch.attention_mask.bool()
        positions = torch.arange(batch.length, device=mask.device).expand_as(mask)
        if query == "first":
            return torch.where(mask, positions, batch.length).min(dim=1).values.clamp(max=batch.length - 1)
        if query == "last":
            return torch.where(mask, positions, -1).max(dim=1).values.clamp(min=0)
        return torch.full((batch.size,), int(query), device=mask.device).clamp(0, batch.length - 1)

    @contextlib.contextmanager
    def embeddings_hook(self) -> Iterator[None]:
        """Forward hook on the embeddings that, when capturing, swaps their output for a leaf."""

        def hook(module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
            if not self._capture_embeddings:
                return None
            if not isinstance(output, Tensor) or output.dim() != 3:
                raise AttentionUnavailableError(
                    f"the embeddings module returned {type(output).__name__} "
                    f"{tuple(getattr(output, 'shape', ()))}; expected a tensor (B, T, D)"
                )
            leaf = output.detach().requires_grad_(True)
            self._embeddings_leaf = leaf
            return leaf

        handle = self.embeddings_module().register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def _prepare(self, batch: Batch) -> None:  # noqa: B027 (a hook: doing nothing is the default)
        """Called before every pass (adapters that discover the model's structure on first use override it)."""

    def forward(
        self,
        batch: Batch,
        edit: Edit | None = None,
        *,
        grad: bool = False,
        detach_attention: bool = False,
        capture_embeddings: bool = False,
    ) -> Forward:
        """One pass over ``batch`` (moved to the model's device), optionally editing the attention."""
        self._prepare(batch)
        batch = batch.to(self.device)
        armed = _Armed(
            size=batch.size,
            query=self.query_positions(batch),
            real=batch.real,
            mask=batch.attention_mask.bool(),
            edit=edit,
            detach=detach_attention,
        )
        self.tap.arm(armed)
        self._capture_embeddings = capture_embeddings
        self._embeddings_leaf = None
        try:
            with torch.set_grad_enabled(grad or capture_embeddings):
                output = self._call(batch.model_kwargs())
        finally:
            self.tap.disarm()
            self._capture_embeddings = False
        if armed.calls == 0 or armed.rows is None:
            raise AttentionUnavailableError(
                f"the attention at {self.tap.where} was never computed during the forward pass; "
                "expected the named module to run once per forward (check the path, or the model's code path)"
            )
        if armed.calls > 1:
            raise AttentionUnavailableError(
                f"the attention at {self.tap.where} was computed {armed.calls} times in one forward pass; "
                "expected once: point at a module that computes one attention distribution"
            )
        probs, gap = self._outputs(output, batch.size)
        self._heads = int(armed.rows.shape[1])
        if capture_embeddings and self._embeddings_leaf is None:
            raise AttentionUnavailableError(
                "the embeddings module was never called during the forward pass; expected it to run once"
            )
        return Forward(probs=probs, rows=armed.rows, attention=self.read(armed.rows), embeddings=self._embeddings_leaf, gap=gap)

    def _outputs(self, output: Any, size: int) -> tuple[Tensor, Tensor | None]:
        """The output distribution p (n, C) and, for two classes, the logit gap log p₁ − log p₀."""
        try:
            logits = logits_of(output)
            probs = output_distribution(logits)
            gap = binary_logit_gap(logits)
        except (TypeError, ValueError) as err:
            raise AttnFaithError(str(err)) from None
        if probs.shape[0] != size:
            raise AttnFaithError(
                f"the model returned {probs.shape[0]} rows of logits for {size} instances; expected one row per instance"
            )
        finite = torch.isfinite(probs).all(dim=1)
        if not finite.all():
            raise NonFiniteOutputError(int((~finite).nonzero()[0]), logits)
        return probs, gap

    def forward_chunked(self, batch: Batch) -> Forward:
        """``forward`` over a large batch without edits or gradients, in chunks of ``batch_size`` (bounded memory)."""
        size = self.options.batch_size
        fields: dict[str, Tensor | None] = {"probs": None, "rows": None, "attention": None, "gap": None}
        for start in range(0, batch.size, size):
            part = slice(start, min(start + size, batch.size))
            try:
                forward = self.forward(batch.select(part))
            except NonFiniteOutputError as err:
                raise AttnFaithError(err.describe(f"instance {start + err.row} of the inputs")) from None
            for name in fields:
                value = getattr(forward, name)
                fields[name] = None if value is None else write_chunk(fields[name], part, value.detach(), batch.size)
        probs, rows, attention = fields["probs"], fields["rows"], fields["attention"]
        assert probs is not None and rows is not None and attention is not None
        return Forward(probs=probs, rows=rows, attention=attention, gap=fields["gap"])

    def run_rows(
        self,
        total: int,
        make: Callable[[slice], tuple[Batch, Edit | None]],
        read: Callable[[Forward, slice], Tensor] | None = None,
    ) -> Tensor | None:
        """``read(forward, part)`` (default: the output distributions) of ``total`` derived rows, each chunk of
        ``batch_size`` rows built by ``make`` only when it runs, written into one tensor allocated by the first
        chunk (bounded memory: no per-chunk results are kept alive between passes). None when ``total`` is 0."""

        def run(part: slice) -> Tensor:
            forward = self.forward(*make(part))
            return (read(forward, part) if read is not None else forward.probs).detach()

        return collect_chunks(total, self.options.batch_size, run)

    def forward_many(self, batch: Batch, edit: Edit | None = None) -> Tensor:
        """Output distributions for a large batch, in chunks of ``batch_size``, without gradients."""
        out = self.run_rows(batch.size, lambda part: (batch.select(part), edit.chunk(part) if edit is not None else None))
        return out if out is not None else torch.zeros(0, 2)


def collect_chunks(total: int, size: int, compute: Callable[[slice], Tensor]) -> Tensor | None:
    """``compute(part)`` for each chunk of ``size`` rows of ``total``, written into one tensor (None if ``total`` is 0)."""
    out: Tensor | None = None
    for start in range(0, total, size):
        part = slice(start, min(start + size, total))
        out = write_chunk(out, part, compute(part), total)
    return out


def write_chunk(out: Tensor | None, part: slice, values: Tensor, total: int) -> Tensor:
    """Write one chunk's ``values`` into ``out[part]``; the first chunk allocates ``out`` for ``total`` rows.

    One allocation per result instead of a list of per-chunk tensors joined at the end: half the
    peak, and no small long-lived tensors left between the passes' large temporaries."""
    if out is None:
        out = values.new_empty((total, *values.shape[1:]))
    out[part] = values
    return out


def available_device(name: str) -> torch.device:
    """``torch.device(name)``, or the package's error naming the device and the devices this torch build has."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise AttnFaithError(f"option device={name!r} is not a device: {err}; expected e.g. 'cpu' or 'cuda:0'") from None
    if device.type == "cuda":
        usable = torch.cuda.is_available() and (device.index is None or device.index < torch.cuda.device_count())
    elif device.type == "cpu":
        usable = True
    else:  # mps, xpu, ...: torch.<type>.is_available()
        backend = getattr(torch.backends, device.type, None) or getattr(torch, device.type, None)
        usable = bool(getattr(backend, "is_available", lambda: False)())
    if not usable:
        raise AttnFaithError(
            f"option device={name!r} is not available on this machine (torch {torch.__version__}); "
            f"available: {', '.join(available_devices())}"
        )
    return device


def available_devices() -> list[str]:
    """The devices this process can run on: cpu, then every CUDA device, then mps."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.extend(f"cuda:{index}" for index in range(torch.cuda.device_count()))
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def check_distribution(forward: Forward, batch: Batch, where: str) -> None:
    """Raise unless every read row is a distribution over the unmasked positions, to the rounding of its dtype."""
    tolerance = distribution_tolerance(forward.rows.dtype)
    rows = forward.rows.double()
    mask = batch.attention_mask.bool().to(rows.device)[:, None, :]
    negative = (rows < -1e-5).any(dim=-1)
    total = rows.sum(dim=-1)
    outside = torch.where(mask, torch.zeros_like(rows), rows).abs().sum(dim=-1)
    bad = negative | ((total - 1).abs() > tolerance) | (outside > tolerance)
    if bad.any():
        instance, head = (int(i) for i in bad.nonzero()[0])
        raise AttentionUnavailableError(
            f"the attention read at {where} is not a distribution over the unmasked positions: instance {instance}, "
            f"head {head} sums to {float(total[instance, head]):.4g} with {float(outside[instance, head]):.4g} on masked "
            f"positions (min weight {float(rows[instance, head].min()):.4g}); expected non-negative weights summing to 1 "
            "over the positions where attention_mask == 1"
        )
