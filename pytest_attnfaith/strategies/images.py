"""Hypothesis strategies of perturbed images: ``perturbed_images(base_inputs, patch_size=p)``.

Each example is ``base_inputs`` with at most ``max_edits`` edits, each on one image of the batch:

- ``"occlude"``: one patch (p × p pixels, row-major over the (H/p) × (W/p) grid) set to ``fill`` — a number, or
  ``"mean"`` (the image's mean pixel, per channel);
- ``"noise"``: Gaussian noise of standard deviation σ ∈ [0, ``noise``] over the whole image, from a drawn seed
  (so that an example replays exactly).

Shrinks toward fewer edits, the first image, the first patch and less noise. The examples are mappings with
the base's keys (``pixel_values`` replaced), ready for ``af.audit(model, x)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

from pytest_attnfaith.errors import AttnFaithError

IMAGE_EDITS = ("occlude", "noise")
NOISE_STEPS = 1000  # σ is drawn as an integer step of noise / NOISE_STEPS: exact, and shrinks to 0


@dataclass(frozen=True)
class ImageEdit:
    kind: str
    row: int
    patch: int  # occlude: the patch's index on the grid, row-major
    sigma: float  # noise: the standard deviation
    seed: int  # noise: the generator's seed

    def describe(self, columns: int) -> str:
        if self.kind == "occlude":
            return f"image {self.row}: patch ({self.patch // columns}, {self.patch % columns}) occluded"
        return f"image {self.row}: Gaussian noise, sigma {self.sigma:.3g} (seed {self.seed})"


@dataclass(frozen=True)
class PerturbedImages(Mapping[str, Any]):
    """The perturbed inputs (a mapping: pass it to ``af.audit``) and the ``edits`` that made them."""

    inputs: dict[str, Any]
    edits: tuple[ImageEdit, ...]
    columns: int

    def __getitem__(self, key: str) -> Any:
        return self.inputs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    def __repr__(self) -> str:
        described = "; ".join(edit.describe(self.columns) for edit in self.edits) or "no edit"
        return f"PerturbedImages({described})"


def perturbed_images(
    base_inputs: Mapping[str, Any],
    *,
    patch_size: int,
    max_edits: int = 3,
    edits: Sequence[str] = IMAGE_EDITS,
    noise: float = 0.1,
    fill: float | str = 0.0,
) -> st.SearchStrategy[PerturbedImages]:
    """Strategy of ``PerturbedImages``: ``base_inputs["pixel_values"]`` (B, C, H, W) with at most ``max_edits``
    patch occlusions and noises (``edits``, the first preferred when shrinking)."""
    pixels = base_inputs.get("pixel_values") if isinstance(base_inputs, Mapping) else None
    if not isinstance(pixels, Tensor) or pixels.dim() != 4 or not pixels.is_floating_point():
        raise AttnFaithError("base_inputs['pixel_values'] must be a floating-point tensor (B, C, H, W)")
    height, width = pixels.shape[-2:]
    divides = isinstance(patch_size, int) and not isinstance(patch_size, bool) and patch_size >= 1
    if not divides or height % patch_size or width % patch_size:
        raise AttnFaithError(f"patch_size={patch_size!r} is not valid: expected an integer that divides H={height} and W={width}")
    if isinstance(max_edits, bool) or not isinstance(max_edits, int) or max_edits < 0:
        raise AttnFaithError(f"max_edits={max_edits!r} is not valid: expected an integer >= 0")
    kinds = tuple(edits)
    if not kinds or any(kind not in IMAGE_EDITS for kind in kinds):
        raise AttnFaithError(f"edits={list(kinds)!r} is not valid: expected some of {list(IMAGE_EDITS)}")
    if not isinstance(fill, (int, float)) and fill != "mean":
        raise AttnFaithError(f"fill={fill!r} is not valid: expected a number or 'mean'")
    columns = width // patch_size
    edit = st.builds(
        lambda kind, row, patch, step, seed: ImageEdit(kinds[kind], row, patch, noise * step / NOISE_STEPS, seed),
        st.integers(0, len(kinds) - 1),
        st.integers(0, pixels.shape[0] - 1),
        st.integers(0, (height // patch_size) * columns - 1),
        st.integers(0, NOISE_STEPS),
        st.integers(0, 2**31 - 1),
    )
    return st.lists(edit, max_size=max_edits).map(
        lambda drawn: PerturbedImages(_applied(base_inputs, drawn, patch_size, fill), tuple(drawn), columns)
    )


def _applied(base: Mapping[str, Any], edits: list[ImageEdit], size: int, fill: float | str) -> dict[str, Any]:
    pixels = base["pixel_values"].clone()
    columns = pixels.shape[-1] // size
    for edit in edits:
        image = pixels[edit.row]
        if edit.kind == "occlude":
            top, left = (edit.patch // columns) * size, (edit.patch % columns) * size
            value = image.mean(dim=(1, 2), keepdim=True) if fill == "mean" else torch.full_like(image[:, :1, :1], float(fill))
            image[:, top : top + size, left : left + size] = value.expand(-1, size, size)
        else:
            generator = torch.Generator().manual_seed(edit.seed)
            image += edit.sigma * torch.randn(image.shape, generator=generator).to(image)
    return {**base, "pixel_values": pixels}
