"""What the reports of an image audit show: the shown instances' images and each map over their patch grid.

For inputs with ``pixel_values`` whose positions form a patch grid (``adapters.vision``), the reports lay
each explainer's map over the image: the attention read, rollout (Abnar & Zuidema 2020; models with several
layers), gradient × input, integrated gradients (from the ``baseline`` option) and leave-one-out. They are
computed for the instances the reports show only (the worst of the failing checks, as the heat maps pick
them, else the first two), on a context of those instances, so the cost is a few instances' explanations.
The image is kept at most ``MAX_SIDE`` pixels a side (mean over channels, block-averaged), in [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pytest_attnfaith.adapters.passes import Forward
from pytest_attnfaith.checks._common import real_rows
from pytest_attnfaith.explainers import EXPLAINERS
from pytest_attnfaith.results import CheckResult
from pytest_attnfaith.session import Context
from pytest_attnfaith.worst import worst_by_instance

MAX_SIDE = 64
MAPS = ("attention", "rollout", "gradient_x_input", "integrated_gradients", "leave_one_out")


def image_record(context: Context, results: dict[str, CheckResult]) -> dict[str, Any] | None:
    """``report.instances["image"]``: the patch grid, the shown instances, their pixels and maps (None: no image)."""
    batch = context.batch
    pixels = batch.per_instance.get("pixel_values")
    if batch.grid is None or not isinstance(pixels, Tensor):
        return None
    shown = shown_instances(results, context.options.worst, batch.size)
    if not shown:
        return None
    sub = subset(context, torch.tensor(shown))
    names = [name for name in MAPS if name != "rollout" or len(context.model.layer_indices()) > 1]
    maps = {name: real_rows(EXPLAINERS[name](sub).double(), sub.real) for name in names}
    images = [] if context.options.redact else [thumbnail(pixels[i]) for i in shown]  # redact: no input in a report
    return {"grid": list(batch.grid), "shown": shown, "pixels": images, "maps": maps}


def shown_instances(results: dict[str, CheckResult], count: int, size: int) -> list[int]:
    """The instances the reports show: the worst ``count`` of each failing check, else the first two."""
    if count == 0:
        return []
    failing = [r for r in results.values() if r.verdict == "failed"]
    flagged = ((r.name, r.per_instance.tolist(), [int(i) for i in np.flatnonzero(r.flagged)]) for r in failing)
    worst = sorted(worst_by_instance(flagged, count))
    return worst or list(range(min(2, size)))


def subset(context: Context, instances: Tensor) -> Context:
    """The context of ``instances`` alone (its own memo), with their rows of the reference pass."""
    ref = context.reference
    index = instances.to(ref.probs.device)
    reference = Forward(
        probs=ref.probs[index],
        rows=ref.rows[index],
        attention=ref.attention[index],
        logits=ref.logits[index],
    )
    return dataclasses.replace(
        context, batch=context.batch.select(instances.to(context.batch.device)), reference=reference, memo={}
    )


def thumbnail(image: Tensor) -> list[list[float]]:
    """An image (C, H, W) as at most ``MAX_SIDE`` × ``MAX_SIDE`` grey values in [0, 1] (min–max scaled)."""
    grey = image.detach().double().cpu().mean(dim=0, keepdim=True)
    factor = max(1, -(-max(grey.shape[-2:]) // MAX_SIDE))
    if factor > 1:
        grey = torch.nn.functional.avg_pool2d(grey.unsqueeze(0), factor, ceil_mode=True).squeeze(0)
    low, high = float(grey.min()), float(grey.max())
    scaled = (grey[0] - low) / (high - low) if high > low else torch.zeros_like(grey[0])
    return [[round(v, 3) for v in row] for row in scaled.tolist()]
