"""Image audits in the HTML report: each shown instance's image with every map laid over its patch grid.

Works on ``report["instances"]["image"]`` (``image_maps.image_record``): per shown instance one row of inline SVG
panels, the image alone then one panel per map (attention, rollout, gradient × input, integrated gradients,
leave-one-out). A map colours each patch with an opacity proportional to |value| over the panel's largest
|value| (negative values of a signed map in red, positive in the map's colour), over the grey image; each
patch's value is in its tooltip. Panels are ``PANEL_PX`` wide whatever the grid: at 14 × 14 patches (196) a
patch is 10 px, the grid lines stay visible up to 32 × 32.
"""

from __future__ import annotations

from html import escape
from typing import Any

from pytest_attnfaith.formatting import compact

PANEL_PX = 150
GREY_LOW, GREY_HIGH = 70, 235
MAX_OPACITY = 0.7  # the largest |value| still lets the image show through
TITLES = {
    "attention": "attention",
    "rollout": "rollout",
    "gradient_x_input": "gradient × input",
    "integrated_gradients": "integrated gradients",
    "leave_one_out": "leave-one-out",
}
COLOURS = {
    "attention": "9, 105, 218",
    "rollout": "26, 127, 55",
    "gradient_x_input": "191, 87, 0",
    "integrated_gradients": "130, 80, 223",
    "leave_one_out": "154, 103, 0",
}
NEGATIVE = "207, 34, 46"
CSS = """
.attnfaith .images { display: flex; flex-wrap: wrap; gap: 10px; margin: 4px 0 14px; }
.attnfaith .images figure { margin: 0; text-align: center; font-size: 12px; }
.attnfaith .images figcaption small { display: block; color: #57606a; font-size: 11px; }
"""


def image_maps_html(report: dict[str, Any], reasons: dict[int, list[str]]) -> str:
    """The image section of an audit (empty when it has no image record); ``reasons``: why each instance is shown."""
    record = report.get("instances", {}).get("image")
    if not record:
        return ""
    rows, columns = record["grid"]
    pixels = record.get("pixels") or [None] * len(record["shown"])
    parts = [f"<style>{CSS}</style><h3>Maps over the image ({rows} × {columns} patches)</h3>"]
    for slot, index in enumerate(record["shown"]):
        why = reasons.get(index, [])
        parts.append(f'<div class="meta">instance {index}{", worst for " + ", ".join(why) if why else ""}</div>')
        panels = [_panel("image", pixels[slot], None, (rows, columns))] if pixels[slot] is not None else []
        for name, values in record["maps"].items():
            panels.append(_panel(name, pixels[slot], values[slot], (rows, columns)))
        parts.append(f'<div class="images">{"".join(panels)}</div>')
    return "".join(parts)


def _panel(name: str, image: list[list[float]] | None, values: list[float | None] | None, grid: tuple[int, int]) -> str:
    rows, columns = grid
    height = round(PANEL_PX * rows / columns)
    shapes = _image(image, height) if image is not None else [f'<rect width="{PANEL_PX}" height="{height}" fill="#d0d7de"/>']
    caption = escape(TITLES.get(name, name))
    if values is not None:
        scale = max((abs(v) for v in values if v is not None), default=0.0)
        shapes.extend(_patches(name, values, grid, height, scale))
        caption += f"<small>max |value| {compact(scale)}</small>"
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PANEL_PX}" height="{height}" viewBox="0 0 {PANEL_PX} {height}" '
        f'role="img" aria-label="{escape(TITLES.get(name, name))}">{"".join(shapes)}</svg>'
    )
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _image(image: list[list[float]], height: int) -> list[str]:
    """The grey image as one rectangle per pixel (at most ``image_maps.MAX_SIDE`` a side)."""
    ph, pw = height / len(image), PANEL_PX / len(image[0])
    return [
        f'<rect x="{c * pw:.2f}" y="{r * ph:.2f}" width="{pw + 0.05:.2f}" height="{ph + 0.05:.2f}" '
        f'fill="rgb({_grey(v)},{_grey(v)},{_grey(v)})"/>'
        for r, line in enumerate(image)
        for c, v in enumerate(line)
    ]


def _patches(name: str, values: list[float | None], grid: tuple[int, int], height: int, scale: float) -> list[str]:
    """One rectangle per patch (row-major over the grid): its colour's opacity |value| / ``scale``, its value on hover."""
    rows, columns = grid
    ph, pw = height / rows, PANEL_PX / columns
    shapes = []
    for position, value in enumerate(values[: rows * columns]):
        r, c = divmod(position, columns)
        if value is None:
            continue
        alpha = min(1.0, abs(value) / scale) * MAX_OPACITY if scale > 0 else 0.0
        colour = NEGATIVE if value < 0 else COLOURS.get(name, "87, 96, 106")
        shapes.append(
            f'<rect x="{c * pw:.2f}" y="{r * ph:.2f}" width="{pw:.2f}" height="{ph:.2f}" fill="rgba({colour}, {alpha:.2f})" '
            f'stroke="rgba(255, 255, 255, 0.35)" stroke-width="0.5"><title>patch {r},{c}: {value:.4g}</title></rect>'
        )
    return shapes


def _grey(value: float) -> int:
    """A pixel's grey in [``GREY_LOW``, ``GREY_HIGH``]: never black, so that the maps' colours read over any pixel."""
    return round(GREY_LOW + value * (GREY_HIGH - GREY_LOW))
