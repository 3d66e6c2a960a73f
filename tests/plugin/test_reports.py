"""The HTML page, the baseline gate, and the pure pieces they are built from."""

from __future__ import annotations

import math
import sys
from html.parser import HTMLParser

import pytest

from pytest_attnfaith.report.baseline import Regression, compare
from pytest_attnfaith.worst import LONG_INPUT, TOP, WINDOW, shown_positions, token_table, worst_indices
from tests.plugin.conftest import read_json


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def count(self, tag: str) -> int:
        return sum(name == tag for name, _ in self.tags)


def parse(text: str) -> Tags:
    tags = Tags()
    tags.feed(text)
    return tags


def test_html_report_has_the_summary_figures_and_heat_maps_and_needs_no_network(model_repo: pytest.Pytester) -> None:
    model_repo.runpytest("-k", "fixture", "--attnfaith-html", "report/out.html")
    page = parse((model_repo.path / "report" / "out.html").read_text(encoding="utf-8"))
    sections = [attrs["id"] for tag, attrs in page.tags if tag == "section" and attrs.get("id")]
    assert sections == [f"audit-{n}" for n in range(4)]
    assert page.count("svg") == 4
    text = " ".join(page.text)
    for title in ("permutation", "adversarial", "max attention", "Kendall τ, attention vs leave-one-out", "Worst instances"):
        assert title in text
    summary_links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert summary_links == [f"#audit-{n}" for n in range(4)]
    assert page.count("script") == 0 and page.count("link") == 0 and page.count("img") == 0
    assert not any(
        value and value.startswith("http") for _, attrs in page.tags for key, value in attrs.items() if key.endswith("href")
    )
    assert 'class="heat"' in (model_repo.path / "report" / "out.html").read_text(encoding="utf-8")


def test_html_report_without_matplotlib_keeps_the_tables_and_says_why(
    model_repo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "pytest_attnfaith.report.figures", raising=False)
    model_repo.runpytest("-k", "fixture and unused", "--attnfaith-html", "out.html")
    html = (model_repo.path / "out.html").read_text(encoding="utf-8")
    page = parse(html)
    assert page.count("svg") == 0 and page.count("table") >= 3
    assert "The figures need matplotlib" in html and "pytest-attnfaith[report]" in html


BASELINE_TESTS = """
import os
import pytest_attnfaith as af
from pytest_attnfaith.zoo import ZooModel, sentiment_task

def test_audit(attnfaith):
    model = af.wrap(ZooModel(os.environ["ZOO_KIND"]), attention="attn", embeddings="embed")
    attnfaith.audit(model, sentiment_task(6).inputs(), checks=["gradient", "uniform"])
"""


def test_baseline_regression_fails_the_session_and_is_listed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_base=BASELINE_TESTS)
    monkeypatch.setenv("ZOO_KIND", "faithful")
    assert pytester.runpytest("--attnfaith-save-baseline", "base.json").ret == pytest.ExitCode.OK
    assert pytester.runpytest("--attnfaith-baseline", "base.json").ret == pytest.ExitCode.OK

    monkeypatch.setenv("ZOO_KIND", "unused")
    result = pytester.runpytest("--attnfaith-baseline", "base.json", "--attnfaith-json", "out.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "baseline base.json: 2 statistics compared, 1 regressed (interval entirely worse than the baseline, tolerance 0)",
            "  REGRESSION test_base.py::test_audit uniform: 0.000 -> 1.000 [[]0.541, 1.000[]] *",
        ]
    )
    (regression,) = read_json(pytester.path / "out.json")["baseline"]["regressions"]
    assert (regression["check"], regression["baseline"], regression["current"]) == ("uniform", 0.0, 1.0)

    tolerant = pytester.runpytest("--attnfaith-baseline", "base.json", "--attnfaith-tolerance", "1.0")
    assert tolerant.ret == pytest.ExitCode.OK


@pytest.mark.parametrize(
    ("higher_is_better", "current", "regressed"),
    [(True, 0.44, True), (True, 0.46, False), (True, 0.9, False), (False, 0.56, True), (False, 0.54, False), (False, None, True)],
)
def test_regression_direction_follows_higher_is_better(higher_is_better: bool, current: float | None, regressed: bool) -> None:
    assert Regression("t", 0, "c", 0.5, current, higher_is_better).regressed(0.05) is regressed


@pytest.mark.parametrize(
    ("higher_is_better", "interval", "regressed"),
    [
        (True, (0.40, 0.52), False),  # a lower estimate whose interval still reaches the baseline: noise
        (True, (0.40, 0.48), True),  # the whole interval below the baseline: a real drop
        (False, (0.45, 0.60), False),
        (False, (0.52, 0.60), True),
    ],
)
def test_a_regression_is_an_interval_entirely_worse_than_the_baseline(
    higher_is_better: bool, interval: tuple[float, float], regressed: bool
) -> None:
    current = sum(interval) / 2
    assert Regression("t", 0, "c", 0.5, current, higher_is_better, interval).regressed(0.0) is regressed


def test_compare_lists_new_and_missing_tests_without_failing_them() -> None:
    check = {"passed": True, "statistic": 0.3, "threshold": 0.25, "higher_is_better": True}
    stored = {"tests": {"a": [{"gradient": check}], "gone": [{"gradient": check}]}}
    comparison = compare({"a": [{"checks": {"gradient": check}}], "new": [{"checks": {"gradient": check}}]}, stored, 0.05)
    assert (comparison["compared"], comparison["new"], comparison["missing"], comparison["passed"]) == (
        1,
        ["new"],
        ["gone"],
        True,
    )


def test_worst_instances_are_the_lowest_values_or_the_highest_jsd_skipping_undefined() -> None:
    values = [0.3, math.nan, 0.1, None, 0.2]
    assert worst_indices("permutation", values, [0, 1, 2, 3, 4], 2) == [2, 4]
    assert worst_indices("adversarial", values, [0, 1, 2, 3, 4], 2) == [0, 4]
    assert worst_indices("uniform", values, [0], 3) == [0]


def test_token_table_wraps_at_the_width_and_keeps_every_token_of_a_short_input() -> None:
    tokens = [f"tok{i}" for i in range(LONG_INPUT)]
    lines = token_table(tokens, {"attention": [1 / 24] * 24, "gradient": [None] * 24}, width=60, indent="  ")
    assert max(len(line) for line in lines) <= 60
    assert len(lines) % 3 == 0 and len(lines) > 3
    shown = [cell for line in lines if line.startswith("  token") for cell in line.split()[1:]]
    assert shown == tokens
    assert all(line.split()[1:] == ["-"] * len(line.split()[1:]) for line in lines if line.startswith("  gradient"))


def test_a_long_input_shows_the_largest_values_of_each_row_with_their_neighbours() -> None:
    length = 256
    attention = [0.001] * length
    attention[10], attention[200] = 0.5, 0.3
    gradient = [1e-6 * (p % 7) for p in range(length)]
    gradient[100] = 4e-5
    rows = {"attention": attention, "gradient": gradient}
    columns = shown_positions(rows, length)
    shown = [c for c in columns if isinstance(c, int)]
    assert {10, 200, 100} <= set(shown) and {8, 12, 98, 102, 198, 202} <= set(shown)
    assert len(shown) <= 2 * TOP * (2 * WINDOW + 1)
    assert [p for c in columns for p in ([c] if isinstance(c, int) else c)] == list(range(length))  # gaps cover the rest
    lines = token_table([f"t{p}" for p in range(length)], rows, width=80, indent="  ")
    assert len(lines) <= 16 and max(len(line) for line in lines) <= 80
    assert "256 tokens: the 3 largest values of each row" in " ".join(lines) and "4.0e-5" in " ".join(lines)
