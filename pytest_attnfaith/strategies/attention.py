"""Strategies over attention: distributions over the real positions, permutations of them, and
counterfactual attention that keeps a model's output within a TVD bound.

``real`` is a (B, T) 0/1 or boolean tensor of the positions that may carry weight, or a mapping
of model inputs (its real positions: ``attention_mask`` and not ``special_tokens_mask``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

from pytest_attnfaith.adapters import AttentionModel, Edit, as_attention_model, prepare_batch
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.checks._common import replace_rows
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import jsd, restrict, tvd
from pytest_attnfaith.options import Options, resolve_options

KINDS: tuple[str, ...] = ("peaked", "flat", "dirichlet", "any")
HALVINGS = 8


def real_positions(real: Tensor | Mapping[str, Any]) -> Tensor:
    """The (B, T) boolean mask of real positions, from a mask tensor or from model inputs."""
    if isinstance(real, Mapping):
        return prepare_batch(real).real
    if not isinstance(real, Tensor) or real.dim() != 2:
        raise AttnFaithError(f"real is a {type(real).__name__}; expected a (B, T) 0/1 tensor or a mapping of model inputs")
    if not bool(((real == 0) | (real == 1)).all()):
        raise AttnFaithError("real holds values other than 0 and 1; expected a 0/1 mask of the real positions")
    return real.bool()


def _dirichlet(size: int) -> st.SearchStrategy[list[float]]:
    """Flat-Dirichlet-like weights: exponential variates −log(1 − u); shrink toward uniform."""
    uniform = st.floats(0.0, 1.0, exclude_max=True)
    return st.lists(uniform, min_size=size, max_size=size).map(lambda us: [1e-6 - math.log1p(-u) for u in us])


def _flat(size: int) -> st.SearchStrategy[list[float]]:
    """Close to uniform: every weight within a factor 5/3 of every other."""
    return st.lists(st.floats(-0.25, 0.25), min_size=size, max_size=size).map(lambda us: [1.0 + u for u in us])


@st.composite
def _peaked(draw: st.DrawFn, size: int, peak: float) -> list[float]:
    """One position holds mass ≥ ``peak`` (≥ 0.5, so it is the maximum); the rest is spread Dirichlet-like."""
    if size == 1:
        return [1.0]
    top = draw(st.integers(0, size - 1))
    mass = draw(st.floats(peak, 1.0))
    rest = draw(_dirichlet(size - 1))
    total = sum(rest)
    weights = [(1.0 - mass) * w / total for w in rest]
    return [*weights[:top], mass, *weights[top:]]


def _row(kind: str, size: int, peak: float) -> st.SearchStrategy[list[float]]:
    makers = {"peaked": lambda: _peaked(size, peak), "flat": lambda: _flat(size), "dirichlet": lambda: _dirichlet(size)}
    if kind == "any":
        return st.one_of(*(make() for make in makers.values()))
    return makers[kind]()


@st.composite
def _distributions(draw: st.DrawFn, real: Tensor, kind: str, peak: float) -> Tensor:
    out = torch.zeros(real.shape, dtype=torch.float32)
    for b, row in enumerate(real):
        positions = row.nonzero().flatten()
        if len(positions) == 0:
            continue
        weights = torch.tensor(draw(_row(kind, len(positions), peak)), dtype=torch.float64)
        out[b, positions] = (weights / weights.sum()).float()
    return out


def attention_distributions(real: Tensor | Mapping[str, Any], kind: str = "any", peak: float = 0.5) -> st.SearchStrategy[Tensor]:
    """Strategy of (B, T) float32 attention: each row a distribution over its real positions, 0 elsewhere.

    ``kind``: ``peaked`` (one position holds at least ``peak``), ``flat`` (near uniform),
    ``dirichlet`` (spread like a flat Dirichlet draw), or ``any`` of these. Rows without a real
    position are all zero.
    """
    if kind not in KINDS:
        raise AttnFaithError(f"kind={kind!r} is not valid: expected one of {KINDS}")
    if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not 0.5 <= peak <= 1.0:
        raise AttnFaithError(f"peak={peak!r} is not valid: expected a number in [0.5, 1] (so the peak is the maximum)")
    return _distributions(real_positions(real), kind, float(peak))


@st.composite
def _permutations(draw: st.DrawFn, real: Tensor) -> Tensor:
    index = torch.arange(real.shape[1]).repeat(real.shape[0], 1)
    for b, row in enumerate(real):
        positions = row.nonzero().flatten().tolist()
        index[b, positions] = torch.tensor(draw(st.permutations(positions)), dtype=torch.long)
    return index


def position_permutations(real: Tensor | Mapping[str, Any]) -> st.SearchStrategy[Tensor]:
    """Strategy of (B, T) long index tensors permuting each row's real positions among themselves.

    Every other position maps to itself; use ``x.gather(1, index)``. Shrinks toward the identity.
    """
    return _permutations(real_positions(real))


@dataclass
class AttentionCandidate:
    """A counterfactual attention α' (B, T) with its distance from the original α̂ and output p.

    ``mixture`` is λ in α' = (1 − λ)·α̂ + λ·β (β the drawn distribution); ``tvd`` = TVD(p(α'), p)
    ≤ ε per instance; ``jsd`` = JSD(α', α̂).
    """

    attention: Tensor
    original: Tensor
    mixture: Tensor
    tvd: Tensor
    jsd: Tensor

    def __repr__(self) -> str:
        return (
            f"AttentionCandidate(max JSD {float(self.jsd.max()):.4f}, max TVD {float(self.tvd.max()):.4f}, "
            f"mixture {[round(v, 4) for v in self.mixture.tolist()]})"
        )


class _Bounded:
    """One model and batch: the original attention and output, and the TVD-bounded mixtures."""

    def __init__(self, model: Any, inputs: Mapping[str, Any], options: Options) -> None:
        self.adapter: AttentionModel = as_attention_model(model)
        self.batch: Batch = prepare_batch(inputs)
        self.options = options
        with self.adapter.session(options):
            reference = self.adapter.forward(self.batch)
        self.real = self.batch.real.to(reference.probs.device)
        self.original = restrict(reference.attention.float().detach(), self.real)
        self.probs = reference.probs.detach()
        self._check_reproduced()

    def outputs(self, attention: Tensor) -> Tensor:
        """The output distributions with ``attention`` written into every head of the read layer (in a session)."""
        return self.adapter.forward_many(self.batch, Edit(replace_rows, {"weights": attention}))

    def _check_reproduced(self) -> None:
        """λ = 0 must be a valid candidate: the output with α̂ written back stays within ε."""
        with self.adapter.session(self.options):
            distance = tvd(self.outputs(self.original), self.probs)
        bad = (distance > self.options.epsilon).nonzero().flatten()
        if len(bad):
            raise AttnFaithError(
                f"writing the read attention back does not reproduce the output of instance {int(bad[0])} "
                f"(TVD {float(distance[bad[0]]):.4f} > epsilon {self.options.epsilon}); expected a model whose read "
                "attention is the one it uses (one distribution per instance, or choose a head with head=<int>)"
            )

    def candidate(self, target: Tensor, mixture: list[float]) -> AttentionCandidate:
        """Mix toward ``target``, halving λ per instance until TVD(p', p) ≤ ε (λ = 0 always is)."""
        target = target.to(self.original.device)
        lam = torch.tensor(mixture, dtype=torch.float32, device=self.original.device)
        with self.adapter.session(self.options):
            for _ in range(HALVINGS):
                attention, distance = self._mix(lam, target)
                over = distance > self.options.epsilon
                if not bool(over.any()):
                    break
                lam = torch.where(over, lam / 2, lam)
            else:
                lam = torch.where(over, torch.zeros_like(lam), lam)
                attention, distance = self._mix(lam, target)
        return AttentionCandidate(attention, self.original, lam, distance, jsd(attention, self.original))

    def _mix(self, lam: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        attention = (1 - lam[:, None]) * self.original + lam[:, None] * target
        return attention, tvd(self.outputs(attention), self.probs)


def tvd_bounded_attention(
    model: Any, inputs: Mapping[str, Any], epsilon: float = 0.05, kind: str = "any", **options: Any
) -> st.SearchStrategy[AttentionCandidate]:
    """Strategy of counterfactual attention α' that keeps the model's output within TVD ``epsilon``.

    Each example mixes the original attention α̂ with a drawn distribution β
    (``attention_distributions(kind)``) by a drawn λ ∈ [0, 1], halving λ per instance until the
    output moves at most ``epsilon`` (λ = 0, α̂ itself, always qualifies). α' is written into every
    head of the read layer, as in the ``adversarial`` check. ``options`` are audit options
    (``layer``, ``head``, ``query``, ``batch_size``, ``device``). The reference pass runs now.
    """
    resolved = resolve_options(epsilon=epsilon, **options)
    bounded = _Bounded(model, inputs, resolved)
    size = bounded.batch.size
    mixtures = st.lists(st.floats(0.0, 1.0), min_size=size, max_size=size)
    return st.builds(bounded.candidate, attention_distributions(bounded.batch.real, kind), mixtures)
