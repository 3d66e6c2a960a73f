"""``loo``: does the explanation rank tokens as leave-one-out does? (Jain & Wallace 2019, §4.1)

Per instance, Kendall τ-b between the scores under test (α̂ in an attention audit) and the
leave-one-out importance TVD(p(x), p(x₋t)) (``explainers.leave_one_out``: token t deleted, or
replaced with ``loo="mask"``). Passes when the mean τ (with its interval) reaches ``loo_threshold``.
J&W Table 2 (BiLSTM): SST .29, IMDB .34, AG News .37.
"""

from __future__ import annotations

from pytest_attnfaith.checks._common import Context, subject, tau_result
from pytest_attnfaith.explainers import leave_one_out
from pytest_attnfaith.results import CheckResult

MEANING = "{} ranks tokens differently from leave-one-out: removing the tokens it highlights barely changes the output"


def run(context: Context) -> CheckResult:
    return tau_result(
        context,
        "loo",
        leave_one_out.attribute(context),
        context.options.loo_threshold,
        MEANING.format(subject(context)),
        {"variant": context.options.loo},
    )
