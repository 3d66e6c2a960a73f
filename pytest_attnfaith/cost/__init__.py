"""``af.estimate``: what an audit will cost — model passes, seconds, peak memory — before any counterfactual runs.

The audit is counted, then priced with units timed on this machine:

* **passes** (``cost.parts``): every part of the audit from the options and the inputs' real tokens, as the checks
  chunk them (a *pass* is one instance through the audited attention and what it feeds, as a forward hook on the
  attention module counts it: counterfactual passes that start at the attention count too)::

    reference             n                        uniform     n
    probes                n + min(n, batch_size)   gradient    n            (with a backward, batch_size // 4 a call)
    read share            min(n, 8)                erasure     Σ_i r_i      (instances with r_i ≥ 2 real tokens)
    permutation           n · permutations         loo         the distinct deletions (≤ Σ_i r_i)
    adversarial           Σ_i r_i + 3n (the linear-readout probes, for a binary output unless
                          ``adversarial_method="search"``), then, unless the bound is exact, the search:
                          n · adversaries · min(steps, 200)
    per_head (atlas)      per layer, its layer row's checks (reused for the layer read with the mean over heads),
                          then every check's edits once per head (leave-one-out and gradient × input from the memo)

  Whether the bound is exact is decided as the check decides it — its linear-readout probes — on one instance.
* **seconds** = the audit's opening (its set-up and reference pass: the estimate opens the same session, timed)
  + the set-up of the first edited pass + Σ over parts (calls × seconds per call + rows × seconds per row, of the
  part's kind: ``cost.timing``) + the statistics: bootstrap intervals × the seconds of one interval of their shape,
  Kendall τ rows × the seconds of one row.
* **peak_memory_bytes** = parameters and buffers + the activations of ``batch_size`` instances (every module's
  outputs in a one-instance pass; what a pass with gradients keeps alive) — or, on CUDA, the allocator's peak.

``max_passes`` / ``budget_seconds`` refuse an audit whose estimate exceeds them (``refuse_over_budget``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_attnfaith.adapters import as_attention_model
from pytest_attnfaith.cost.parts import Inputs, Part, audit_parts, distinct_deletions, statistics_of
from pytest_attnfaith.cost.timing import Units, exact_bound, pass_units, statistics_units, timed
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.options import Options, resolve_options
from pytest_attnfaith.session import Context, opened


@dataclass(frozen=True)
class CostEstimate:
    """What an audit will cost: ``passes`` (instances through the model), ``seconds``, ``peak_memory_bytes``;
    ``per_check`` the passes of each part, ``seconds_per_part`` the seconds of each (with ``"set-up"`` and
    ``"statistics"``), ``units`` the timed units they are priced with."""

    passes: int
    seconds: float
    peak_memory_bytes: int
    per_check: dict[str, int] = field(default_factory=dict)
    seconds_per_part: dict[str, float] = field(default_factory=dict)
    units: Units | None = None
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
            "seconds_per_part": dict(self.seconds_per_part),
            "instances": self.instances,
        }


def estimate(model: Any, inputs: Any, checks: Any = None, seed: int = 0, **options: Any) -> CostEstimate:
    """The cost of ``af.audit(model, inputs, checks, seed, **options)``, counted and priced with units timed on this
    machine (see the module); no counterfactual of the audit runs."""
    return estimate_resolved(model, inputs, resolve_options(checks=checks, seed=seed, **options))


def estimate_resolved(model: Any, inputs: Any, options: Options) -> CostEstimate:
    adapter = as_attention_model(model)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with contextlib.ExitStack() as stack:
        opening: list[Context] = []
        session = timed(lambda: opening.append(stack.enter_context(opened(adapter, inputs, options))), adapter.device)
        context = opening[0]  # opened: the audit's set-up and reference pass, timed
        with torch.no_grad(), _activation_meter(adapter.module) as activations:
            context.model.forward(context.batch.select(slice(0, 1)))
        counted = _inputs_of(context)
        parts = audit_parts(options, counted)
        call, row, setup = pass_units(context, search=any(part.kind == "step" for part in parts))
        shapes, tau_rows = statistics_of(options, counted)
        tau_row, intervals = statistics_units(context, shapes, tau=tau_rows > 0)
    units = Units(session, setup, call, row, tau_row, intervals)
    per_check, seconds = _totals(parts, units)
    seconds["statistics"] = tau_rows * tau_row + sum(count * intervals[shape] for shape, count in shapes.items())
    parameters = sum(p.numel() * p.element_size() for p in adapter.module.parameters())
    parameters += sum(b.numel() * b.element_size() for b in adapter.module.buffers())
    peak = parameters + activations["bytes"] * min(options.batch_size, counted.size)
    if torch.cuda.is_available() and str(getattr(adapter, "device", "cpu")).startswith("cuda"):
        peak = max(peak, int(torch.cuda.max_memory_allocated()))
    return CostEstimate(sum(per_check.values()), sum(seconds.values()), peak, per_check, seconds, units, counted.size)


def _inputs_of(context: Context) -> Inputs:
    """What ``cost.parts`` counts from: the session's batch, the exactness of the adversarial bound, the heads."""
    options, batch = context.options, context.batch
    binary, exact = exact_bound(context)
    heads = tuple(context.model.head_count(layer) for layer in context.model.layer_indices()) if options.per_head else ()
    return Inputs(
        real=batch.real.sum(dim=1).cpu(),
        deletions=distinct_deletions(batch, options.loo),
        padding_probe=batch.has_mask and batch.input_ids is not None,
        binary=binary,
        exact=exact,
        heads=heads,
        read_layer=context.model.layer_indices().index(context.model.read_layer()) if heads else -1,
    )


def _totals(parts: list[Part], units: Units) -> tuple[dict[str, int], dict[str, float]]:
    """Passes and seconds per part name (the set-up of the first edited pass under ``"set-up"``)."""
    passes: dict[str, int] = {}
    seconds: dict[str, float] = {"set-up": units.setup}
    for part in parts:
        passes[part.name] = passes.get(part.name, 0) + part.rows
        seconds[part.name] = seconds.get(part.name, 0.0) + units.price(part)
    return passes, seconds


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
