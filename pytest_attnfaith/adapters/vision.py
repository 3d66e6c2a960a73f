"""Any sequence of positions: inputs without token ids (images, audio features, ``inputs_embeds``).

The positions are those of the embeddings module's output (B, T, D), whatever it was made from: a vision
transformer's class token and patches, an audio model's frames. Their count T is read from one pass of the
embeddings on the first instance. For an image (B, C, H, W) the positions after the first ``s`` are read as a
patch grid of (H/p) × (W/p) patches (the smallest ``s`` ≤ ``MAX_SPECIAL`` for which a patch size p divides H
and W); the first ``s`` (a class token, DeiT's distillation token) are special: never removed, never in a
statistic. ``special_tokens_mask`` (B, T) in the inputs says otherwise.

A position is removed in the embeddings' output, after the position embeddings were added: deleted (the row
shortened, as ``removal="delete"`` deletes a token) or replaced by the ``baseline`` (``removal="mask"``,
``loo="mask"``): ``"zero"`` (the zero vector), ``"mean"`` (the mean over the instance's real positions, removed or not, of their
embeddings) or a vector (D,).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters.inputs import Batch, assemble_batch
from pytest_attnfaith.errors import AttentionUnavailableError, AttnFaithError

POSITION_INPUTS = ("pixel_values", "inputs_embeds", "input_values", "input_features")
MAX_SPECIAL = 4
WINDOWED = {
    "swin": "shifted-window attention",
    "swinv2": "shifted-window attention",
    "donut-swin": "shifted-window attention",
    "maskformer-swin": "shifted-window attention",
    "focalnet": "focal modulation (no attention distribution)",
    "nat": "neighbourhood attention",
    "dinat": "dilated neighbourhood attention",
    "pvt": "spatial-reduction attention (keys pooled)",
    "pvt_v2": "spatial-reduction attention (keys pooled)",
    "segformer": "efficient attention (keys pooled)",
    "mobilevit": "attention within unfolded patches",
    "mobilevitv2": "separable linear attention",
    "levit": "attention over pooled keys",
    "efficientformer": "pooling token mixers",
    "poolformer": "pooling token mixers",
    "hiera": "mask-unit (windowed) attention",
}


def prepare_positions(inputs: Mapping[str, Any], positions: Callable[[Mapping[str, Any]], int]) -> Batch:
    """The ``Batch`` of inputs without ``input_ids``: their positions are the embeddings' output's, T of them as
    ``positions(inputs)`` (the adapter's ``count_positions``) counts."""
    primary = next((key for key in POSITION_INPUTS if key in inputs), None)
    if primary is None:
        raise AttnFaithError(
            f"inputs has no 'input_ids' (keys: {sorted(inputs)}); expected integer token ids of shape (B, T), "
            f"or one of {', '.join(POSITION_INPUTS)} (e.g. 'pixel_values' of shape (B, C, H, W))"
        )
    values = inputs[primary]
    if not isinstance(values, Tensor) or not values.is_floating_point():
        raise AttnFaithError(
            f"inputs[{primary!r}] is a {getattr(values, 'dtype', type(values).__name__)}; expected a floating-point tensor"
        )
    if primary == "pixel_values" and values.dim() != 4:
        raise AttnFaithError(f"inputs['pixel_values'] has shape {tuple(values.shape)}; expected (B, C, H, W)")
    if values.dim() < 2 or values.shape[0] == 0 or values.numel() == 0:
        raise AttnFaithError(f"inputs[{primary!r}] is empty (shape {tuple(values.shape)}); expected at least one instance")
    length = positions(inputs)
    special, grid = image_layout(length, values.shape) if primary == "pixel_values" else (0, None)
    leading = torch.zeros(values.shape[0], length, dtype=torch.long, device=values.device)
    leading[:, :special] = 1
    shape = torch.Size((values.shape[0], length))
    return assemble_batch(inputs, None, shape, primary=primary, special=leading, grid=grid)


def image_layout(length: int, image: torch.Size) -> tuple[int, tuple[int, int] | None]:
    """``(s, (rows, columns))``: the leading special positions and the patch grid of T = ``length`` positions over an
    image (B, C, H, W) — the smallest s for which T − s = (H/p)(W/p) with p dividing H and W; (0, None) if none."""
    height, width = int(image[-2]), int(image[-1])
    for special in range(min(MAX_SPECIAL, length - 1) + 1):
        patches = length - special
        for size in range(1, min(height, width) + 1):
            if height % size == 0 and width % size == 0 and (height // size) * (width // size) == patches:
                return special, (height // size, width // size)
    return 0, None


class _CountedError(Exception):
    def __init__(self, length: int) -> None:
        self.length = length


def count_positions(module: nn.Module, embeddings: nn.Module, inputs: Mapping[str, Any]) -> int:
    """T of the embeddings' output (B, T, D) on the first instance: the model runs until its embeddings have."""

    def stop(sub: nn.Module, args: Any, output: Any) -> None:
        output = output[0] if isinstance(output, tuple) else output
        if not isinstance(output, Tensor) or output.dim() != 3:
            raise AttentionUnavailableError(
                f"the embeddings module {type(sub).__name__} returned {type(output).__name__} "
                f"{tuple(getattr(output, 'shape', ()))}; expected a tensor (B, T, D): one vector per position"
            )
        raise _CountedError(int(output.shape[1]))

    first = {key: value[:1] if isinstance(value, Tensor) and value.dim() >= 1 else value for key, value in inputs.items()}
    first.pop("special_tokens_mask", None)
    handle = embeddings.register_forward_hook(stop)
    try:
        with torch.no_grad():
            module(**first)
    except _CountedError as counted:
        return counted.length
    finally:
        handle.remove()
    raise AttentionUnavailableError(
        f"the embeddings module {type(embeddings).__name__} never ran on the inputs; expected it to compute the positions"
    )


def baseline_embeddings(native: Tensor, real: Tensor, baseline: str | tuple[float, ...]) -> Tensor:
    """The baseline b (n, T, D) each position is replaced by: zeros, the mean over the instance's real positions of
    ``native`` (n, T, D), or the vector given (D,)."""
    if baseline == "zero":
        return torch.zeros_like(native)
    if baseline == "mean":
        weights = real.to(native.device, native.dtype).unsqueeze(-1)
        mean = (native * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp(min=1)
        return mean.expand_as(native)
    vector = torch.tensor(baseline, dtype=native.dtype, device=native.device)
    if vector.shape != native.shape[-1:]:
        raise AttnFaithError(
            f"option baseline is a vector of {len(baseline)} values; expected {native.shape[-1]}, the embeddings' width D"
        )
    return vector.expand_as(native)


def edit_positions(batch: Batch, baseline: str | tuple[float, ...], then: Any = None) -> Any:
    """The embeddings function (n, T, D) → (n, T', D) that removes the batch's positions (``kept``: deleted,
    ``blanked``: replaced by ``baseline``), then applies ``then``; ``then`` itself when nothing is removed."""
    kept, blanked, real = batch.kept, batch.blanked, batch.real
    if kept is None and blanked is None:
        return then

    def edit(native: Tensor) -> Tensor:
        out = native
        if kept is not None:
            index = kept.to(native.device).unsqueeze(-1).expand(-1, -1, native.shape[-1])
            out = native.gather(1, index)
        if blanked is not None:
            gone = blanked.to(native.device).unsqueeze(-1)
            out = torch.where(gone, baseline_embeddings(out, real, baseline), out)
        return then(out) if then is not None else out

    return edit


def position_names(batch: Batch) -> list[list[str]]:
    """Per instance, the display name of each real position: ``row,column`` on the patch grid, else ``#index``."""
    rows, columns = batch.grid if batch.grid is not None else (0, 0)
    special = batch.length - rows * columns
    return [
        [f"{(p - special) // columns},{(p - special) % columns}" if columns else f"#{p}" for p in range(len(real)) if real[p]]
        for real in batch.real.tolist()
    ]


def vision_embeddings(model: nn.Module) -> nn.Module:
    """A Hugging Face model's embeddings module whose output (B, T, D) holds every position (class token included)."""
    embeddings = getattr(getattr(model, "base_model", None), "embeddings", None)
    if not isinstance(embeddings, nn.Module):
        raise AttentionUnavailableError(
            f"{type(model).__name__} takes {model_input(model)!r} and has no base_model.embeddings module whose output "
            "(B, T, D) the attention runs over; wrap it with af.wrap(net, attention=..., embeddings=...)"
        )
    return embeddings


def model_input(model: nn.Module) -> str:
    return str(getattr(model, "main_input_name", "input_ids"))


def refuse_windowed(model: nn.Module) -> None:
    """A clear refusal for architectures whose attention is not one distribution over the embeddings' positions."""
    kind = str(getattr(getattr(model, "config", None), "model_type", ""))
    if kind in WINDOWED:
        raise AttnFaithError(
            f"{type(model).__name__} ({kind}) uses {WINDOWED[kind]}: its attention rows cover a window or pooled keys, "
            "not every position of the image, so no attention distribution over the patches exists to test; "
            "expected a vision transformer with global self-attention (ViT, DeiT, BEiT, ...)"
        )
