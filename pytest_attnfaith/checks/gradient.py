"""``gradient``: does attention rank tokens as the output's gradient does? (Jain & Wallace 2019, §4.1)

Per instance, Kendall τ-b between α̂ and g_t = |Σ_d e_td · ∂p_ŷ/∂e_td| (gradient × input at the
embeddings' output, p_ŷ the probability of the predicted class), with the attention detached so
that the gradient flows only through the values, as in J&W. Fails when the mean τ (NaN-free) is
below ``gradient_threshold``. J&W Table 2 (BiLSTM): SST .35, IMDB .44, 20News .13, AG News .39.
"""

from __future__ import annotations

import torch

from pytest_attnfaith.adapters.base import collect_chunks
from pytest_attnfaith.checks._common import Context, tau_result
from pytest_attnfaith.results import CheckResult

MEANING = "attention ranks tokens differently from the output's gradient: it highlights tokens the output is not sensitive to"


def gradient_importance(context: Context) -> torch.Tensor:
    """g (B, T): |gradient × input| of p_ŷ at the embeddings' output, attention detached."""

    def importance(part: slice) -> torch.Tensor:
        forward = context.model.forward(context.batch.select(part), grad=True, detach_attention=True, capture_embeddings=True)
        assert forward.embeddings is not None
        chosen = forward.probs.gather(1, context.predicted[part].unsqueeze(1).to(forward.probs.device)).sum()
        (grad,) = torch.autograd.grad(chosen, forward.embeddings)
        return (grad * forward.embeddings).sum(dim=-1).abs().detach()

    out = collect_chunks(context.batch.size, context.backward_rows, importance)
    assert out is not None
    return out.to(context.probs.device)


def run(context: Context) -> CheckResult:
    return tau_result(context, "gradient", gradient_importance(context), context.options.gradient_threshold, MEANING)
