"""``af.estimate``: what an audit will cost — model passes, seconds, peak memory — before any counterfactual runs.

One probe: after the audit's own reference pass over ``inputs`` (which sets the session up), one pass of the
audit's adapter over them, timed, with every module's output measured (and one of a single instance, for the per-call
overhead). The passes are counted from the options and the inputs' real
tokens, as the checks run them (a *pass* is one instance through the audited attention and what it feeds, as a
forward hook on the attention module counts it: counterfactual passes that start at the attention count too):

    reference             n                        uniform     n
    read share            min(n, 8)                gradient    n            (with a backward)
    permutation           n · permutations         erasure     Σ_i r_i      (instances with r_i ≥ 2 real tokens)
    loo                   Σ_i r_i                  adversarial Σ_i r_i + 3n (the linear-readout probes, but with
                                                               ``adversarial_method="search"``), then, unless the
                                                               output is binary (its readout is then expected linear
                                                               in the attention: the exact bound needs no pass), the
                                                               search: n · adversaries · min(steps, 200). A binary
                                                               output that proves not linear runs the search as well:
                                                               the estimate misses those passes
    per_head (atlas)      every check's passes once per head of the audited layer (each head is edited alone)

``seconds`` = (the probe's seconds per instance) × (passes + 2 × the passes with a backward) + the adversarial
calls × (the seconds of one timed step: an edited pass of one instance with its backward — the per-call overhead that
dominates small models), the calls being each part's passes in chunks of ``batch_size`` and the search's steps;
``peak_memory_bytes`` = parameters and buffers + the activations of ``batch_size`` instances (every module's outputs
in the probe, per instance; what a pass with gradients keeps alive) — or, on CUDA, the allocator's peak.
``max_passes`` / ``budget_seconds`` refuse an audit whose estimate exceeds them (``refuse_over_budget``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_attnfaith.adapters import as_attention_model
from pytest_attnfaith.adapters.passes import Edit
from pytest_attnfaith.audit import SHARE_INSTANCES
from pytest_attnfaith.checks._common import replace_rows
from pytest_attnfaith.checks.adversarial import LINEARITY_PROBES, PATIENCE
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.metrics import binary_logit_gap
from pytest_attnfaith.options import Options, resolve_options
from pytest_attnfaith.session import opened

BACKWARD_COST = 2.0
"""A backward pass costs about twice its forward pass."""
SEARCH_STEPS = 2 * PATIENCE
"""Steps the adversarial search is expected to take: it tests convergence every ``PATIENCE`` steps, so it stops
after 100, 200, … up to ``adversarial_steps``; its passes are the estimate's least certain part."""


@dataclass(frozen=True)
class CostEstimate:
    """What an audit will cost: ``passes`` (instances through the model), ``seconds``, ``peak_memory_bytes``;
    ``per_check`` the passes of each part, ``probe_seconds`` the timed reference pass it is scaled from."""

    passes: int
    seconds: float
    peak_memory_bytes: int
    per_check: dict[str, int] = field(default_factory=dict)
    probe_seconds: float = 0.0
    instances: int = 0

    def describe(self) -> str:
        parts = ", ".join(f"{name} {count:,}" for name, count in self.per_check.items())
        return (
            f"about {self.passes:,} model passes ({parts}), {self.seconds:.1f} s and "
            f"{self.peak_memory_bytes / 2**20:,.0f} MiB at peak for {self.instances} instances"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "seconds": self.seconds,
            "peak_memory_bytes": self.peak_memory_bytes,
            "per_check": dict(self.per_check),
            "probe_seconds": self.probe_seconds,
            "instances": self.instances,
        }


def estimate(model: Any, inputs: Any, checks: Any = None, seed: int = 0, **options: Any) -> CostEstimate:
    """The cost of ``af.audit(model, inputs, checks, seed, **options)`` from one timed probe pass (see the module)."""
    return estimate_resolved(model, inputs, resolve_options(checks=checks, seed=seed, **options))


def estimate_resolved(model: Any, inputs: Any, options: Options) -> CostEstimate:
    adapter = as_attention_model(model)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with opened(adapter, inputs, options) as context:  # the audit's reference pass (and its one-time set-up)
        with _activation_meter(adapter.module) as activations:
            probe = _timed_pass(context.model, context.batch)
        _timed_step(context)  # the first edited pass sets up the partial-pass machinery: not a step's cost
        single = _timed_step(context)
        real = context.batch.real.sum(dim=1).cpu()
        exact = binary_logit_gap(context.logits) is not None and options.adversarial_method != "search"
        heads = [context.model.head_count(layer) for layer in context.model.layer_indices()] if options.per_head else []
    n = int(real.numel())
    per_check, backward = passes_of(options, real, exact, heads)
    per_check["probes"] = n + min(n, options.batch_size)  # probes.py: the padded batch, and a repeat of one chunk
    total = sum(per_check.values())
    per_instance = probe / max(n, 1)
    calls = sum(-(-rows // options.batch_size) for rows in per_check.values()) + _search_calls(options, n, exact)
    seconds = per_instance * (total + BACKWARD_COST * backward) + single * calls
    parameters = sum(p.numel() * p.element_size() for p in adapter.module.parameters())
    parameters += sum(b.numel() * b.element_size() for b in adapter.module.buffers())
    peak = parameters + int(activations["bytes"] / max(n, 1) * min(options.batch_size, max(n, 1)))
    if torch.cuda.is_available() and str(getattr(adapter, "device", "cpu")).startswith("cuda"):
        peak = max(peak, int(torch.cuda.max_memory_allocated()))
    return CostEstimate(total, seconds, peak, per_check, probe, n)


def passes_of(options: Options, real: torch.Tensor, exact: bool, heads: list[int]) -> tuple[dict[str, int], int]:
    """Passes per part of the audit (see the module's table) and how many of them run a backward; ``exact``: the
    adversarial bound is expected exact; ``heads``: the heads of each layer, for the atlas (empty without
    ``per_head``)."""
    n = int(real.numel())
    informative = int(real[real >= 2].sum())
    probes = informative + LINEARITY_PROBES * n if options.adversarial_method != "search" else 0
    search = n * options.adversaries * min(options.adversarial_steps, SEARCH_STEPS)
    rows = {
        "permutation": n * options.permutations,
        "uniform": n,
        "erasure": informative,
        "gradient": n,
        "loo": informative,
        "adversarial": probes + (0 if exact else search),
    }
    backward = {"gradient": n, "adversarial": 0 if exact else search}
    checks = [name for name in options.checks if name in rows]
    per_check = {"reference": n, "read share": min(n, SHARE_INSTANCES), **{name: rows[name] for name in checks}}
    grad = min(n, SHARE_INSTANCES) + sum(backward.get(name, 0) for name in checks)
    if heads:  # other layers' layer rows (loo once per audit), then every head alone (gradient once per layer)
        edited = sum(rows[name] for name in checks if name not in ("loo", "gradient"))
        per_check["atlas"] = (len(heads) - 1 + sum(heads)) * edited + (len(heads) - 1) * n * ("gradient" in checks)
        grad += (len(heads) - 1 + sum(heads)) * backward.get("adversarial", 0) * ("adversarial" in checks)
    return per_check, grad


def _timed_pass(adapter: Any, batch: Any) -> float:
    """Seconds of one pass of the audit's adapter over ``batch`` (taps installed, no edit, no gradient)."""
    with torch.no_grad():
        start = time.perf_counter()
        adapter.forward(batch)
        return time.perf_counter() - start


def _timed_step(context: Any) -> float:
    """Seconds of what one adversarial search step runs: an edited pass of a chunk of instances with gradients
    to the attention, and its backward (here: the rows replaced by the uniform distribution, a chunk of one)."""
    batch = context.batch.select(slice(0, 1))
    real = batch.real.to(context.probs.device)
    weights = (real / real.sum(dim=1, keepdim=True).clamp(min=1)).double().requires_grad_(True)
    with torch.enable_grad():
        start = time.perf_counter()
        forward = context.model.forward(batch, Edit(replace_rows, {"weights": weights}), grad=True)
        if forward.probs.requires_grad:  # an output that ignores the attention has nothing to backpropagate
            forward.probs.sum().backward()
        return time.perf_counter() - start


def _search_calls(options: Options, n: int, exact: bool) -> int:
    """Optimiser steps of the adversarial search (one pass and one backward each, over a chunk of instances)."""
    if exact or "adversarial" not in options.checks:
        return 0
    chunks = -(-n // max(options.batch_size // options.adversaries, 1))
    return chunks * min(options.adversarial_steps, SEARCH_STEPS)


@contextlib.contextmanager
def _activation_meter(module: torch.nn.Module) -> Iterator[dict[str, int]]:
    """Bytes of every tensor every submodule outputs while active (what a pass with gradients keeps alive)."""
    total = {"bytes": 0}

    def count(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        tensors = output if isinstance(output, (tuple, list)) else (output,)
        total["bytes"] += sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    handles = [sub.register_forward_hook(count) for sub in module.modules()]
    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()


def refuse_over_budget(model: Any, inputs: Any, options: Options, batches: int = 1) -> None:
    """Raise ``AttnFaithError`` with the estimate when it exceeds ``max_passes`` or ``budget_seconds`` (``batches``:
    how many batches like ``inputs`` a sequential audit may draw). Nothing is estimated when neither is set."""
    if options.max_passes is None and options.budget_seconds is None:
        return
    cost = estimate_resolved(model, inputs, options)
    passes, seconds = cost.passes * batches, cost.seconds * batches
    over = []
    if options.max_passes is not None and passes > options.max_passes:
        over.append(f"{passes:,} passes > max_passes={options.max_passes:,}")
    if options.budget_seconds is not None and seconds > options.budget_seconds:
        over.append(f"{seconds:.1f} s > budget_seconds={options.budget_seconds:g}")
    if over:
        scope = f" over up to {batches} batches" if batches > 1 else ""
        raise AttnFaithError(
            f"the audit's estimate exceeds its budget ({'; '.join(over)}){scope}: {cost.describe()}; "
            "lower permutations / adversaries / adversarial_steps, audit fewer instances, or raise the budget"
        )
