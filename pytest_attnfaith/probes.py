"""What the audit checks about the model before trusting its statistics: whether trailing padding changes its
output, whether two identical passes agree, and whether padded ids came without an attention mask.

Each probe is one extra pass at most and returns a value for ``report.model`` plus, where the statistics are at
risk, a warning that says what to do.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch

from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.errors import ModelWarning, user_stacklevel
from pytest_attnfaith.metrics import same_output
from pytest_attnfaith.session import Context

PADDING_PROBE = 4
"""Trailing padding positions the padding probe adds to every row."""
PADDING_SLACK = 1000
"""The padding probe's tolerance, in resolutions: a longer row changes the kernels' blocking and summation order, which
moves a correctly masked float32 MiniLM's logits by more than the resolution (seen: a mean-pooled MiniLM flagged at
1×); a model that reads its padding (an unpacked LSTM) moves them by far more than 1000× (about 1e-3 of their size)."""


def padded(batch: Batch, extra: int, pad_id: int) -> Batch:
    """``batch`` with ``extra`` trailing positions of ``pad_id``, masked out (and zeros in the other per-token
    inputs); the real positions are unchanged."""

    def grow(values: torch.Tensor, fill: int) -> torch.Tensor:
        tail = torch.full((values.shape[0], extra, *values.shape[2:]), fill, dtype=values.dtype, device=values.device)
        return torch.cat([values, tail], dim=1)

    assert batch.input_ids is not None, "only token ids are padded"
    return dataclasses.replace(
        batch,
        input_ids=grow(batch.input_ids, pad_id),
        attention_mask=grow(batch.attention_mask, 0),
        real=grow(batch.real, 0),
        per_token={key: grow(value, 0) for key, value in batch.per_token.items()},
    )


def padding_sensitive(context: Context) -> bool | None:
    """True when adding ``PADDING_PROBE`` masked trailing pad tokens moves some instance's logits beyond the
    resolution (an unpacked RNN, a model that ignores the mask); None without an attention mask (nothing says
    which positions are padding)."""
    batch = context.batch
    if not batch.has_mask or batch.input_ids is None:  # no mask, or no ids to pad (images: a fixed patch grid)
        return None
    pad_id = context.model.pad_token_id()
    known = pad_id is not None and pad_id <= int(batch.input_ids.max())  # a tokenizer's id the model may not embed
    probe = context.model.forward_chunked(padded(batch, PADDING_PROBE, pad_id if known and pad_id is not None else 0))
    slack = context.tolerance * PADDING_SLACK
    return not bool(same_output(context.logits, probe.logits.to(context.logits.device), slack).all())


def repeatable(context: Context) -> bool:
    """Whether a second pass over the first ``batch_size`` instances gives the reference's logits again (within
    the resolution): False for a forward with randomness in it (dropout applied in eval mode, sampling)."""
    rows = slice(0, min(context.batch.size, context.options.batch_size))
    again = context.model.forward(context.batch.select(rows)).logits.detach().to(context.logits.device)
    return bool(same_output(context.logits[rows], again, context.tolerance[rows]).all())


def unmasked_padding(batch: Batch, pad_id: int | None) -> bool:
    """Inputs without an attention mask whose rows end in the known pad id: padding audited as real tokens."""
    if batch.has_mask or pad_id is None or batch.input_ids is None:
        return False
    return bool((batch.input_ids[:, -1] == pad_id).any())


def probe(context: Context) -> dict[str, Any]:
    """``report.model`` entries: ``padding_sensitive``, ``repeatable``, and their ``warnings``."""
    found: list[str] = []
    sensitive = padding_sensitive(context)
    if sensitive:
        found.append(
            "adding trailing padding changes the model's output: its statistics depend on how the batch is padded "
            "(an RNN run over padding, or a model that ignores attention_mask); mask the padding in the model, or "
            "pack the sequences (torch.nn.utils.rnn.pack_padded_sequence)"
        )
    same = repeatable(context)
    if not same:
        found.append(
            "two identical forward passes gave different outputs: the model's forward is random in eval mode; the "
            "audit ran it under a torch RNG seeded from seed (same seed, same report), but its statistics include "
            "that randomness"
        )
    if unmasked_padding(context.batch, context.model.pad_token_id()):
        found.append(
            f"the inputs end in the pad token id {context.model.pad_token_id()} but have no attention_mask: the "
            "padding is audited as real tokens; pass attention_mask (1 = real token)"
        )
    return {"padding_sensitive": sensitive, "repeatable": same, "warnings": found}


def measured_on(context: Context) -> dict[str, Any]:
    """``report.model`` entries of the scale and resolution the statistics are measured on, and the probes' (run
    once per audit, on the first call)."""
    found = context.remember("probes", lambda: probe(context))
    return {
        "scale": context.options.scale,
        "resolution": context.resolution,
        "padding_sensitive": found["padding_sensitive"],
        "repeatable": found["repeatable"],
    }


def warn_model(context: Context, described: dict[str, Any]) -> None:
    """The probes' warnings: in ``report.model["warnings"]`` and as ``ModelWarning``s."""
    found: list[str] = context.remember("probes", lambda: probe(context))["warnings"]
    described["warnings"] = [*described.get("warnings", []), *found]
    for text in found:
        warnings.warn(f"attnfaith: {text}", ModelWarning, stacklevel=user_stacklevel())
