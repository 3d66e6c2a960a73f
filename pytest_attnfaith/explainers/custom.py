"""Any callable as an explainer: ``fn(inputs) -> (B, T)`` scores, an array or a tensor.

``inputs`` is the mapping the user gave, with its tensors on the audit's device; ``fn`` runs inside the
audit's session (the model in eval mode). The scores are validated (shape (B, T), finite on the real
positions) and set to 0 off the real positions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.session import Context


def from_callable(fn: Callable[[Any], Any], inputs: Mapping[str, Any], name: str) -> Callable[[Context], Tensor]:
    """The ``attribute(context)`` of ``fn``, called on ``inputs`` moved to the audit's device."""

    def attribute(context: Context) -> Tensor:
        device = context.batch.input_ids.device
        moved = {key: value.to(device) if isinstance(value, Tensor) else value for key, value in inputs.items()}
        return validated(fn(moved), context, name)

    return attribute


def validated(raw: Any, context: Context, name: str) -> Tensor:
    """``raw`` as (B, T) float64 scores on the audit's device, 0 off the real positions, or ``AttnFaithError``."""
    expected = (context.batch.size, context.batch.length)
    try:
        scores = raw.detach().double() if isinstance(raw, Tensor) else torch.from_numpy(np.asarray(raw, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise AttnFaithError(
            f"explainer {name!r} returned {type(raw).__name__}, not numbers ({err}); "
            f"expected an array or tensor of shape {expected}"
        ) from None
    if tuple(scores.shape) != expected:
        raise AttnFaithError(
            f"explainer {name!r} returned scores of shape {tuple(scores.shape)}; expected {expected}, one score per input token"
        )
    scores = scores.to(context.probs.device)
    real = context.real
    if not bool(torch.isfinite(scores[real]).all()):
        bad = (~torch.isfinite(scores) & real).nonzero()[0].tolist()
        raise AttnFaithError(
            f"explainer {name!r} returned a non-finite score at instance {bad[0]}, position {bad[1]}; expected finite "
            "scores on every real token"
        )
    return torch.where(real, scores, 0.0)
