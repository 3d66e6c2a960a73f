"""The per-head atlas in the reports: JSON rows, the HTML heat maps per question, the terminal lines."""

from __future__ import annotations

import json

import pytest

import pytest_attnfaith as af
from pytest_attnfaith.report.atlas import answers, atlas_html, atlas_lines, head_counts
from pytest_attnfaith.report.terminal import summary_lines

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def atlas_report() -> af.Report:
    from tests.huggingface.conftest import build, token_batch

    return af.audit(build("llama"), token_batch(size=12), checks=["uniform", "gradient"], per_head=True, targets=[7, 11])


@pytest.fixture(scope="module")
def document(atlas_report: af.Report) -> dict:
    return json.loads(atlas_report.to_json())


def test_print_of_an_atlas_is_a_summary_and_its_repr_one_line(atlas_report, capsys):
    print(atlas_report)
    printed = capsys.readouterr().out
    assert len(printed) <= 4000 and printed == atlas_report.summary() + "\n"
    assert "report.per_head: per-head atlas, 2 layers × 4 heads" in printed and "  uniform: heads " in printed
    text = repr(atlas_report)
    assert "\n" not in text and len(text) < 300 and text.startswith("Report(passed=False, verdicts={'used': ")
    assert text.endswith("checks=['uniform', 'gradient'], instances=12, per_head=20)")


def test_the_json_rows_carry_every_documented_field(document):
    row = document["per_head"][0]
    fields = {"layer", "head", "check", "question", "statistic", "interval", "threshold", "verdict", "interval_verdict"}
    fields |= {"p_pass", "p_fail", "q_pass", "q_fail", "q_value", "effect", "rank", "per_instance", "instances", "undefined"}
    assert fields <= set(row) and set(row["effect"]) == {"name", "value", "interval"}
    assert len(document["per_head"]) == 2 * 5 * 2 and {r["head"] for r in document["per_head"]} == {0, 1, 2, 3, "all"}


def test_the_html_has_a_layer_by_head_map_per_question(document):
    html = atlas_html(document)
    grids = answers(document["per_head"])
    assert set(grids) == {"used", "agrees"}
    assert html.count('<table class="heat">') == 2 and "<th>all</th>" in html
    cells = html.count("<td class=")
    assert cells == 2 * 2 * 5  # two questions, two layers, four heads and the layer's row
    assert sum(head_counts(document["per_head"])["uniform"].values()) == 8


def test_the_terminal_names_the_layers_and_heads_that_matter(document):
    lines = atlas_lines("test_x", document)
    assert lines[0][0].startswith("test_x: per-head atlas, 2 layers × 4 heads")
    uniform = next(text for text, _ in lines if text.strip().startswith("uniform:"))
    assert "top heads by effect: L" in uniform and "layers passing:" in uniform
    text = "\n".join(line for line, _ in summary_lines({"test_x": [document]}))
    assert "per-head atlas" in text


def test_small_effects_keep_their_digits_in_the_html_and_the_terminal(document):
    """A random tiny Llama's uniform TVDs are about 1e-3: they read in exponent notation, never 0.00."""
    uniform = [row for row in document["per_head"] if row["check"] == "uniform"]
    assert max(abs(row["effect"]["value"]) for row in uniform) < 0.01
    html = atlas_html(document)
    assert ">0.00<" not in html and "e-" in html
    line = next(text for text, _ in atlas_lines("test_x", document) if text.strip().startswith("uniform:"))
    assert "0.000" not in line and "e-" in line


def test_the_atlas_maps_have_a_legend_and_name_the_effect_they_show(document):
    html = atlas_html(document)
    assert "Each cell is one (layer, head) edited alone" in html and "green yes, red no, yellow inconclusive" in html
    assert "used: uniform, " in html and "agrees: gradient, mean Kendall τ with gradient × input" in html


def test_the_heat_map_heading_names_only_the_importances_that_ran(document):
    from pytest_attnfaith.report.html import audit_html

    page = audit_html(document, "atlas")
    assert "attention beside gradient importance</h3>" in page and "leave-one-out importance" not in page
