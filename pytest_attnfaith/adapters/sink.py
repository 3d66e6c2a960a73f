"""The attention sink: the first attended position, where trained causal language models park attention.

Under a causal mask the first token is the only key every query sees, and trained decoders put a large
share of attention on it whatever it says (Xiao et al. 2023, "Efficient Streaming Language Models with
Attention Sinks"; measured here on SmolLM2-135M: 0.45 of the last token's attention on average over
layers, ``docs/llm.md``). Option ``sink``: ``"keep"`` keeps it as an ordinary token; ``"exclude"``
removes it from the real positions exactly as a special token is removed (no statistic sees it; the
counterfactuals treat it as they treat special tokens); ``"auto"`` (default) excludes it where the read
attention is causal and keeps it elsewhere (a bidirectional encoder's sinks, ``[CLS]`` and ``[SEP]``,
are special tokens already). Every report gives the sink's mass in the attention read, per instance.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters.inputs import Batch


def sink_positions(batch: Batch) -> Tensor:
    """Per instance, the first position with ``attention_mask == 1`` (the first token every query may see)."""
    mask = batch.attention_mask.bool()
    return (mask & (mask.cumsum(dim=1) == 1)).int().argmax(dim=1)


def excluded(option: str, causal: bool | None) -> bool:
    """Whether ``sink`` removes the sink from the real positions (``"auto"``: under causal attention)."""
    return option == "exclude" or (option == "auto" and bool(causal))


def exclude_sink(batch: Batch) -> Batch:
    """The batch with each instance's sink no longer a real position (as a special token is not)."""
    real = batch.real.clone()
    real[torch.arange(batch.size, device=real.device), sink_positions(batch).to(real.device)] = False
    return replace(batch, real=real)


def sink_mass(attention: Tensor, batch: Batch) -> np.ndarray:
    """Per instance, the weight of the attention read (n, T), before any restriction, on the sink."""
    positions = sink_positions(batch).to(attention.device)
    return attention[torch.arange(attention.shape[0], device=attention.device), positions].double().cpu().numpy()
