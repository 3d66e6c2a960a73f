"""``audit``: run a set of checks on one model and batch, apply the verdict policy, build the Report.

Verdict policy: each check's statistic comes with a ``confidence``-level interval over the
instances and is ``passed``, ``failed`` or ``inconclusive`` (the interval straddles the threshold).
The questions are answered from their checks (DESIGN.md) — **used** (permutation, uniform, erasure),
**agrees** (gradient, loo), **unique** (adversarial): ``yes`` when every check of the question that
ran passed, ``no`` when one failed, else ``inconclusive``; ``not tested`` when none ran. The audit
passes when every required question is answered yes or not tested — or inconclusive, with
``inconclusive="pass"``. Every inconclusive check is also an ``InconclusiveWarning``.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import warnings
from typing import Any

import numpy as np
import scipy
import torch

from pytest_attnfaith import _recording, progress
from pytest_attnfaith.adapters import AttentionModel, as_attention_model, prepare_batch
from pytest_attnfaith.adapters.base import check_distribution
from pytest_attnfaith.checks import CHECKS, Context
from pytest_attnfaith.checks._common import real_rows
from pytest_attnfaith.errors import InconclusiveWarning
from pytest_attnfaith.options import QUESTIONS, Options, resolve_options
from pytest_attnfaith.results import CheckResult, Report


def audit(model: Any, inputs: Any, checks: Any = None, seed: int = 0, **options: Any) -> Report:
    """Audit the attention of ``model`` on ``inputs`` and return a ``Report`` (never raises on a failing verdict).

    ``model``: ``af.wrap(net, ...)`` or a Hugging Face ``PreTrainedModel``. ``inputs``: a mapping
    with ``input_ids`` (B, T), optional ``attention_mask`` and ``special_tokens_mask``.
    ``checks``: names of checks (None: all six). Options are documented in ``docs/``.
    """
    resolved = resolve_options(checks=checks, seed=seed, **options)
    adapter = as_attention_model(model)
    batch = prepare_batch(inputs)
    with adapter.session(resolved):
        batch = batch.to(adapter.device)
        reference = adapter.forward_chunked(batch)
        check_distribution(reference, batch, adapter.tap.where)
        context = Context(adapter, batch, resolved, reference)
        results = {name: CHECKS[name](context) for name in progress.track(resolved.checks, resolved.progress)}
        per_head = _per_head_table(adapter, batch, resolved) if resolved.per_head else []
        instances = _instances(context)
        described = adapter.describe()
    report = build_report(results, resolved, described, instances, per_head)
    warn_inconclusive(report)
    _recording.publish(report)
    return report


def answer_questions(results: dict[str, CheckResult]) -> dict[str, str]:
    """Question → ``yes`` / ``no`` / ``inconclusive`` / ``not tested`` from the verdicts of its checks that ran."""
    verdicts: dict[str, str] = {}
    for question, names in QUESTIONS.items():
        ran = [results[name].verdict for name in names if name in results]
        if not ran:
            verdicts[question] = "not tested"
        elif "failed" in ran:
            verdicts[question] = "no"
        elif all(verdict == "passed" for verdict in ran):
            verdicts[question] = "yes"
        else:
            verdicts[question] = "inconclusive"
    return verdicts


def warn_inconclusive(report: Report) -> None:
    """One ``InconclusiveWarning`` per inconclusive check, naming it and the instances it needs."""
    for result in report.inconclusive_checks:
        warnings.warn(f"attnfaith: {result.describe()}", InconclusiveWarning, stacklevel=3)


def build_report(
    results: dict[str, CheckResult],
    options: Options,
    model: dict[str, Any],
    instances: dict[str, Any],
    per_head: list[dict[str, Any]] | None = None,
) -> Report:
    verdicts = answer_questions(results)
    accepted = ("yes", "not tested", "inconclusive") if options.inconclusive == "pass" else ("yes", "not tested")
    passed = all(verdicts[question] in accepted for question in options.require)
    return Report(
        checks=results,
        verdicts=verdicts,
        required=options.require,
        passed=passed,
        options=options.to_dict(),
        model=model,
        environment=environment(),
        instances=instances,
        per_head=per_head or [],
    )


def environment() -> dict[str, Any]:
    """Versions recorded in every report."""
    transformers = sys.modules.get("transformers")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "transformers": getattr(transformers, "__version__", None),
    }


def _instances(context: Context) -> dict[str, Any]:
    """What the reports show per instance; instances without a real token have no prediction (None).

    With ``redact`` the tokens are position labels (``#3``: position 3 of the input), so that no input text
    (nor token id) reaches any report, message or artifact."""
    real = context.real
    some = real.any(dim=1).cpu().tolist()
    predicted, probability = context.predicted.cpu().tolist(), context.probs.max(dim=1).values.cpu().tolist()
    batch = context.batch.to("cpu")
    return {
        "count": context.batch.size,
        "tokens": position_labels(batch) if context.options.redact else context.model.tokens(batch),
        "attention": real_rows(context.attention, real),
        "predicted": [value if keep else None for value, keep in zip(predicted, some, strict=True)],
        "probability": [value if keep else None for value, keep in zip(probability, some, strict=True)],
    }


def position_labels(batch: Any) -> list[list[str]]:
    """Per instance, ``#t`` for each real position t: what ``redact`` shows instead of the tokens."""
    return [[f"#{t}" for t, keep in enumerate(real) if keep] for real in batch.real.tolist()]


def _per_head_table(adapter: AttentionModel, batch: Any, options: Options) -> list[dict[str, Any]]:
    """Every check's statistic for each (layer, head) read, the counterfactual replacing that layer."""
    rows = []
    for layer in adapter.layer_indices():
        heads = adapter.head_count(layer)
        for head in range(heads):
            variant = dataclasses.replace(options, layer=layer, head=head, per_head=False)
            adapter.options = variant
            reference = adapter.forward_chunked(batch)
            context = Context(adapter, batch, variant, reference)
            for name in options.checks:
                result = CHECKS[name](context)
                rows.append(
                    {
                        "layer": layer,
                        "head": head,
                        "check": name,
                        "statistic": result.statistic,
                        "interval": list(result.interval),
                        "threshold": result.threshold,
                        "verdict": result.verdict,
                        "passed": result.passed,
                    }
                )
    adapter.options = options
    return rows
