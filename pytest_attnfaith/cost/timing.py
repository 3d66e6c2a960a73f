"""The seconds of one unit of each thing an audit runs, timed by the estimate on this machine, on the audit's own
session (``Units``): per call and per row of each kind of pass (``cost.parts``), one bootstrap interval of each shape
the audit computes, one row of Kendall τ. A unit that takes less than ``CHEAP`` seconds is timed ``REPEATS`` times and
its fastest run kept (the least disturbed by the rest of the machine); a dearer one runs once.

Per call and per row from two timed passes: one of one instance (t₁ = c + r) and one of a chunk of k instances
(t_k = c + k·r), so r = (t_k − t₁)/(k − 1) and c = t₁ − r. A pass with a backward carries ``1 + BACKWARD_COST`` times
a forward's work per row (a backward costs about twice its forward); its per-call cost is its own one-instance pass
less that. Also here: whether the adversarial bound is exact, decided as the check decides it (its linear-readout
probes) on one instance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from pytest_attnfaith.adapters.passes import Edit, Forward
from pytest_attnfaith.checks._common import replace_rows
from pytest_attnfaith.checks.adversarial import linear_readout, search_max_jsd
from pytest_attnfaith.cost.parts import Part
from pytest_attnfaith.metrics import binary_logit_gap, kendall_tau, mean_intervals
from pytest_attnfaith.session import Context

BACKWARD_COST = 2.0
"""A backward pass costs about twice its forward pass."""
REPEATS = 3
CHEAP = 0.05
"""Seconds under which a timing is repeated (``REPEATS`` times, the fastest kept)."""
TAU_ROWS = 64
"""Rows of the synthetic Kendall τ timed (the first instances' real positions)."""


@dataclass(frozen=True)
class Units:
    """Seconds per call and per row of each kind of pass, of the audit's opening (``session``) and of the one-time
    set-up of its first edited pass, of one Kendall τ row and of one bootstrap interval per shape (rows, values)."""

    session: float
    setup: float
    per_call: dict[str, float]
    per_row: dict[str, float]
    tau_row: float
    intervals: dict[tuple[int, int], float]

    def price(self, part: Part) -> float:
        """Seconds of a part: its calls, its rows and the instances whose pass up to the attention it computes (the
        session: as measured)."""
        if part.kind == "session":
            return self.session
        return (
            part.calls * self.per_call[part.kind] + part.rows * self.per_row[part.kind] + part.upstream * self.per_row["upstream"]
        )


def fastest(run: Callable[[], Any], device: torch.device) -> float:
    """Seconds of ``run()`` (``timed``): the fastest of ``REPEATS`` runs when one is cheaper than ``CHEAP``, else of
    one."""
    best = math.inf
    for _ in range(REPEATS):
        best = min(best, timed(run, device))
        if best >= CHEAP:
            break
    return best


def timed(run: Callable[[], Any], device: torch.device) -> float:
    """Seconds of ``run()``: its wall time, or on a CPU the process's CPU time when less — the time the process
    waited for a core while other work ran on the machine is not the audit's (on one core's worth of threads the two
    agree on an idle machine; with more threads the wall time is the less)."""
    _synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    _synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall if device.type == "cuda" else min(wall, cpu)


def pass_units(context: Context, search: bool) -> tuple[dict[str, float], dict[str, float], float]:
    """Per call and per row of each kind of pass on ``context``'s model (``"upstream"``: per instance whose pass up to
    the attention an edited pass computes), and the one-time set-up seconds of the first edited pass (the partial-pass
    machinery, built again in every session). ``search``: also time a step of the adversarial search over one chunk
    of its instances (after one untimed step: the process's first use of autograd and of the optimiser)."""
    model, batch, device = context.model, context.batch, context.model.device
    size = min(batch.size, context.options.batch_size)
    one, chunk, copies = (
        batch.select(slice(0, 1)),
        batch.select(slice(0, size)),
        batch.select(torch.zeros(size, dtype=torch.long, device=batch.device)),
    )
    with torch.no_grad():
        full = _split(fastest(lambda: model.forward(one), device), fastest(lambda: model.forward(chunk), device), size)
        first = timed(lambda: model.forward(one, _uniform(one)), device)  # instance 0's upstream is cached from here
        single = fastest(lambda: model.forward(one, _uniform(one)), device)
        same = fastest(lambda: model.forward(copies, _uniform(copies)), device)
        fresh = timed(lambda: model.forward(chunk, _uniform(chunk)), device)  # computes the upstream of size − 1
    edited = _split(single, same, size)
    upstream = max(fresh - same, 0.0) / (size - 1) if size > 1 else 0.0
    row = {"full": full[1], "edited": edited[1], "upstream": upstream}
    row.update(gradient=(1 + BACKWARD_COST) * full[1], step=(1 + BACKWARD_COST) * edited[1])
    gradient = fastest(lambda: _gradient_pass(context, one), device)
    call = {"full": full[0], "edited": edited[0], "gradient": max(gradient - row["gradient"], 0.0), "step": 0.0}
    if search:
        instances = torch.as_tensor(context.defined()).nonzero().flatten()
        instances = instances[: max(context.options.batch_size // context.options.adversaries, 1)]
        _search_step(context, instances)  # warm-up: the process's first autograd and optimiser set-up, paid once
        step = fastest(lambda: _search_step(context, instances), device)
        call["step"] = max(step - len(instances) * context.options.adversaries * row["step"], 0.0)
    return call, row, max(first - single, 0.0)


def _split(single: float, chunk: float, size: int) -> tuple[float, float]:
    """(per call, per row) from the seconds of one instance and of ``size`` instances in one call."""
    row = max(chunk - single, 0.0) / (size - 1) if size > 1 else 0.0
    return max(single - row, 0.0), row


def _uniform(batch: Any) -> Edit:
    """The uniform check's edit of ``batch``: every head's read row 1/r over the r real positions."""
    real = batch.real.float()
    return Edit(replace_rows, {"weights": real / real.sum(dim=1, keepdim=True).clamp(min=1.0)})


def _gradient_pass(context: Context, one: Any) -> None:
    """What gradient × input runs for one instance: a pass with the attention detached and its backward to the
    embeddings (``explainers.gradient_x_input``)."""
    with torch.enable_grad():
        forward = context.model.forward(one, grad=True, detach_attention=True, capture_embeddings=True)
        if forward.embeddings is not None and forward.logits.requires_grad:
            torch.autograd.grad(forward.logits.sum(), forward.embeddings, allow_unused=True)


def _search_step(context: Context, instances: torch.Tensor) -> None:
    """One step of the adversarial search on one chunk of ``instances`` (``search_max_jsd``)."""
    one_step = replace(context, options=replace(context.options, adversarial_steps=1))
    with torch.enable_grad():
        search_max_jsd(one_step, instances.to(context.real.device))


def exact_bound(context: Context) -> tuple[bool, bool]:
    """Whether the output is binary, and whether the adversarial check will find its bound exact (no search):
    ``adversarial_method`` decides, else (``auto``) the check's linear-readout probes on one instance with two real
    tokens (a binary output that is not linear in the attention is searched)."""
    options = context.options
    binary = binary_logit_gap(context.logits) is not None
    defined = torch.as_tensor(context.defined()).nonzero().flatten()[:1]
    if "adversarial" not in options.checks or options.adversarial_method == "exact" or not len(defined):
        return binary, True
    if options.adversarial_method == "search" or not binary:
        return binary, False
    index = defined.to(context.batch.device)
    reference = context.reference
    one = Context(
        context.model,
        context.batch.select(index),
        options,
        Forward(
            probs=reference.probs[index.to(reference.probs.device)],
            rows=reference.rows[index.to(reference.rows.device)],
            attention=reference.attention[index.to(reference.attention.device)],
            logits=reference.logits[index.to(reference.logits.device)],
        ),
        sink_excluded=context.sink_excluded,
    )
    return binary, bool(linear_readout(one)[1].all())


def statistics_units(
    context: Context, shapes: Iterable[tuple[int, int]], tau: bool
) -> tuple[float, dict[tuple[int, int], float]]:
    """Seconds of one Kendall τ row (``tau``: the audit computes some; on synthetic scores over the first instances'
    real positions) and of one bootstrap interval of each shape (synthetic values in [−1, 1]), at the audit's
    ``confidence``: the statistics are pure functions of the values' shape, not of the model."""
    generator = np.random.default_rng(0)
    device = torch.device("cpu")
    tau_row = 0.0
    if tau:
        real = context.real.cpu()[:TAU_ROWS]
        x, y = generator.random(real.shape), generator.random(real.shape)
        tau_row = fastest(lambda: kendall_tau(x, y, real), device) / len(real)
    intervals = {shape: _interval_seconds(generator.uniform(-1.0, 1.0, shape), context.options.confidence) for shape in shapes}
    return tau_row, intervals


def _interval_seconds(values: np.ndarray, confidence: float) -> float:
    """Seconds of the bootstrap intervals of the rows of ``values`` (one vectorised bootstrap)."""
    return fastest(lambda: mean_intervals(values, confidence, 0, (-1.0, 1.0)), torch.device("cpu"))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
