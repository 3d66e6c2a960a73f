"""The Jain & Wallace figures of one audit, drawn with matplotlib as inline SVG (needs the ``report`` extra).

Panels, for the checks that ran: the median permutation TVD against the max attention in the
paper's bins (J&W Figs. 2-4; box per bin, instances as points, flagged ones red), the histogram
of adversarial max JSD (J&W Fig. 5), and histograms of the gradient and leave-one-out Kendall τ.
Legends sit below their panels, never over the data; the axes leave room for points at the limits
(max attention 1.0).
"""

from __future__ import annotations

import io
import itertools
import math
from typing import Any

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation

from pytest_attnfaith.worst import defined

OK, BAD, LINE = "#4c72b0", "#cf222e", "#57606a"
LEGEND_DROP = 0.42  # inches below the axes: their tick labels and x label at font size 9
PANEL_ORDER = ("permutation", "adversarial", "gradient", "loo")
STYLE: dict[str, Any] = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
}


def audit_figure(report: dict[str, Any], salt: str) -> str | None:
    """One SVG row of panels for ``report`` (None when none of its checks has a figure)."""
    style: Any = {**STYLE, "svg.hashsalt": salt}
    with mpl.rc_context(style):
        figure = draw_figure(report)
        return to_svg(figure) if figure is not None else None


def draw_figure(report: dict[str, Any]) -> Figure | None:
    """The matplotlib figure of ``audit_figure`` (None when none of the report's checks has a panel)."""
    panels = [name for name in PANEL_ORDER if name in report["checks"]]
    if not panels:
        return None
    figure = Figure(figsize=(3.3 * len(panels), 3.3), layout="constrained")
    for axes, name in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        DRAW[name](axes, report["checks"][name], report["options"])
    return figure


def _legend(axes: Axes) -> None:
    """The panel's legend below its x label (a fixed ``LEGEND_DROP`` under the axes, so that the layout can make room
    for it), where it covers no data."""
    below = axes.transAxes + ScaledTranslation(0.0, -LEGEND_DROP, axes.figure.dpi_scale_trans)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncols=2, fontsize=7, frameon=False)


def _permutation(axes: Axes, check: dict[str, Any], options: dict[str, Any]) -> None:
    details = check["details"]
    tvd, peak = check["per_instance"], details.get("max_attention", [])
    flagged = set(check["flagged_instances"])
    pairs = [(peak[i], tvd[i], i in flagged) for i in range(min(len(tvd), len(peak))) if defined(tvd[i]) and defined(peak[i])]
    edges = [0.0, 0.25, 0.5, 0.75, 1.0]
    groups = [[y for x, y, _ in pairs if lo <= x < hi or (hi == 1.0 and x == 1.0)] for lo, hi in itertools.pairwise(edges)]
    centres = [(lo + hi) / 2 for lo, hi in itertools.pairwise(edges)]
    filled = [(c, g) for c, g in zip(centres, groups, strict=True) if g]
    if filled:
        axes.boxplot([g for _, g in filled], positions=[c for c, _ in filled], widths=0.18, showfliers=False, manage_ticks=False)
    colours = [BAD if f else OK for *_, f in pairs]
    xs, ys = [x for x, _, _ in pairs], [y for _, y, _ in pairs]
    axes.scatter(xs, ys, s=16, alpha=0.7, c=colours, edgecolors="white", linewidths=0.4, zorder=3)
    axes.axhline(options["epsilon"], color=LINE, linestyle="--", linewidth=1, label=f"ε = {options['epsilon']:g}")
    axes.axvspan(options["peak"], 1.04, color=LINE, alpha=0.06, label=f"peaked (max α ≥ {options['peak']:g})")
    axes.set_xlim(-0.04, 1.04)  # points at max attention 0 and 1 are drawn whole
    axes.set_xticks(edges)
    top = max([options["epsilon"], *ys]) * 1.15
    axes.set_ylim(-0.04 * top, top)
    axes.set_xlabel("max attention")
    axes.set_ylabel("median TVD of output, permuted")
    axes.set_title("permutation")
    _legend(axes)


def _adversarial(axes: Axes, check: dict[str, Any], options: dict[str, Any]) -> None:
    _histogram(axes, check, (0.0, math.log(2.0)), options["delta"], f"δ = {options['delta']:g}")
    axes.set_xlabel("max JSD of an adversarial attention")
    axes.set_title("adversarial")


def _agreement(axes: Axes, check: dict[str, Any], options: dict[str, Any]) -> None:
    _histogram(axes, check, (-1.0, 1.0), None, "")
    if defined(check["statistic"]):
        axes.axvline(
            check["statistic"],
            color=BAD if not check["passed"] else OK,
            linewidth=1.5,
            label=f"mean τ = {check['statistic']:.2f}",
        )
    axes.axvline(check["threshold"], color=LINE, linestyle="--", linewidth=1, label=f"threshold {check['threshold']:g}")
    _legend(axes)
    axes.set_xlabel("Kendall τ, attention vs " + ("gradient" if check["name"] == "gradient" else "leave-one-out"))
    axes.set_title(check["name"])


def _histogram(axes: Axes, check: dict[str, Any], limits: tuple[float, float], line: float | None, label: str) -> None:
    values = [v for v in check["per_instance"] if defined(v)]
    flagged = set(check["flagged_instances"])
    bad = [v for i, v in enumerate(check["per_instance"]) if i in flagged and defined(v)]
    bins = [limits[0] + (limits[1] - limits[0]) * k / 20 for k in range(21)]
    axes.hist(values, bins=bins, color=OK, alpha=0.8, label="instances")
    if bad:
        axes.hist(bad, bins=bins, color=BAD, alpha=0.8, label="flagged")
    if line is not None:
        axes.axvline(line, color=LINE, linestyle="--", linewidth=1, label=label)
        _legend(axes)
    axes.set_xlim(*limits)
    axes.set_ylabel("instances")


DRAW = {"permutation": _permutation, "adversarial": _adversarial, "gradient": _agreement, "loo": _agreement}


def to_svg(figure: Figure) -> str:
    """The figure as inline SVG text (no XML header, no date: the same figure gives the same text)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]
