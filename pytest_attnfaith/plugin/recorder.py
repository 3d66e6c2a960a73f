"""Records every audit of a test run under the running test, and writes the reports at the end.

Every finished audit publishes its ``Report`` on ``pytest_attnfaith._recording`` (through the
fixture or a bare ``af.audit`` / ``af.assert_attention_faithful`` call); the recorder stores its
JSON form under the running test's node id and adds each check's statistic and verdict to the
test's ``user_properties`` (JUnit XML properties). Under pytest-xdist each worker sends its
records to the controller (``workeroutput``), which writes the summary, JSON, HTML and baseline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_attnfaith import _recording
from pytest_attnfaith.report.baseline import compare, load_baseline, regressions_of, save_baseline
from pytest_attnfaith.report.schema import Tests, session_document, write_json
from pytest_attnfaith.report.terminal import summary_lines

WORKER_KEY = "attnfaith"
_SESSIONS: list[Recorder] = []
STYLES = {"red": {"red": True}, "green": {"green": True}, "yellow": {"yellow": True}, "bold": {"bold": True}, "": {}}


class Recorder:
    """A pytest plugin object, one per session (registered by ``entry.pytest_configure``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.tests: Tests = {}
        self.order: dict[str, int] = {}
        self.current: pytest.Item | None = None
        self.comparison: dict[str, Any] | None = None
        self.written: list[tuple[str, Path]] = []
        self.baseline = self._baseline()
        _SESSIONS.append(self)
        _recording.subscribe(self.record)

    def close(self) -> None:
        _recording.unsubscribe(self.record)
        _SESSIONS.remove(self)

    def record(self, report: Any) -> None:
        """Store one finished audit under the running test (audits outside a test are not recorded).

        When pytest runs inside a test (``pytester``), the innermost session records alone.
        """
        item = self.current
        if item is None or _SESSIONS[-1] is not self:
            return
        data = json.loads(json.dumps(report.to_dict()))
        audits = self.tests.setdefault(item.nodeid, [])
        audits.append(data)
        item.user_properties.extend(junit_properties(data, len(audits) - 1))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self.current = item
        try:
            return (yield)
        finally:
            self.current = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.order.setdefault(report.nodeid, len(self.order))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: merge a finished worker's audits."""
        payload = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if payload:
            for nodeid, audits in json.loads(payload).items():
                self.tests.setdefault(nodeid, []).extend(audits)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKER_KEY] = json.dumps(self.tests)
            return
        self.tests = dict(sorted(self.tests.items(), key=lambda item: self.order.get(item[0], math.inf)))
        self._gate(session)
        self._write_reports()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.tests and self.comparison is None:
            return
        terminalreporter.write_sep("=", "attnfaith")
        width = max(80, self.config.get_terminal_writer().fullwidth)
        for text, style in summary_lines(self.tests, self.config.get_verbosity(), width, self.comparison):
            terminalreporter.write_line(text, **STYLES[style])
        for what, path in self.written:
            terminalreporter.write_line(f"attnfaith {what} report: {path}")

    def _baseline(self) -> dict[str, Any] | None:
        path = self.config.getoption("attnfaith_baseline")
        if path is None or hasattr(self.config, "workerinput"):
            return None
        try:
            return load_baseline(path)
        except ValueError as err:
            raise pytest.UsageError(f"--attnfaith-baseline: {err}") from None

    def _gate(self, session: pytest.Session) -> None:
        """Compare with the baseline; a regression fails the session like a failed test."""
        if self.baseline is None:
            return
        self.comparison = {"path": self.config.getoption("attnfaith_baseline")}
        self.comparison.update(compare(self.tests, self.baseline, self.config.getoption("attnfaith_tolerance")))
        if regressions_of(self.comparison) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write_reports(self) -> None:
        save = self.config.getoption("attnfaith_save_baseline")
        if save:
            self.written.append(("baseline", save_baseline(save, self.tests)))
        document = session_document(self.tests, self.comparison)
        json_path = self.config.getoption("attnfaith_json")
        if json_path:
            self.written.append(("JSON", write_json(json_path, document)))
        html_path = self.config.getoption("attnfaith_html")
        if html_path:
            from pytest_attnfaith.report.html import write_html

            self.written.append(("HTML", write_html(html_path, document)))


def junit_properties(report: dict[str, Any], index: int) -> list[tuple[str, object]]:
    """``attnfaith.verdict``, ``attnfaith.<question>`` and per check ``.statistic``, ``.interval_low`` /
    ``.interval_high`` and ``.verdict``; a test's later audits are ``attnfaith[2]...``."""
    prefix = "attnfaith" if index == 0 else f"attnfaith[{index + 1}]"
    properties: list[tuple[str, object]] = [(f"{prefix}.verdict", "passed" if report["passed"] else "failed")]
    properties.extend((f"{prefix}.{question}", answer) for question, answer in report.get("verdicts", {}).items())
    for name, check in report["checks"].items():
        low, high = check["interval"]
        properties.append((f"{prefix}.{name}.statistic", check["statistic"]))
        properties.append((f"{prefix}.{name}.interval_low", low))
        properties.append((f"{prefix}.{name}.interval_high", high))
        properties.append((f"{prefix}.{name}.verdict", check["verdict"]))
    return properties
