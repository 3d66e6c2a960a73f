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
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters import vision
from pytest_attnfaith.adapters.chunks import collect_chunks, write_chunk
from pytest_attnfaith.adapters.inputs import (
    Batch,
    check_forward_takes,
    check_token_ids,
    check_weights,
    last_positions,
    query_position,
)
from pytest_attnfaith.adapters.outputs import NonFiniteOutputError, available_device, dispatched_device
from pytest_attnfaith.adapters.passes import Edit, Forward, Pass, Produced, QueryRows
from pytest_attnfaith.adapters.patches import calling, exclusive
from pytest_attnfaith.adapters.reading import Reading
from pytest_attnfaith.adapters.tap import AttentionTap
from pytest_attnfaith.errors import AttentionUnavailableError, AttnFaithError
from pytest_attnfaith.formatting import plural
from pytest_attnfaith.metrics import as_columns, logits_of, output_distribution, runner_up, score_gradient

EmbeddingsFn = Callable[[Tensor], Tensor]


class AttentionModel(ABC):
    """Run a model, read its attention, replace it, and capture its embeddings' output."""

    kind = "model"
    default_query = "first"

    def __init__(self, module: nn.Module, where: str) -> None:
        self.module = module
        self.tap = AttentionTap(where)
        self.options = Reading()
        self._heads, self._columns = 1, 0
        self.targets: Tensor | None = None
        self._placed: torch.device | None = None

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
        return {
            "class": type(self.module).__name__,
            "adapter": self.kind,
            "attention": self.tap.where,
            "output": self.describe_output(),
        }

    def layer_indices(self) -> list[int]:
        """The attention layers that can be read (one for a wrapped module: layer 0)."""
        return [0]

    def read_layer(self) -> int:
        """The layer read and replaced under the current options (an element of ``layer_indices``)."""
        return 0

    def causal_attention(self) -> bool | None:
        """Whether the read layer masks future keys (None: not known before its weights are seen)."""
        return self.tap.causal

    def attention_is_causal(self, batch: Batch) -> bool:
        """``causal_attention()``, running one instance first if it is not known yet."""
        self._prepare(batch)
        if self.causal_attention() is None:
            try:
                self.forward(batch.select(slice(0, 1)))
            except NonFiniteOutputError as err:
                raise err.in_inputs(0) from None
        return bool(self.causal_attention())

    def vocabulary_size(self) -> int | None:
        """The number of token ids the embeddings accept (their ``nn.Embedding``'s rows; None: not known)."""
        try:
            embeddings = self.embeddings_module()
        except AttnFaithError:
            return None
        table = next((m for m in embeddings.modules() if isinstance(m, nn.Embedding)), None)
        return int(table.num_embeddings) if table is not None else None

    def check_inputs(self, batch: Batch) -> None:
        """Before any pass: every input key a parameter of the model's forward, every token id, and the
        ``mask_token_id`` option, inside the vocabulary."""
        check_forward_takes(self.module, batch)
        size = self.vocabulary_size()
        if batch.input_ids is not None:  # inputs without token ids (images) have no vocabulary to check
            check_token_ids(batch.input_ids, size)
        token = self.options.mask_token_id
        if token is not None and (token < 0 or (size is not None and token >= size)):
            raise AttnFaithError(
                f"option mask_token_id={token} is outside the vocabulary of {type(self.module).__name__} "
                f"[0, {size if size is not None else 'inf'}); expected the id of its mask (or pad) token"
            )

    def head_count(self, layer: int) -> int:
        """Heads of the attention read at ``layer`` (known after a forward pass)."""
        return self._heads

    def not_attention(self) -> str:
        """Why no attention was read, where the adapter knows better than "never computed" (else "")."""
        return ""

    def pad_token_id(self) -> int | None:
        """The padding token's id where the model's tokenizer or vocabulary says it (None: unknown)."""
        return None

    def mask_token_id(self) -> int | None:
        """The token that replaces a token for ``loo="mask"`` (None: not available)."""
        return self.options.mask_token_id

    def tokens(self, batch: Batch) -> list[list[str]]:
        """Per instance, the display text of each real token (ids where no vocabulary is known; one string per id)."""
        if batch.input_ids is None:
            return vision.position_names(batch)
        names: dict[int, str] = {}
        return [
            [names.setdefault(i, str(i)) for i, keep in zip(row, real, strict=True) if keep]
            for row, real in zip(batch.input_ids.tolist(), batch.real.tolist(), strict=True)
        ]

    def read(self, rows: Tensor, heads: Tensor | None = None) -> Tensor:
        """The distribution the checks use, from the per-head rows (n, H, Tk): the mean over heads or the head
        chosen (``heads``: per instance, its own head)."""
        if heads is not None:
            return rows[torch.arange(rows.shape[0], device=rows.device), heads.to(rows.device) % rows.shape[1]]
        head = self.options.head
        if head == "mean":
            return rows.mean(dim=1)
        if not -rows.shape[1] <= int(head) < rows.shape[1]:
            raise AttnFaithError(f"option head={head} is out of range: the attention has {plural(rows.shape[1], 'head')}")
        return rows[:, int(head)]

    def edited_heads(self, batch: Batch) -> Tensor | None:
        """Per instance, the one head its counterfactuals edit (None: every head of the layer): the batch's own
        heads (the atlas), else ``head`` when it names one and ``replace="head"``."""
        if batch.heads is not None:
            return batch.heads
        if self.options.replace == "head" and self.options.head != "mean":
            return torch.full((batch.size,), int(self.options.head), device=batch.device)
        return None

    def resolve_targets(self, targets: tuple[Any, ...] | None) -> Tensor | None:
        """The logits the output is the softmax over (``targets``), as column indices; words need a tokenizer."""
        if targets is None:
            return None
        if isinstance(targets[0], str):
            raise AttnFaithError(
                f"targets={list(targets)!r} are words, but {type(self.module).__name__} has no tokenizer to turn them into "
                "ids; expected the indices of its logits (e.g. targets=[0, 1]), or a Hugging Face model with a tokenizer"
            )
        return torch.tensor(targets, dtype=torch.long)

    def replaced_rows(self) -> str:
        """Which rows the counterfactuals replace, in words."""
        rows = "every real query row" if self.options.query == "all" else "the query row"
        alone = self.options.replace == "head" and self.options.head != "mean"
        return f"{rows} of {f'head {self.options.head} alone' if alone else 'every head'}"

    def describe_output(self) -> str | dict[str, Any]:
        """What the output distribution is, for ``report.model["output"]``."""
        if self.targets is None and self._columns == 1:
            return {"distribution": "one binary logit z: p = [1 - sigmoid(z), sigmoid(z)]", "class_1": "sigmoid(z)"}
        if self.targets is None:
            return "logits"
        return {"distribution": "softmax over the target logits", "ids": self.targets.tolist()}

    # -- shared machinery ---------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model computes in (its first floating-point parameter's; float32 without one)."""
        return next((p.dtype for p in self.module.parameters() if p.is_floating_point()), torch.float32)

    @property
    def device(self) -> torch.device:
        """Where the model takes its inputs: found once when the session has placed the model (each pass asks, and
        finding a dispatched model's device walks every module), else now."""
        return self._placed if self._placed is not None else self._find_device()

    def _find_device(self) -> torch.device:
        if self.options.device is not None and dispatched_device(self.module) is None:
            return torch.device(self.options.device)
        for device in (dispatched_device(self.module), *(tensor.device for tensor in self.module.parameters())):
            if device is not None:
                return device
        return torch.device("cpu")

    @contextlib.contextmanager
    def session(self, options: Any) -> Iterator[AttentionModel]:
        """Audit mode: eval(), taps installed, on the chosen device; everything restored on exit, also on error or
        KeyboardInterrupt. ``options``: the audit's options (or a ``Reading``), of which the adapter keeps the
        ``Reading``. One session per model at a time: another thread's session on the same model waits."""
        with exclusive(self.module):
            if dispatched_device(self.module) is None:  # offloaded weights are on meta by design
                check_weights(self.module)
            options = self.options = Reading.of(options)
            if options.device is not None:
                available_device(options.device)
            training = {name: sub.training for name, sub in self.module.named_modules()}
            original = next((t.device for t in self.module.parameters()), None)
            moved = original is not None and options.device is not None and torch.device(options.device) != original
            moved = moved and dispatched_device(self.module) is None  # accelerate's hooks place a dispatched model
            try:
                self.targets, self.tap.causal = self.resolve_targets(options.targets), None
                if moved:
                    self.module.to(self.device)
                self._placed = self._find_device()
                self.module.eval()
                with self._install():
                    yield self
            finally:
                for name, sub in self.module.named_modules():
                    sub.training = training.get(name, sub.training)
                if moved:
                    self.module.to(original)
                self._forget_session()

    def _forget_session(self) -> None:
        """Drop what the session read, learnt and cached (its reading, targets, the heads and classes seen; subclasses
        their caches): once the session ends the adapter keeps nothing of the audit."""
        self.options, self.targets, self.tap.causal, self._placed = Reading(), None, None, None
        self._heads, self._columns = 1, 0

    @contextlib.contextmanager
    def reading_as(self, options: Any) -> Iterator[None]:
        """Read and replace per ``options`` (a ``Reading``, or the audit's options) inside the block, the session's
        reading again after it: another layer or head of the same session (the per-head atlas, rollout)."""
        saved, self.options = self.options, Reading.of(options)
        try:
            yield
        finally:
            self.options = saved

    def query_rows(self, batch: Batch) -> QueryRows:
        """The query rows read and replaced: one per instance, or every real row (``query="all"``)."""
        if self.options.query == "all":
            return QueryRows.every_real_row(batch.real.bool(), batch.attention_mask.bool())
        return QueryRows.one_per_instance(self.query_positions(batch))

    def query_positions(self, batch: Batch) -> Tensor:
        """Per instance, the query row read in (B, H, Tq, Tk) attention: first or last real token, or a position
        (negative: counted from the end of the inputs, as Python indexes, so -1 is position T - 1)."""
        query = self.options.query
        if query == "auto":
            query = self.default_query
        mask = batch.attention_mask.bool()
        positions = torch.arange(batch.length, device=mask.device).expand_as(mask)
        if query == "first":
            return torch.where(mask, positions, batch.length).min(dim=1).values.clamp(max=batch.length - 1)
        if query == "last":
            return last_positions(mask)
        return torch.full((batch.size,), query_position(int(query), batch.length), device=mask.device)

    @contextlib.contextmanager
    def embeddings_hook(self) -> Iterator[None]:
        """Forward hook on the embeddings: the running pass replaces or captures their output (``AttentionTap.embed``)."""
        handle = self.embeddings_module().register_forward_hook(lambda module, args, output: self.tap.embed(output))
        try:
            yield
        finally:
            handle.remove()

    def count_positions(self, inputs: Mapping[str, Any]) -> int:
        """T of the embeddings' output on inputs without token ids (``adapters.vision``); in session only."""
        with calling():
            return vision.count_positions(self.module, self.embeddings_module(), inputs)

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
        capture_attention: bool = False,
        record_layers: bool = False,
        embeddings: EmbeddingsFn | None = None,
        reference: bool = False,
    ) -> Forward:
        """One pass over ``batch`` (moved to the model's device), optionally editing the attention.

        ``record_layers``: also read the query rows of every layer that runs (``Forward.layer_rows``).
        ``embeddings``: a function of the embeddings' output (n, T, D) that returns what the model sees instead
        (with ``capture_embeddings``, the leaf ``Forward.embeddings`` is the replacement). ``reference``: the
        reference pass (``forward_chunked``), whose by-products later passes may reuse."""
        with calling():  # the model runs: never while another thread's torch.fx trace patches nn.Module.__call__
            self._prepare(batch)
        batch = batch.to(self.device)
        armed = Pass(
            size=batch.size,
            at=self.query_rows(batch),
            real=batch.real,
            mask=batch.attention_mask.bool(),
            edit=edit,
            detach=detach_attention,
            heads=self.edited_heads(batch),
            causal=self.causal_attention(),
            layer=self.read_layer(),
            capture=capture_attention,
            capture_embeddings=capture_embeddings,
            embeddings=vision.edit_positions(batch, self.options.baseline, embeddings),  # removed positions, then fn
            record_layers=record_layers,
            reference=reference,
        )
        grad = grad or capture_embeddings or capture_attention
        with calling(), self.tap.running(armed) as produced, torch.set_grad_enabled(grad):
            output = self._call(batch.model_kwargs())
        if produced.calls == 0 or produced.rows is None:
            raise AttentionUnavailableError(
                self.not_attention()
                or f"the attention at {self.tap.where} was never computed during the forward pass; "
                "expected the named module to run once per forward (check the path, or the model's code path)"
            )
        if produced.calls > 1:
            raise AttentionUnavailableError(
                f"the attention at {self.tap.where} was computed {produced.calls} times in one forward pass; "
                "expected once: point at a module that computes one attention distribution"
            )
        probs, logits = self._outputs(output, batch.size)
        self._heads, self._columns = int(produced.rows.shape[1]), int(logits.shape[1])
        if capture_embeddings and produced.embeddings_leaf is None:
            raise AttentionUnavailableError(
                "the embeddings module was never called during the forward pass; expected it to run once"
            )
        if record_layers:
            produced.layer_rows.setdefault(armed.layer, produced.rows)
        return Forward(
            probs=probs,
            rows=produced.rows,
            attention=self.read_pass(armed, produced, batch.heads),
            logits=logits,
            embeddings=produced.embeddings_leaf,
            layer_rows=produced.layer_rows if record_layers else None,
            captured=produced.captured,
        )

    def read_pass(self, armed: Pass, produced: Produced, heads: Tensor | None) -> Tensor:
        """The distribution the checks use from what the pass ``armed`` produced: ``read`` of its rows."""
        assert produced.rows is not None
        return self.read(produced.rows, heads)

    def _outputs(self, output: Any, size: int) -> tuple[Tensor, Tensor]:
        """The output distribution p (n, C) and the logits (n, K) in float64 (with the graph, for gradients)."""
        try:
            logits = self._target_logits(logits_of(output))
            if logits.dim() == 2 and logits.shape[1] == 0:
                raise ValueError(
                    f"{type(self.module).__name__} returned logits of shape {tuple(logits.shape)}: no class to score; "
                    "expected logits (B, C) with at least one class (C >= 1)"
                )
            probs = output_distribution(logits)
            logits = as_columns(logits)
        except (TypeError, ValueError) as err:
            raise AttnFaithError(str(err)) from None
        if probs.shape[0] != size:
            raise AttnFaithError(
                f"the model returned {probs.shape[0]} rows of logits for {size} instances; expected one row per instance"
            )
        finite = torch.isfinite(probs).all(dim=1)
        if not finite.all():
            raise NonFiniteOutputError(int((~finite).nonzero()[0]), logits)
        return probs, logits

    def rollout(self, batch: Batch) -> Tensor:
        """Abnar & Zuidema's attention rollout (n, Tk) up to the chosen layer, read as ``aggregation="rollout"`` reads it."""
        if len(self.layer_indices()) < 2:
            raise AttnFaithError(
                f"rollout (Abnar & Zuidema) multiplies the attention of successive layers: {self.tap.where} is the "
                "model's one attention layer; use explainer='attention'"
            )
        with self.reading_as(dataclasses.replace(self.options, aggregation="rollout")):
            return self.forward_chunked(batch).attention

    def _target_logits(self, logits: Tensor) -> Tensor:
        """The columns named by ``targets`` (all of them without)."""
        if self.targets is None:
            return logits
        if logits.dim() != 2 or int(self.targets.max()) >= logits.shape[1]:
            raise AttnFaithError(
                f"targets={self.targets.tolist()} select logits, but {type(self.module).__name__} returned logits of shape "
                f"{tuple(logits.shape)}; expected (B, C) with every target below C"
            )
        return logits[:, self.targets.to(logits.device)]

    def forward_chunked(self, batch: Batch, record_layers: bool = False) -> Forward:
        """``forward`` over a large batch without edits or gradients, in chunks of ``batch_size`` (bounded memory)."""
        size = self.options.batch_size
        fields: dict[str, Tensor | None] = {"probs": None, "rows": None, "attention": None, "logits": None}
        layer_rows: dict[int, Tensor] = {}
        for start in range(0, batch.size, size):
            part = slice(start, min(start + size, batch.size))
            try:
                forward = self.forward(batch.select(part), record_layers=record_layers, reference=True)
            except NonFiniteOutputError as err:
                raise err.in_inputs(start) from None
            for name in fields:
                value = getattr(forward, name)
                fields[name] = None if value is None else write_chunk(fields[name], part, value.detach(), batch.size)
            for layer, value in (forward.layer_rows or {}).items():
                layer_rows[layer] = write_chunk(layer_rows.get(layer), part, value, batch.size)
        probs, rows, attention, logits = fields["probs"], fields["rows"], fields["attention"], fields["logits"]
        assert probs is not None and rows is not None and attention is not None and logits is not None
        return Forward(
            probs=probs, rows=rows, attention=attention, logits=logits, layer_rows=layer_rows if record_layers else None
        )

    def read_share(self, batch: Batch) -> Tensor | None:
        """Per instance, the share of the output's sensitivity to the read layer's attention A that flows through
        the query rows read: Σ over read rows of |∂s_ŷ/∂A ⊙ A| / Σ over every attended query row (s_ŷ the
        predicted class's score on the ``scale`` option: ``metrics.score_gradient``). None where the attention has
        one query row; NaN without a gradient path."""
        forward = self.forward(batch, capture_attention=True)
        captured = forward.captured
        if captured is None or captured.shape[-2] == 1:
            return None
        classes = forward.probs.argmax(dim=1)
        rivals = runner_up(forward.logits.detach(), classes)
        grad = score_gradient(forward.logits, classes, rivals, self.options.scale, captured)
        flow = (grad.double() * captured.detach().double()).abs().sum(dim=(1, 3))
        at = self.query_rows(batch.to(flow.device))
        read = torch.zeros_like(flow).index_put_((at.owner, at.query.clamp(max=flow.shape[1] - 1)), torch.ones(()).double())
        mask = batch.attention_mask.to(flow.device).bool()[:, : flow.shape[1]]
        total = torch.where(mask, flow, 0.0).sum(dim=1)
        return ((flow * read).sum(dim=1) / total).cpu()

    def run_rows(
        self,
        total: int,
        make: Callable[[slice], tuple[Batch, Edit | None]],
        read: Callable[[Forward, slice], Tensor] | None = None,
    ) -> Tensor | None:
        """``read(forward, part)`` (default: the logits, float64) of ``total`` derived rows, each chunk of
        ``batch_size`` rows built by ``make`` only when it runs, written into one tensor allocated by the first
        chunk (bounded memory: no per-chunk results are kept alive between passes). None when ``total`` is 0."""

        def run(part: slice) -> Tensor:
            forward = self.forward(*make(part))
            return (read(forward, part) if read is not None else forward.logits).detach()

        return collect_chunks(total, self.options.batch_size, run)

    def forward_many(self, batch: Batch, edit: Edit | None = None) -> Tensor:
        """Output distributions for a large batch, in chunks of ``batch_size``, without gradients."""
        out = self.run_rows(
            batch.size, lambda part: (batch.select(part), edit.chunk(part) if edit is not None else None), _probabilities
        )
        return out if out is not None else torch.zeros(0, 2)


def _probabilities(forward: Forward, part: slice) -> Tensor:
    return forward.probs
