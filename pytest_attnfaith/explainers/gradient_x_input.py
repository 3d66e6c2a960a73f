"""``gradient_x_input``: gradient × input at the embeddings' output (Shrikumar et al. 2016; the importance of
Jain & Wallace 2019, §4.1).

Per real token t, g_t = |Σ_d e_td · ∂p_ŷ/∂e_td|, with p_ŷ the probability of the class predicted on the
unedited input and the attention **detached**, as in J&W, so that the gradient flows only through the
values. A model whose output has no gradient path to the embeddings gets g = 0 (Kendall τ against a
constant is undefined), never an error.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.adapters.chunks import collect_chunks
from pytest_attnfaith.session import Context


def attribute(context: Context) -> Tensor:
    """g (B, T), float64: |gradient × input| of p_ŷ, 0 off the real positions (computed once per audit)."""
    return context.remember("gradient_x_input", lambda: _importance(context))


def _importance(context: Context) -> Tensor:
    def importance(part: slice) -> Tensor:
        forward = context.model.forward(context.batch.select(part), grad=True, detach_attention=True, capture_embeddings=True)
        embeddings = forward.embeddings
        assert embeddings is not None
        chosen = forward.probs.gather(1, context.predicted[part].unsqueeze(1).to(forward.probs.device)).sum()
        grad = torch.autograd.grad(chosen, embeddings, allow_unused=True)[0] if chosen.requires_grad else None
        if grad is None:  # no gradient path from the output to the embeddings
            return torch.zeros(embeddings.shape[:2], dtype=torch.float64, device=embeddings.device)
        return (grad.double() * embeddings.detach().double()).sum(dim=-1).abs()

    out = collect_chunks(context.batch.size, context.backward_rows, importance)
    assert out is not None
    return torch.where(context.real, out.to(context.probs.device), 0.0)
