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

import platform
import sys
import warnings
from typing import Any

import numpy as np
import scipy
import torch

from pytest_attnfaith import _recording, head_atlas, probes, progress
from pytest_attnfaith.adapters.sink import sink_mass
from pytest_attnfaith.checks import CHECKS, Context
from pytest_attnfaith.checks._common import real_rows
from pytest_attnfaith.errors import InconclusiveWarning, user_stacklevel
from pytest_attnfaith.image_maps import image_record
from pytest_attnfaith.options import QUESTIONS, Options, questions_for, resolve_options
from pytest_attnfaith.results import CheckResult, Report, question_answer
from pytest_attnfaith.session import opened

SHARE_INSTANCES = 8
"""Instances of the backward pass that measures how much of the output's sensitivity to the read layer's attention
flows through the query rows read (``AttentionModel.read_share``)."""
SHARE_WARNING = 0.5
"""Below this share the report warns that the output pools other query rows than the ones read."""


def audit(model: Any, inputs: Any, checks: Any = None, seed: int = 0, **options: Any) -> Report:
    """Audit the attention of ``model`` on ``inputs`` and return a ``Report`` (never raises on a failing verdict).

    ``model``: ``af.wrap(net, ...)`` or a Hugging Face ``PreTrainedModel``. ``inputs``: a mapping
    with ``input_ids`` (B, T) — or ``pixel_values`` (B, C, H, W), ``inputs_embeds``, audio features: the positions are
    then the embeddings' output's (``adapters.vision``) — optional ``attention_mask`` and ``special_tokens_mask``.
    ``checks``: names of checks (None: all six). Options are documented in ``docs/``.
    """
    resolved = resolve_options(checks=checks, seed=seed, **options)
    with opened(model, inputs, resolved) as context:
        measured = probes.measured_on(context)  # first: the probes' passes run before any check and are counted
        results = run_checks(context, resolved.checks)
        instances = instances_of(context)
        image = image_record(context, results)
        if image is not None:
            instances["image"] = image
        reading = _reading(context, instances["sink_mass"])  # before describe(): its pass is counted there
        per_head = head_atlas.per_head_rows(context, results) if resolved.per_head else []
        described = {**context.model.describe(), **reading, **measured}
        probes.warn_model(context, described)
    report = build_report(results, resolved, described, instances, per_head)
    warn_inconclusive(report)
    _recording.publish(report)
    return report


def run_checks(context: Context, names: tuple[str, ...]) -> dict[str, CheckResult]:
    """Each named check on ``context``, in order (with a progress display when ``progress=True``)."""
    return {name: CHECKS[name](context) for name in progress.track(names, context.options.progress)}


def answer_questions(results: dict[str, CheckResult], questions: dict[str, tuple[str, ...]] = QUESTIONS) -> dict[str, str]:
    """Question → ``yes`` / ``no`` / ``inconclusive`` / ``not tested`` from the verdicts of its checks that ran."""
    return {
        question: question_answer([results[name].verdict for name in names if name in results])
        for question, names in questions.items()
    }


def warn_inconclusive(report: Report) -> None:
    """One ``InconclusiveWarning`` per inconclusive check, naming it and the instances it needs."""
    for result in report.inconclusive_checks:
        warnings.warn(f"attnfaith: {result.describe()}", InconclusiveWarning, stacklevel=user_stacklevel())


def build_report(
    results: dict[str, CheckResult],
    options: Options,
    model: dict[str, Any],
    instances: dict[str, Any],
    per_head: list[dict[str, Any]] | None = None,
    explainer: str | None = None,
) -> Report:
    """The ``Report`` of an attention audit or, with ``explainer``, of an explanation audit (its questions, and
    ``explanation_require`` instead of ``require``)."""
    kind = "attention" if explainer is None else "explanation"
    required = options.require if explainer is None else options.explanation_require
    verdicts = answer_questions(results, questions_for(kind))
    accepted = ("yes", "not tested", "inconclusive") if options.inconclusive == "pass" else ("yes", "not tested")
    passed = all(verdicts[question] in accepted for question in required)
    return Report(
        checks=results,
        verdicts=verdicts,
        required=required,
        passed=passed,
        options=options.to_dict(),
        model=model,
        environment=environment(),
        instances=instances,
        per_head=per_head or [],
        kind=kind,
        explainer=explainer,
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


def instances_of(context: Context) -> dict[str, Any]:
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
        "sink_mass": sink_mass(context.reference.attention, context.batch).tolist(),
    }


def _reading(context: Context, mass: list[float]) -> dict[str, Any]:
    """For ``report.model``: the sink (excluded or kept, as the session decided; the mean of its per-instance
    ``mass``) and how much of the output's sensitivity to the read layer's attention flows through the rows read,
    with a warning when the output pools other rows."""
    described: dict[str, Any] = {
        "sink": {
            "position": "first attended token",
            "option": context.options.sink,
            "excluded": context.sink_excluded,
            "mean_mass": float(np.mean(mass)) if mass else None,
        },
        "warnings": [],
    }
    share = context.model.read_share(context.batch.select(slice(0, SHARE_INSTANCES)))
    if share is None:
        return described
    mean = float(torch.nanmean(share))
    described["read_share"] = {"mean": mean, "instances": int(share.numel())}
    if mean < SHARE_WARNING:
        described["warnings"].append(
            f"the query rows read carry {mean:.0%} of the output's sensitivity to the read layer's attention "
            f"(|dp/dA * A| on {share.numel()} instances): the output pools other query rows, so editing the rows "
            "read barely reaches it; query='all' reads and replaces every row"
        )
    return described


def position_labels(batch: Any) -> list[list[str]]:
    """Per instance, ``#t`` for each real position t: what ``redact`` shows instead of the tokens."""
    return [[f"#{t}" for t, keep in enumerate(real) if keep] for real in batch.real.tolist()]
