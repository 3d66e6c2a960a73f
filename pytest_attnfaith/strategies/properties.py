"""Property helpers for Hypothesis tests: Serrano & Smith's erasure property and search steering.

@given(x=perturbed(base, tokenizer=tok, max_edits=3))
def test_erasing_the_top_token_matters_most(x):
    report = assert_erasure_property(model, x)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import target

from pytest_attnfaith.assertions import failure_message
from pytest_attnfaith.audit import audit
from pytest_attnfaith.errors import AttentionNotFaithful, AttnFaithError, InconclusiveWarning
from pytest_attnfaith.results import Report
from pytest_attnfaith.strategies.tokens import PerturbedInputs

DISAGREEMENT_LABEL = "attention-gradient disagreement (-mean tau)"


def assert_erasure_property(
    model: Any, inputs: Mapping[str, Any], margin: float = 0.0, threshold: float = 0.0, seed: int = 0, **options: Any
) -> Report:
    """Erasing the most attended token moves the output at least as much as erasing another (Serrano & Smith).

    Runs the ``erasure`` check alone with ``erasure_margin=margin`` (an instance fails when the
    top erasure's TVD minus the mean TVD of erasing each other real token is below ``margin``)
    and ``erasure_threshold=threshold`` (default 0: every instance must hold). A property holds per
    instance, not on average: the check's interval decides a failure (a flagged instance puts it
    above a threshold of 0), and an inconclusive verdict — no instance flagged, too few instances to
    bound the fraction — passes, without an ``InconclusiveWarning``. Returns the ``Report``; raises
    ``AttentionNotFaithful`` otherwise, with the edited text of the failing instances when
    ``inputs`` come from ``perturbed``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InconclusiveWarning)
        report = audit(
            model,
            inputs,
            checks=("erasure",),
            require=("used",),
            seed=seed,
            erasure_margin=margin,
            erasure_threshold=threshold,
            **{"inconclusive": "pass", **options},
        )
    if not report.passed:
        message = failure_message(report, options.get("worst", 3))
        if isinstance(inputs, PerturbedInputs):
            flagged = np.flatnonzero(report.checks["erasure"].flagged).tolist()
            message += "\n  failing inputs: " + inputs.describe(rows=flagged).replace("\n", "\n    ")
        raise AttentionNotFaithful(message, report)
    return report


def target_disagreement(report: Report, check: str = "gradient", label: str = DISAGREEMENT_LABEL) -> float:
    """Steer Hypothesis toward inputs where attention and ``check``'s importance disagree most.

    Calls ``hypothesis.target(-mean τ, label=label)`` with the mean Kendall τ of ``check``
    (``gradient`` or ``loo``) in ``report`` and returns that observation (NaN, and no target, when
    τ is undefined for every instance). Call it once per example, inside a ``@given`` test.
    """
    if check not in ("gradient", "loo"):
        raise AttnFaithError(f"check={check!r} is not valid: expected 'gradient' or 'loo' (a rank-agreement check)")
    if check not in report.checks:
        raise AttnFaithError(f"the report has no {check!r} result (checks run: {sorted(report.checks)}); audit with that check")
    observation = -float(report.checks[check].statistic)
    if math.isfinite(observation):
        target(observation, label=label)
    return observation
