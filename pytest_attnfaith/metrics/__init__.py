"""The metrics layer: pure functions on batches and per-instance values, float64.

``distances``: output distributions, TVD, JSD; ``ranking``: Kendall τ-b; ``statistics``: a
statistic over instances with its confidence interval, and the three-state verdict.
"""

from pytest_attnfaith.metrics.distances import (
    binary_logit_gap,
    distribution_tolerance,
    jsd,
    kl,
    logits_of,
    output_distribution,
    restrict,
    tvd,
)
from pytest_attnfaith.metrics.margins import (
    RESOLUTION_ULPS,
    SCALES,
    as_columns,
    class_score,
    decision_score,
    default_resolution,
    flipped,
    margin,
    output_change,
    relative_change,
    runner_up,
    same_output,
    score_gradient,
    tolerance,
)
from pytest_attnfaith.metrics.ranking import kendall_tau
from pytest_attnfaith.metrics.statistics import (
    Estimate,
    decide,
    fraction_interval,
    instances_needed,
    mean_interval,
    mean_intervals,
    nan_summary,
)

__all__ = [
    "RESOLUTION_ULPS",
    "SCALES",
    "Estimate",
    "as_columns",
    "binary_logit_gap",
    "class_score",
    "decide",
    "decision_score",
    "default_resolution",
    "distribution_tolerance",
    "flipped",
    "fraction_interval",
    "instances_needed",
    "jsd",
    "kendall_tau",
    "kl",
    "logits_of",
    "margin",
    "mean_interval",
    "mean_intervals",
    "nan_summary",
    "output_change",
    "output_distribution",
    "relative_change",
    "restrict",
    "runner_up",
    "same_output",
    "score_gradient",
    "tolerance",
    "tvd",
]
