"""Checks of what a pass produced: finite logits, and a read attention that is a distribution; the devices a pass
may run on."""

from __future__ import annotations

import torch
from torch import Tensor

from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.adapters.passes import Forward
from pytest_attnfaith.errors import AttentionUnavailableError, AttnFaithError
from pytest_attnfaith.metrics import distribution_tolerance


class NonFiniteOutputError(AttnFaithError):
    """The model's output holds NaN or inf; ``row`` is the first such row of the pass."""

    def __init__(self, row: int, logits: Tensor) -> None:
        self.row = row
        self.values = [round(value, 4) for value in logits.detach().reshape(logits.shape[0], -1)[row, :4].tolist()]
        super().__init__(self.describe(f"row {row} of a pass with edited attention or tokens (a counterfactual)"))

    def in_inputs(self, offset: int) -> AttnFaithError:
        """The error of a pass over the inputs themselves (the reference pass, whose chunk starts at ``offset``)."""
        return AttnFaithError(self.describe(f"instance {offset + self.row} of the inputs"))

    def describe(self, where: str) -> str:
        return f"the model's output contains NaN or inf for {where} (logits {self.values}); expected finite logits"


def available_device(name: str) -> torch.device:
    """``torch.device(name)``, or the package's error naming the device and the devices this torch build has."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise AttnFaithError(f"option device={name!r} is not a device: {err}; expected e.g. 'cpu' or 'cuda:0'") from None
    if device.type == "cuda":
        usable = torch.cuda.is_available() and (device.index is None or device.index < torch.cuda.device_count())
    elif device.type == "cpu":
        usable = True
    else:  # mps, xpu, ...: torch.<type>.is_available()
        backend = getattr(torch.backends, device.type, None) or getattr(torch, device.type, None)
        usable = bool(getattr(backend, "is_available", lambda: False)())
    if not usable:
        raise AttnFaithError(
            f"option device={name!r} is not available on this machine (torch {torch.__version__}); "
            f"available: {', '.join(available_devices())}"
        )
    return device


def available_devices() -> list[str]:
    """The devices this process can run on: cpu, then every CUDA device, then mps."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.extend(f"cuda:{index}" for index in range(torch.cuda.device_count()))
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def check_distribution(forward: Forward, batch: Batch, where: str) -> None:
    """Raise unless every read row is a distribution over the unmasked positions, to the rounding of its dtype."""
    tolerance = distribution_tolerance(forward.rows.dtype)
    rows = forward.rows.double()
    mask = batch.attention_mask.bool().to(rows.device)[:, None, :]
    negative = (rows < -1e-5).any(dim=-1)
    total = rows.sum(dim=-1)
    outside = torch.where(mask, torch.zeros_like(rows), rows).abs().sum(dim=-1)
    bad = negative | ((total - 1).abs() > tolerance) | (outside > tolerance)
    if bad.any():
        instance, head = (int(i) for i in bad.nonzero()[0])
        raise AttentionUnavailableError(
            f"the attention read at {where} is not a distribution over the unmasked positions: instance {instance}, "
            f"head {head} sums to {float(total[instance, head]):.4g} with {float(outside[instance, head]):.4g} on masked "
            f"positions (min weight {float(rows[instance, head].min()):.4g}); expected non-negative weights summing to 1 "
            "over the positions where attention_mask == 1"
        )
