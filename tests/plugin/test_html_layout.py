"""The HTML page fits a 1400 px window: no sideways scrolling, no hidden column, long inputs windowed; the permutation
figure's legend covers no data and points at max attention 1.0 are drawn whole."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import matplotlib as mpl
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from pytest_attnfaith.report import figures
from pytest_attnfaith.report.html import HEAT_COLUMNS
from tests.plugin.test_reports import parse

LONG_TESTS = """
import pytest
import pytest_attnfaith as af
from pytest_attnfaith.zoo import WORDS, ZooModel, sentiment_task

LONG = sentiment_task(4, length=256, min_length=256).inputs()
NAME = "a-parametrized-case-with-a-very-long-identifier-that-names-the-checkpoint-and-the-dataset-split-" * 2


@pytest.mark.parametrize("case", [NAME], ids=[NAME])
def test_long_input(attnfaith, case):
    model = af.wrap(ZooModel("unused"), attention="attn", embeddings="embed", vocabulary=WORDS)
    attnfaith.assert_faithful(model, LONG, checks=["gradient", "loo", "permutation", "uniform", "erasure"], permutations=10)
"""

MEASURE = """
<script>
window.addEventListener("load", () => {
  const view = document.documentElement.clientWidth;
  const out = {page: document.documentElement.scrollWidth, view: view, tables: [], hidden: 0};
  for (const table of document.querySelectorAll("table")) {
    const box = table.getBoundingClientRect();
    out.tables.push({cls: table.className, right: box.right, width: table.scrollWidth, room: table.parentElement.clientWidth});
  }
  for (const cell of document.querySelectorAll("table.summary th")) {
    const box = cell.getBoundingClientRect();
    if (box.width < 20 || box.right > view) out.hidden += 1;
  }
  document.body.insertAdjacentHTML("beforeend", "<pre id='measured'>" + JSON.stringify(out) + "</pre>");
});
</script>
"""


@pytest.fixture
def long_report(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(test_long=LONG_TESTS)
    pytester.runpytest("--attnfaith-html", "out.html").assert_outcomes(failed=1)
    return pytester.path / "out.html"


def test_long_inputs_show_a_window_of_tables_that_fit_and_the_whole_row_on_demand(long_report: Path) -> None:
    page = long_report.read_text(encoding="utf-8")
    assert "scroll" not in page  # nothing scrolls sideways
    assert "256 tokens: the 3 largest values of each row" in page and "<details><summary>all 256 tokens</summary>" in page
    windowed, full = page.split("<details>")[0], page.split("<details>")[1].split("</details>")[0]
    assert full.count('class="tok"') == 256
    assert 'class="gap"' in windowed and windowed.split("worst for")[-1].count('class="tok"') <= 2 * 3 * 5 + 5
    for table in page.split('<table class="heat"')[1:]:
        assert table.split("</tr>")[0].count('class="tok"') <= HEAT_COLUMNS


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium")
def test_the_page_has_no_sideways_scrolling_and_no_hidden_column_at_1400_px(long_report: Path, tmp_path: Path) -> None:
    measured = tmp_path / "measured.html"
    measured.write_text(long_report.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    command += ["--window-size=1400,2400", "--dump-dom", measured.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    result = json.loads(" ".join(parse(dom.split('<pre id="measured">')[1].split("</pre>")[0]).text))
    assert result["page"] <= result["view"]
    assert result["hidden"] == 0
    for table in result["tables"]:
        assert table["width"] <= table["room"] + 1 and table["right"] <= result["view"], table


def test_permutation_legend_covers_no_data_and_points_at_max_attention_1_are_whole() -> None:
    check = {
        "per_instance": [0.30, 0.01, 0.22, 0.0],
        "flagged_instances": [1],
        "details": {"max_attention": [1.0, 0.99, 0.6, 0.0]},
    }
    report = {"checks": {"permutation": check}, "options": {"epsilon": 0.05, "peak": 0.5}}
    with mpl.rc_context(figures.STYLE):
        figure = figures.draw_figure(report)
        assert figure is not None
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        renderer = canvas.get_renderer()
        (axes,) = figure.axes
        legend = axes.get_legend().get_window_extent(renderer)
        frame = axes.get_window_extent(renderer)
        assert not legend.overlaps(frame) and not legend.overlaps(axes.xaxis.label.get_window_extent(renderer))
        assert figure.bbox.contains(legend.x0, legend.y0) and figure.bbox.contains(legend.x1, legend.y1)
        radius = figure.dpi / 72 * 16**0.5 / 2  # scatter s=16 points²
        for x, y in ((1.0, 0.30), (0.0, 0.0)):
            px, py = axes.transData.transform((x, y))
            assert frame.x0 <= px - radius and px + radius <= frame.x1 and frame.y0 <= py - radius
