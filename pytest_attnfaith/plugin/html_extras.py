"""pytest-html integration: each test's attnfaith verdict in its row, and a link to its section of the attnfaith HTML.

Registered only when pytest-html is active (``--html``); uses its documented hooks
(``pytest_html_results_table_header`` / ``_row``) and extras (``report.extras``, ``extras.url``).
The verdicts come from the test report's ``user_properties`` (the JUnit properties), which
pytest-xdist carries from the workers to the controller like the extras.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from html import escape
from pathlib import Path
from typing import Any

import pytest

from pytest_attnfaith.report.html import section_anchor

COLUMN = "attnfaith"


class PytestHtmlColumns:
    """A column ``attnfaith`` with each test's verdicts; a link "attnfaith report" among the test's links."""

    def __init__(self, config: pytest.Config) -> None:
        target = config.getoption("attnfaith_html")
        report = getattr(config.option, "htmlpath", None)
        self.target = os.path.relpath(Path(target).resolve(), Path(report).resolve().parent) if target and report else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, f'<th class="sortable" data-column-type="{COLUMN}">{COLUMN}</th>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        verdicts = ", ".join(verdicts_of(report.user_properties))
        cells.insert(2, f'<td class="col-{COLUMN}">{escape(verdicts)}</td>')

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if call.when == "teardown" and self.target is not None and verdicts_of(item.user_properties):
            from pytest_html import extras

            link = extras.url(f"{Path(self.target).as_posix()}#{section_anchor(item.nodeid)}", name="attnfaith report")
            report.extras = [*getattr(report, "extras", []), link]
        return report


def verdicts_of(properties: list[tuple[str, object]]) -> list[str]:
    """``attnfaith.verdict``, then ``attnfaith[2].verdict``, …: one verdict per recorded audit."""
    return [str(value) for name, value in properties if name == "attnfaith.verdict" or _later_verdict(name)]


def _later_verdict(name: str) -> bool:
    return name.startswith("attnfaith[") and name.endswith("].verdict")
