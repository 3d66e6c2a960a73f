"""pytest-xdist workers share the cores: torch's intra-op threads become cores ÷ workers unless the user chose them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_attnfaith.plugin.threads import THREAD_VARIABLES, available_cores

THREAD_TESTS = """
import os
import torch


def test_record_threads():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "controller")
    with open(os.path.join(os.environ["THREADS_DIR"], worker), "w") as file:
        file.write(str(torch.get_num_threads()))


def test_other():
    pass
"""


def torch_default_threads() -> int:
    code = "import torch; print(torch.get_num_threads())"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def worker_threads(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str) -> set[int]:
    """Run two tests on two workers; the thread counts the workers ran them with."""
    pytester.makepyfile(test_threads=THREAD_TESTS)
    folder = pytester.path / "threads"
    folder.mkdir()
    monkeypatch.setenv("THREADS_DIR", str(folder))
    pytester.runpytest_subprocess("-n", "2", "-p", "xdist", *args).assert_outcomes(passed=2)
    return {int(path.read_text()) for path in Path(folder).iterdir()}


@pytest.fixture
def no_thread_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_thread_variables")
def test_each_worker_takes_its_share_of_the_cores(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    share = min(torch_default_threads(), max(1, available_cores() // 2))
    assert worker_threads(pytester, monkeypatch) == {share}


@pytest.mark.usefixtures("no_thread_variables")
def test_the_ini_key_turns_it_off(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    assert worker_threads(pytester, monkeypatch, "-o", "attnfaith_xdist_threads=false") == {torch_default_threads()}


@pytest.mark.usefixtures("no_thread_variables")
def test_threads_set_in_the_environment_are_left_alone(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    threads = max(2, os.cpu_count() or 2)  # more than a worker's share
    monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    assert worker_threads(pytester, monkeypatch) == {threads}
