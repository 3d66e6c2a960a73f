"""Records every audit of a test run under the running test, and writes the reports at the end.

Every finished audit publishes its ``Report`` on ``pytest_attnfaith._recording`` (through the
fixture or a bare ``af.audit`` / ``af.assert_attention_faithful`` call); the recorder stores its
JSON form under the running test's node id and adds each check's statistic and verdict to the
test's ``user_properties`` (JUnit XML properties). It also keeps pytest's outcome of every test
(``pytest_runtest_logreport``: passed, failed, xfailed, xpassed, skipped, error) and the one-line
failure of the tests that use the plugin (the ``attnfaith`` fixture or marker, or a recorded audit).
Under pytest-xdist each worker sends its audits and which tests use the plugin to the controller
(``workeroutput``); the controller receives every test report itself, and writes the summary, JSON,
HTML and baseline.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_attnfaith import _recording
from pytest_attnfaith.formatting import printable
from pytest_attnfaith.plugin.settings import MARKER
from pytest_attnfaith.report.baseline import compare, load_baseline, regressions_of, save_baseline
from pytest_attnfaith.report.schema import Tests, session_document, write_json
from pytest_attnfaith.report.terminal import summary_lines

WORKER_KEY = "attnfaith"
_SESSIONS: list[Recorder] = []
STYLES = {"red": {"red": True}, "green": {"green": True}, "yellow": {"yellow": True}, "bold": {"bold": True}, "": {}}
MESSAGE_LENGTH = 200


class Recorder:
    """A pytest plugin object, one per session (registered by ``entry.pytest_configure``)."""

    def __init__(self, config: pytest.Config, redact: bool = False) -> None:
        self.config = config
        self.redact = redact
        self.tests: Tests = {}
        self.order: dict[str, int] = {}
        self.outcomes: dict[str, str] = {}
        self.failures: dict[str, str] = {}  # node id -> pytest's one-line failure, of every failed or errored test
        self.attention_tests: set[str] = set()
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
        if MARKER in getattr(item, "fixturenames", ()) or item.get_closest_marker(MARKER) is not None:
            self.attention_tests.add(item.nodeid)
        try:
            return (yield)
        finally:
            self.current = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.order.setdefault(report.nodeid, len(self.order))
        outcome = outcome_after(report, self.outcomes.get(report.nodeid))
        if outcome is None:
            return
        if outcome in ("failed", "error") and self.outcomes.get(report.nodeid) not in ("failed", "error"):
            self.failures[report.nodeid] = one_line(report)
        self.outcomes[report.nodeid] = outcome

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: merge a finished worker's audits and the tests that use the plugin."""
        payload = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if payload:
            received = json.loads(payload)
            for nodeid, audits in received["tests"].items():
                self.tests.setdefault(nodeid, []).extend(audits)
            self.attention_tests.update(received["attention_tests"])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKER_KEY] = json.dumps({"tests": self.tests, "attention_tests": sorted(self.attention_tests)})
            return
        self.tests = dict(sorted(self.tests.items(), key=lambda item: self.order.get(item[0], math.inf)))
        self._gate(session)
        self._write_reports()

    def messages(self) -> dict[str, str]:
        """The one-line failure of each failed or errored test that uses the plugin; only the exception's name
        where ``redact`` is on (the session's option, or one of the test's audits')."""
        used = self.attention_tests | set(self.tests)
        return {
            nodeid: exception_name(message) if self._redacts(nodeid) else message
            for nodeid, message in self.failures.items()
            if nodeid in used
        }

    def _redacts(self, nodeid: str) -> bool:
        return self.redact or any(audit["options"].get("redact") for audit in self.tests.get(nodeid, []))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        messages = self.messages()
        if not self.tests and self.comparison is None and not messages:
            return
        terminalreporter.write_sep("=", "attnfaith")
        width = max(80, self.config.get_terminal_writer().fullwidth)
        lines = summary_lines(self.tests, self.config.get_verbosity(), width, self.comparison, self.outcomes, messages)
        for text, style in lines:
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
        document = session_document(self.tests, self.comparison, self.outcomes, self.messages())
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


def outcome_after(report: pytest.TestReport, current: str | None) -> str | None:
    """The test's outcome once ``report`` (its setup, call or teardown) is in, as pytest's summary counts it.

    A setup or teardown failure is an ``error`` (unless the call failed); an expected failure is
    ``xfailed`` (``report.wasxfail``), an unexpected pass of a non-strict xfail ``xpassed`` (a strict one
    fails). None while nothing is decided (a passed setup) and for reruns."""
    if report.outcome == "rerun":
        return current
    expected = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.passed:
            return "xpassed" if expected else "passed"
        if report.skipped:
            return "xfailed" if expected else "skipped"
        return "failed"
    if report.failed:
        return current if current == "failed" else "error"
    if report.skipped:
        return "xfailed" if expected else "skipped"
    return current


def one_line(report: pytest.TestReport) -> str:
    """The first line of pytest's failure message (the exception and its text), printable, at most ``MESSAGE_LENGTH``
    long."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(report.longrepr or report.outcome)
    line = printable(next((line.strip() for line in text.splitlines() if line.strip()), report.outcome))
    return line if len(line) <= MESSAGE_LENGTH else line[: MESSAGE_LENGTH - 1] + "…"


def exception_name(message: str) -> str:
    """The exception's name alone, for reports that must not carry input text (``redact``)."""
    match = re.match(r"[\w.]+(?=:)", message)
    return f"{match.group(0) if match else 'error'} (message withheld: redact)"
