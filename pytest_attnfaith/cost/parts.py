"""What an audit runs, counted from its options and its inputs before it runs: its *parts* (model calls of a kind and
the rows they carry, chunked as the checks chunk them) and its *statistics* (bootstrap intervals and Kendall τ rows).

A part's ``kind`` says how one of its calls is priced (``cost.timing``): ``full`` a pass of the model without edit or
gradient; ``edited`` a pass with the attention edited (the checks' counterfactuals, which may start at the attention);
``gradient`` a pass that backpropagates to the embeddings (gradient × input, the read share); ``step`` one step of the
adversarial search (an edited pass with its backward, and the optimiser's update); ``session`` the audit's opening
(its set-up and reference pass), which the estimate runs itself and measures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import torch

from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.audit import SHARE_INSTANCES
from pytest_attnfaith.checks.adversarial import LINEARITY_PROBES, PATIENCE
from pytest_attnfaith.options import Options
from pytest_attnfaith.session import BACKWARD_COST as BACKWARD_ROWS_DIVISOR

SEARCH_STEPS = 2 * PATIENCE
"""Steps the adversarial search is expected to take: it tests convergence every ``PATIENCE`` steps, so it stops
after 100, 200, … up to ``adversarial_steps``; its passes are the estimate's least certain part."""
TAU_CHECKS = ("gradient", "loo")
"""The checks whose statistic is a mean Kendall τ with a bootstrap interval (the others: a flagged fraction)."""


@dataclass(frozen=True)
class Part:
    """``calls`` model calls of one ``kind`` carrying ``rows`` instances in all, under the name ``name`` reports;
    ``upstream``: the instances whose pass up to the attention an edited part computes (the rest it finds in the
    adapter's row cache, which holds ``batch_size`` instances: ``sweeps``)."""

    name: str
    kind: str
    rows: int
    calls: int
    upstream: int = 0


@dataclass(frozen=True)
class Inputs:
    """What the counts read from the batch: per instance its real tokens, the distinct leave-one-out variants, whether
    the padding probe runs, whether the adversarial bound is exact (decided on one instance) and the heads per layer
    (empty without ``per_head``), with the layer the audit reads."""

    real: torch.Tensor
    deletions: int
    padding_probe: bool
    binary: bool
    exact: bool
    heads: tuple[int, ...] = ()
    read_layer: int = -1

    @property
    def size(self) -> int:
        return int(self.real.numel())

    @property
    def defined(self) -> int:
        return int((self.real >= 2).sum())

    @property
    def informative_tokens(self) -> int:
        return int(self.real[self.real >= 2].sum())


def chunks(rows: int, size: int) -> int:
    """Calls that carry ``rows`` rows in chunks of ``size``."""
    return -(-rows // max(size, 1))


def distinct_deletions(batch: Batch, how: str) -> int:
    """Leave-one-out variants that run (``Context.run_removed`` runs identical inputs once): one per real token of the
    instances with two or more, less — when deleting — the tokens equal to the real token just before them."""
    real = batch.real.cpu()
    informative = real & (real.sum(dim=1, keepdim=True) >= 2)
    if how != "delete" or batch.input_ids is None:
        return int(informative.sum())
    ids = batch.input_ids.cpu()
    repeated = informative[:, 1:] & informative[:, :-1] & (ids[:, 1:] == ids[:, :-1])
    return int(informative.sum() - repeated.sum())


def audit_parts(options: Options, inputs: Inputs) -> list[Part]:
    """Every part of ``af.audit`` with these options on these inputs, in the order it runs them."""
    n, size = inputs.size, options.batch_size
    probes = n + min(n, size) if inputs.padding_probe else min(n, size)
    parts = [
        Part("reference", "session", n, chunks(n, size)),
        Part("probes", "full", probes, (chunks(n, size) if inputs.padding_probe else 0) + 1),
        *check_parts(options, inputs, copies=1, shared=False),
        Part("read share", "gradient", min(n, SHARE_INSTANCES), 1),
    ]
    return sweeps(parts + atlas_parts(options, inputs), n, size)


def sweeps(parts: list[Part], n: int, capacity: int) -> list[Part]:
    """Each edited part's ``upstream``: the row cache is keyed by the instance's inputs and holds ``capacity``
    instances, so when the ``n`` instances fit the first edited part computes them all and the rest find them; when
    they do not, every edited part sweeps them in order and computes each again (a full cache starts afresh)."""
    out, first = [], True
    for part in parts:
        if part.kind in ("edited", "step"):
            part = replace(part, upstream=n if first or n > capacity else 0)
            first = False
        out.append(part)
    return out


def check_parts(options: Options, inputs: Inputs, copies: int, shared: bool) -> list[Part]:
    """The checks' parts on ``copies`` copies of the batch (the atlas's heads); ``shared``: leave-one-out and gradient
    × input come from the memo (a head's rows, whose importance does not depend on the head)."""
    n, size, real = inputs.size * copies, options.batch_size, copies * int(inputs.real.sum())
    informative = copies * inputs.informative_tokens
    backward_rows = max(size // BACKWARD_ROWS_DIVISOR, 1)
    rows = {
        "permutation": [("edited", n * options.permutations, chunks(n * options.permutations, size))],
        "uniform": [("edited", n, chunks(n, size))],
        "erasure": [("edited", informative, chunks(informative, size))],
        "gradient": [] if shared else [("gradient", n, chunks(n, backward_rows))],
        "loo": [] if shared else [("full", inputs.deletions, chunks(inputs.deletions, size))],
        "adversarial": _adversarial(options, inputs, n, real, copies),
    }
    return [Part(name, kind, count, calls) for name in options.checks for kind, count, calls in rows.get(name, []) if count]


def _adversarial(options: Options, inputs: Inputs, n: int, real: int, copies: int) -> list[tuple[str, int, int]]:
    """The linear-readout probes (a binary output, unless ``adversarial_method="search"``: one pass per real token and
    ``LINEARITY_PROBES`` per instance), then the search where the bound is not exact: per chunk of ``batch_size //
    adversaries`` instances, ``SEARCH_STEPS`` steps of one pass over its instances × adversaries."""
    parts = []
    if options.adversarial_method != "search" and inputs.binary and inputs.defined:
        probes = LINEARITY_PROBES * n
        parts += [("edited", real, chunks(real, options.batch_size)), ("edited", probes, chunks(probes, options.batch_size))]
    if not inputs.exact:
        searched, steps = copies * inputs.defined, min(options.adversarial_steps, SEARCH_STEPS)
        per_chunk = max(options.batch_size // options.adversaries, 1)
        parts.append(("step", searched * options.adversaries * steps, chunks(searched, per_chunk) * steps))
    return parts


def atlas_parts(options: Options, inputs: Inputs) -> list[Part]:
    """``per_head``: per layer, the layer row's checks (but for the layer the audit read with the mean over heads: its
    results are reused; leave-one-out once per audit), then every head's edits at once (the batch once per head)."""
    parts: list[Part] = []
    for layer, heads in enumerate(inputs.heads):
        if layer != inputs.read_layer or options.head != "mean":
            parts += [p for p in check_parts(options, inputs, copies=1, shared=False) if p.name != "loo"]
        parts += check_parts(options, inputs, copies=heads, shared=True)
        if options.aggregation != "attention":  # rollout: each row's reference is a pass of its own
            n, size = inputs.size, options.batch_size
            parts.append(Part("reference", "full", n * (1 + 2 * heads), (1 + heads) * chunks(n, size) + chunks(n * heads, size)))
    return [Part("atlas", part.kind, part.rows, part.calls) for part in parts]


def statistics_of(options: Options, inputs: Inputs) -> tuple[Counter[tuple[int, int]], int]:
    """The bootstrap intervals the audit computes, by shape (rows, values: one vectorised bootstrap each), and the
    rows of Kendall τ: one τ per instance and an interval per τ check; in the atlas also each layer row's, the heads'
    together and each head's alone, and the effects of the fraction checks (one interval per layer row, one
    vectorised over the heads)."""
    n = inputs.size
    taus = sum(name in TAU_CHECKS for name in options.checks)
    fractions = len(options.checks) - taus
    intervals: Counter[tuple[int, int]] = Counter({(1, n): taus})
    tau_rows = taus * n
    for layer, heads in enumerate(inputs.heads):
        own = int(layer != inputs.read_layer or options.head != "mean")
        intervals[(1, n)] += taus * (own + heads) + fractions
        intervals[(1, n * heads)] += taus
        intervals[(heads, n)] += fractions
        tau_rows += taus * n * (own + 2 * heads)
    return +intervals, tau_rows
