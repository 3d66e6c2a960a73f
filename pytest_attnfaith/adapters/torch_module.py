"""``wrap()``: the adapter for any ``torch.nn.Module``, through forward hooks.

If the named attention module's forward output is the attention distribution ((B, T) or
(B, H, Tq, Tk), non-negative, summing to 1), its output is read and replaced by a forward hook.
Otherwise (``nn.MultiheadAttention``, a transformer block, anything that returns more than the
distribution or computes it inline) the softmax inside the module is intercepted.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters.base import AttentionModel
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.adapters.partial import PartialForward
from pytest_attnfaith.adapters.softmax import SoftmaxInterceptor
from pytest_attnfaith.adapters.token_names import TokenNames
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import distribution_tolerance

INTERCEPT_MODES = ("auto", "output", "softmax")


def submodule(net: nn.Module, path: str, what: str) -> nn.Module:
    """``net.get_submodule(path)`` with an error that lists the closest existing paths."""
    if not isinstance(path, str) or not path:
        raise AttnFaithError(f"{what}={path!r} is not valid: expected the dotted path of a submodule, e.g. 'pool.attn'")
    try:
        return net.get_submodule(path)
    except AttributeError:
        names = [name for name, _ in net.named_modules() if name]
        close = difflib.get_close_matches(path, names, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; submodules: {', '.join(names[:20])}"
        raise AttnFaithError(f"{what}={path!r}: {type(net).__name__} has no submodule at that path{hint}") from None


def _is_distribution(output: Any) -> bool:
    if not isinstance(output, Tensor) or not output.is_floating_point() or output.dim() not in (2, 4):
        return False
    values = output.detach().double()
    return bool((values >= -1e-5).all()) and bool(((values.sum(dim=-1) - 1).abs() <= distribution_tolerance(output.dtype)).all())


def _what_it_returned(output: Any) -> str:
    """What a module returned that is not an attention distribution, in words: its type or shape, and how it fails
    (rows that do not sum to 1, negative values)."""
    if not isinstance(output, Tensor):
        return f"a {type(output).__name__}"
    shape = "(B, " + ", ".join(str(size) for size in output.shape[1:]) + ")"  # B: the probe's batch is not the audit's
    if not output.is_floating_point() or output.dim() not in (2, 4):
        return f"a {output.dim()}-D {output.dtype} tensor of shape {shape}"
    values = output.detach().double()
    sums = values.sum(dim=-1)
    problems = []
    if bool(((sums - 1).abs() > distribution_tolerance(output.dtype)).any()):
        problems.append(f"rows summing to {float(sums.min()):.3g}..{float(sums.max()):.3g}, not 1")
    if bool((values < -1e-5).any()):
        problems.append(f"negative values (min {float(values.min()):.3g})")
    return f"a tensor of shape {shape} with {' and '.join(problems)}"


class WrappedModel(AttentionModel):
    """A ``torch.nn.Module`` with the paths of its attention and embeddings modules."""

    kind = "torch"

    def __init__(
        self,
        net: nn.Module,
        attention: str,
        embeddings: str,
        intercept: str = "auto",
        partial: bool = True,
        vocabulary: Any = None,
    ) -> None:
        if not isinstance(net, nn.Module):
            raise AttnFaithError(f"wrap() got a {type(net).__name__}; expected a torch.nn.Module")
        if intercept not in INTERCEPT_MODES:
            raise AttnFaithError(f"intercept={intercept!r} is not valid: expected one of {INTERCEPT_MODES}")
        self.vocabulary = TokenNames(vocabulary) if vocabulary is not None else None
        self._returned: str | None = None  # what the attention module returned, when it is not a distribution
        self.attention_path = attention
        self.embeddings_path = embeddings
        self.attention_module = submodule(net, attention, "attention")
        self._embeddings = submodule(net, embeddings, "embeddings")
        super().__init__(net, where=f"{type(net).__name__}.{attention}")
        self.intercept = intercept
        self._mode: str | None = None if intercept == "auto" else intercept
        self._interceptor = SoftmaxInterceptor(self.attention_module, self.tap, enabled=lambda: self._mode == "softmax")
        self.partial = PartialForward(net, self.attention_module, self.tap) if partial else None

    def embeddings_module(self) -> nn.Module:
        return self._embeddings

    def pad_token_id(self) -> int | None:
        return self.vocabulary.pad_id() if self.vocabulary is not None else None

    def tokens(self, batch: Batch) -> list[list[str]]:
        """The vocabulary's text of each real token (ids without a vocabulary)."""
        if self.vocabulary is None or batch.input_ids is None:
            return super().tokens(batch)
        decode = self.vocabulary.decode
        return [
            decode([i for i, keep in zip(row, real, strict=True) if keep])
            for row, real in zip(batch.input_ids.tolist(), batch.real.tolist(), strict=True)
        ]

    @contextlib.contextmanager
    def session(self, options: Any) -> Iterator[AttentionModel]:
        """``AttentionModel.session``, after checking that ``layer`` names the one attention this model has."""
        if options.layer not in (0, -1):
            raise AttnFaithError(
                f"option layer={options.layer} is not valid for a wrapped model: it has one attention ({self.tap.where}); "
                "expected layer 0 or -1 (the default). To audit another layer, wrap its attention module"
            )
        with super().session(options) as model:
            yield model

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "embeddings": self.embeddings_path,
            "intercept": self._mode or self.intercept,
            "read": f"output of {self.attention_path}" if self._mode == "output" else f"softmax inside {self.attention_path}",
            "replaced": self.replaced_rows(),
            "partial": self.partial.note if self.partial is not None else "off: full forward passes",
        }

    @contextlib.contextmanager
    def _install(self) -> Iterator[None]:
        def read_output(module: nn.Module, args: Any, output: Any) -> Any:
            return self.tap.apply(output) if self._mode == "output" else None

        handle = self.attention_module.register_forward_hook(read_output)
        if self.partial is not None:
            self.partial.reset(capacity=self.options.batch_size)
        try:
            with self.embeddings_hook(), self._interceptor.installed():
                yield
        finally:
            handle.remove()
            if self.partial is not None:
                self.partial.reset()

    def _call(self, kwargs: Any) -> Any:
        if self._mode is None:
            self._mode = self._probe_mode(kwargs)
        if self._mode == "softmax":
            with self._interceptor.active():
                return self._run(kwargs)
        return self._run(kwargs)

    def _run(self, kwargs: Any) -> Any:
        """Counterfactual passes (attention edited, embeddings not captured) re-run only what the attention feeds."""
        armed = self.tap.armed
        if self.partial is not None and armed is not None and armed.edit is not None and not armed.touches_embeddings:
            return self.partial.run(dict(kwargs))
        return self.module(**kwargs)

    def _probe_mode(self, kwargs: Any) -> str:
        """Decide from one call whether the module's output is the distribution itself."""
        seen: list[Any] = []
        handle = self.attention_module.register_forward_hook(lambda module, args, output: seen.append(output))
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the audit's seeded RNG stays untouched
                self.module(**kwargs)
        finally:
            handle.remove()
        if seen and _is_distribution(seen[0]):
            return "output"
        self._returned = _what_it_returned(seen[0]) if seen else None
        return "softmax"

    def not_attention(self) -> str:
        """Where the named module ran but returned no distribution and computed none inside: what it returned."""
        if self._returned is None:
            return ""
        return (
            f"attention={self.attention_path!r} is not an attention distribution: the module ran and returned "
            f"{self._returned}, and computed no softmax inside; expected the module whose output is the attention "
            "distribution, (B, T) or (B, H, Tq, Tk) with non-negative rows summing to 1 over the unmasked positions, "
            "or a module that computes one with a softmax"
        )


def wrap(
    net: nn.Module,
    attention: str,
    embeddings: str,
    *,
    intercept: str = "auto",
    partial: bool = True,
    vocabulary: Any = None,
) -> WrappedModel:
    """Wrap any ``torch.nn.Module`` for an audit.

    ``attention`` is the dotted path of the submodule whose output is the attention
    distribution (B, T) or (B, H, Tq, Tk) — or of a module that computes it inside (its softmax is
    then intercepted); ``embeddings`` the path of the module whose output (B, T, D) feeds the
    model, whatever its inputs (token ids, ``pixel_values``, frames: ``adapters.vision``). ``intercept`` forces
    ``"output"`` (hook the module's output) or ``"softmax"``. ``partial=False``
    turns off re-running only what the attention feeds (``adapters.partial``): every pass is a full forward.
    ``vocabulary``: the words the reports show instead of token ids — a sequence indexed by id, a mapping
    id → str, or a tokenizer (``convert_ids_to_tokens``); ids it does not cover show as their number.
    """
    return WrappedModel(net, attention, embeddings, intercept, partial, vocabulary)
