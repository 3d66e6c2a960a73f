"""``attention``: the attention row the audit reads, as an explanation (Bahdanau et al. 2015; Jain & Wallace 2019).

Scores α̂_t: the chosen layer's, head's (or heads' mean) and query row's attention, restricted to the
real positions and renormalised to sum to 1 (0 elsewhere).
"""

from __future__ import annotations

from torch import Tensor

from pytest_attnfaith.session import Context


def attribute(context: Context) -> Tensor:
    """α̂ (B, T), float64, from the audit's reference pass."""
    return context.attention
