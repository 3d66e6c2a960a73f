"""``gradient``: does the explanation rank tokens as the output's gradient does? (Jain & Wallace 2019, §4.1)

Per instance, Kendall τ-b between the scores under test (the attention read, α̂, in an attention
audit) and gradient × input, g_t = |Σ_d e_td · ∂p_ŷ/∂e_td| (``explainers.gradient_x_input``: at the
embeddings' output, attention detached). Passes when the mean τ (NaN-free, with its interval) reaches
``gradient_threshold``. J&W Table 2 (BiLSTM): SST .35, IMDB .44, 20News .13, AG News .39.
"""

from __future__ import annotations

from pytest_attnfaith.checks._common import Context, subject, tau_result
from pytest_attnfaith.explainers import gradient_x_input
from pytest_attnfaith.results import CheckResult

MEANING = "{} ranks tokens differently from the output's gradient: it highlights tokens the output is not sensitive to"


def run(context: Context) -> CheckResult:
    importance = gradient_x_input.attribute(context)
    return tau_result(
        context,
        "gradient",
        importance,
        context.options.gradient_threshold,
        MEANING.format(subject(context)),
    )
