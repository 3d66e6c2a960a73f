"""``gradient_x_input``: gradient × input at the embeddings' output (Shrikumar et al. 2016; the importance of
Jain & Wallace 2019, §4.1).

Per real token t, g_t = |Σ_d e_td · ∂s_ŷ/∂e_td|, with s_ŷ the output score of the class predicted on the
unedited input — on ``scale="margin"`` its margin z_ŷ − z_r (r the runner-up on x), on ``"probability"`` its
probability p_ŷ (J&W) — and the attention **detached**, as in J&W, so that the gradient flows only through the
values. On ``margin``, an importance within the resolution (``Context.tolerance``: a change of the logits the
model's dtype cannot show) is exactly 0; ``probability`` keeps 0.2's values. A model whose output has no gradient
path to the embeddings gets g = 0 (Kendall τ against a constant is undefined), never an error.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.adapters.chunks import collect_chunks
from pytest_attnfaith.metrics import score_gradient
from pytest_attnfaith.session import Context


def attribute(context: Context) -> Tensor:
    """g (B, T), float64: |gradient × input| of s_ŷ, 0 off the real positions (computed once per audit)."""
    return context.remember("gradient_x_input", lambda: _importance(context))


def _importance(context: Context) -> Tensor:
    def importance(part: slice) -> Tensor:
        forward = context.model.forward(context.batch.select(part), grad=True, detach_attention=True, capture_embeddings=True)
        embeddings = forward.embeddings
        assert embeddings is not None
        grad = score_gradient(forward.logits, context.predicted[part], context.rivals[part], context.options.scale, embeddings)
        return (grad.double() * embeddings.detach().double()).sum(dim=-1).abs()

    out = collect_chunks(context.batch.size, context.backward_rows, importance)
    assert out is not None
    out = out.to(context.logits.device)
    if context.options.scale == "margin":
        out = torch.where(out > context.tolerance.unsqueeze(1), out, 0.0)
    return torch.where(context.real, out, 0.0)
