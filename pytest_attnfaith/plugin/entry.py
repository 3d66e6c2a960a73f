"""The pytest11 entry point: options, ini keys, the ``attnfaith`` marker and fixture, the recorder.

Loads without importing torch or transformers (``pytest --help`` stays fast); the audit machinery
is imported by the fixture's methods when a test first audits a model. A pytest-xdist worker
imports torch when it starts, to share the cores (``threads.py``); with pytest-html, each test's
row shows its verdicts (``html_extras.py``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.plugin import devices, threads
from pytest_attnfaith.plugin.fixture import AttnFaith
from pytest_attnfaith.plugin.recorder import Recorder
from pytest_attnfaith.plugin.settings import MARKER, add_ini_keys, configured_options, marker_options

RECORDER = "attnfaith-recorder"
HTML_COLUMNS = "attnfaith-pytest-html"
_OPTIONS = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("attnfaith", "attention faithfulness (pytest-attnfaith)")
    group.addoption("--attnfaith-json", metavar="PATH", help="write every recorded audit as JSON (docs/json-schema.md)")
    group.addoption("--attnfaith-html", metavar="PATH", help="write a self-contained HTML report with the Jain & Wallace figures")
    group.addoption("--attnfaith-seed", metavar="N", type=int, help="seed of every audit made through the attnfaith fixture")
    group.addoption(
        "--attnfaith-option",
        metavar="KEY=VALUE",
        action="append",
        help="audit option for the attnfaith fixture, overriding the attnfaith_* ini keys (repeatable)",
    )
    group.addoption("--attnfaith-baseline", metavar="PATH", help="fail the session when a statistic regresses from this baseline")
    group.addoption("--attnfaith-save-baseline", metavar="PATH", help="save every (test, check) statistic as a baseline")
    group.addoption(
        "--attnfaith-tolerance",
        metavar="X",
        type=_tolerance,
        default=0.0,
        help="a regression is a current interval entirely worse than the baseline's statistic moved by X against "
        "the model (absolute; default: 0)",
    )
    add_ini_keys(parser)
    parser.addini(
        threads.INI_KEY,
        "pytest-xdist workers lower torch's intra-op threads to cores / workers unless OMP_NUM_THREADS or "
        "MKL_NUM_THREADS is set (default: true)",
        type="bool",
        default=True,
    )
    parser.addini(
        devices.INI_KEY,
        "pytest-xdist workers each see one GPU (CUDA_VISIBLE_DEVICES, shared out from the one the user set) (default: true)",
        type="bool",
        default=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(**options): audit options for the attnfaith fixture in this test")
    options = configured_options(config)
    config.stash[_OPTIONS] = options
    config.pluginmanager.register(Recorder(config, redact=bool(options.get("redact"))), RECORDER)
    if config.pluginmanager.hasplugin("html") and getattr(config.option, "htmlpath", None):
        from pytest_attnfaith.plugin.html_extras import PytestHtmlColumns

        config.pluginmanager.register(PytestHtmlColumns(config), HTML_COLUMNS)
    worker = getattr(config, "workerinput", None)
    if worker is not None and config.getini(devices.INI_KEY):
        devices.pin_worker(worker=str(worker.get("workerid", "")))
    if worker is not None and config.getini(threads.INI_KEY):
        threads.share_cores(int(worker["workercount"]))


def pytest_unconfigure(config: pytest.Config) -> None:
    recorder = config.pluginmanager.get_plugin(RECORDER)
    if recorder is not None:
        recorder.close()
        config.pluginmanager.unregister(recorder)
    columns = config.pluginmanager.get_plugin(HTML_COLUMNS)
    if columns is not None:
        config.pluginmanager.unregister(columns)


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector) -> Generator[None, Any, Any]:
    """An unknown key or a bad value in an ``attnfaith`` marker is an error when the test file is collected."""
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Item):
            try:
                marker_options(item)
            except AttnFaithError as err:
                raise collector.CollectError(f"{item.nodeid}: @pytest.mark.{MARKER}: {err}") from None
    return result


@pytest.fixture
def attnfaith(request: pytest.FixtureRequest) -> AttnFaith:
    """Audit models with the ini, command-line and marker options merged (call options win)."""
    configured: dict[str, Any] = request.config.stash[_OPTIONS]
    return AttnFaith({**configured, **marker_options(request.node)})


def _tolerance(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise ValueError(text)
    return value
