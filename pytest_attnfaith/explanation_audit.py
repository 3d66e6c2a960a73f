"""Any explanation under the same tests: ``explain``, ``audit_explanation``, ``assert_explanation_faithful``,
``compare_explanations``.

An explainer is a name of the registry (``attention``, ``rollout``, ``gradient_x_input``,
``integrated_gradients``, ``leave_one_out``, ``shapley``) or a callable ``fn(inputs) -> (B, T)``. Its
scores are tested by the checks that take any explainer's scores — ERASER's ``comprehensiveness`` and
``sufficiency`` (default), and the ``gradient`` / ``loo`` agreement — and the report answers
**comprehensive** (removing its top tokens hurts the prediction more than removing random ones),
**sufficient** (its top tokens alone keep the prediction better than random ones) and **agrees** (it ranks
tokens as gradient × input and leave-one-out do). ``explanation_require`` (default: comprehensive,
sufficient) says which must be answered yes.

Explanations compared on the same inputs share one session, one reference pass, and the rows that do not
depend on the explanation (the random orderings' ERASER rows, gradient and leave-one-out importances).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor

from pytest_attnfaith import _recording, probes
from pytest_attnfaith.audit import build_report, instances_of, run_checks, warn_inconclusive
from pytest_attnfaith.checks._common import real_rows
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.explainers import Attribute, notes, resolve
from pytest_attnfaith.image_maps import image_record
from pytest_attnfaith.options import CHECK_NAMES, EXPLANATION_CHECK_NAMES, EXPLANATION_CHECKS, resolve_options
from pytest_attnfaith.results import Comparison, Report
from pytest_attnfaith.session import opened


def explain(model: Any, inputs: Any, explainer: Any, seed: int = 0, **options: Any) -> np.ndarray:
    """The scores (B, T) of ``explainer`` on ``inputs``, float64, 0 off the real positions."""
    resolved = resolve_options(seed=seed, **options)
    _, attribute = resolve(explainer, inputs)
    with opened(model, inputs, resolved) as context:
        return attribute(context).cpu().numpy()


def audit_explanation(model: Any, inputs: Any, explainer: Any, checks: Any = None, seed: int = 0, **options: Any) -> Report:
    """Test the scores of ``explainer`` on ``inputs``; a ``Report`` of kind ``"explanation"`` (never raises on a
    failing verdict; raises the ``AttnFaithError`` of an explainer that cannot run on this model). ``checks``: some of
    comprehensiveness, sufficiency, gradient, loo (None: the first two)."""
    reports, refused = _audits(model, inputs, [explainer], checks, seed, options)
    for error in refused.values():
        raise error
    return next(iter(reports.values()))


def compare_explanations(
    model: Any, inputs: Any, explainers: Any, checks: Any = None, seed: int = 0, **options: Any
) -> Comparison:
    """Test every explainer (a sequence, or a mapping name → explainer) on the same inputs: a ``Comparison``
    with ``reports`` (name → ``Report``), ``ranking`` (most checks passed first, then the highest sum of their
    statistics) and ``unavailable`` (name → why it could not run on this model: its ``AttnFaithError``), so that
    one explainer the model does not support costs the comparison nothing but its own row."""
    reports, refused = _audits(model, inputs, explainers, checks, seed, options)
    return Comparison(reports, unavailable={name: str(error) for name, error in refused.items()})


def _audits(
    model: Any, inputs: Any, explainers: Any, checks: Any, seed: int, options: dict[str, Any]
) -> tuple[dict[str, Report], dict[str, AttnFaithError]]:
    """The report of each explainer that ran, and the error of each that could not (published as a report
    without checks, whose ``error`` says why)."""
    if "require" in options:
        raise AttnFaithError(
            "require selects the questions of attention audits; explanation audits take explanation_require "
            "(some of 'comprehensive', 'sufficient', 'agrees')"
        )
    resolved = resolve_options(checks=_checks(checks), seed=seed, **options)
    named = _named(explainers, inputs)
    reports: dict[str, Report] = {}
    refused: dict[str, AttnFaithError] = {}
    with opened(model, inputs, resolved) as context:
        measured = probes.measured_on(context)
        described = {**context.model.describe(), **measured}
        probes.warn_model(context, described)
        image = image_record(context, {})  # an image audit: its first two instances under every map
        for name, attribute in named.items():
            try:
                scores = attribute(context)
                noted = _rows_of_tensors(notes.take(context), context)
                results = run_checks(dataclasses.replace(context, explanation=scores), resolved.checks)
            except AttnFaithError as refusal:
                refused[name] = refusal
                continue
            instances = {**instances_of(context), "scores": real_rows(scores, context.real)}
            if image is not None:
                instances["image"] = image
            model = {**described, "explainer": noted} if noted is not None else described
            reports[name] = build_report(results, resolved, model, instances, explainer=name)
    for report in reports.values():
        warn_inconclusive(report)
        _recording.publish(report)
    for name, reason in refused.items():
        unrun = build_report({}, resolved, described, {}, explainer=name)
        _recording.publish(dataclasses.replace(unrun, passed=False, error=str(reason)))
    return reports, refused


def _rows_of_tensors(entry: dict[str, Any] | None, context: Any) -> dict[str, Any] | None:
    """An explainer's report entry with its (B, T) tensors as the real positions' rows (as ``instances`` shows)."""
    if entry is None:
        return None
    return {key: real_rows(value, context.real) if isinstance(value, Tensor) else value for key, value in entry.items()}


def _checks(checks: Any) -> Any:
    """The explanation checks to run (None: comprehensiveness and sufficiency); attention counterfactuals refused."""
    if checks is None:
        return EXPLANATION_CHECK_NAMES
    for name in (checks,) if isinstance(checks, str) else checks:
        if name in CHECK_NAMES and name not in EXPLANATION_CHECKS:
            raise AttnFaithError(
                f"check {name!r} edits the attention, so it cannot test another explanation; expected some of "
                f"{EXPLANATION_CHECKS}"
            )
    return checks


def _named(explainers: Any, inputs: Any) -> dict[str, Attribute]:
    """``name → attribute`` for a mapping, a sequence or one explainer; names must be distinct."""
    if isinstance(explainers, Mapping):
        pairs = [(str(name), resolve(explainer, inputs)[1]) for name, explainer in explainers.items()]
    else:
        items = [explainers] if isinstance(explainers, str) or callable(explainers) else list(explainers)
        pairs = [resolve(explainer, inputs) for explainer in items]
    if not pairs:
        raise AttnFaithError("explainers is empty; expected at least one explainer name or callable")
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise AttnFaithError(f"two explainers are named {repeated[0]!r}; pass a mapping {{name: explainer}} to name them apart")
    return dict(pairs)
