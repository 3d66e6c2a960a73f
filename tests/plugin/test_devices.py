"""pytest-xdist workers pinned to one GPU each: the choice from PYTEST_XDIST_WORKER and CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

from pathlib import Path

import pytest

import pytest_attnfaith
from pytest_attnfaith.plugin.devices import pin_worker, pinned_device


@pytest.mark.parametrize(
    ("worker", "visible", "installed", "expected"),
    [
        ("gw0", None, 4, "0"),
        ("gw5", None, 4, "1"),
        ("gw0", "2,3", 4, "2"),
        ("gw1", "2,3", 4, "3"),
        ("gw2", "2, 3", 4, "2"),
        ("gw1", "GPU-5a1c,GPU-77e0", 0, "GPU-77e0"),
        ("gw1", "", 4, None),
        ("gw1", None, 0, None),
        (None, None, 4, None),
        ("master", None, 4, None),
    ],
)
def test_each_worker_sees_one_of_the_devices_the_user_left_visible(
    worker: str | None, visible: str | None, installed: int, expected: str | None
) -> None:
    environment = {
        name: value for name, value in (("PYTEST_XDIST_WORKER", worker), ("CUDA_VISIBLE_DEVICES", visible)) if value is not None
    }
    assert pinned_device(environment, installed) == expected
    before = dict(environment)
    assert pin_worker(environment, installed) == expected
    assert environment.get("CUDA_VISIBLE_DEVICES") == (expected if expected is not None else before.get("CUDA_VISIBLE_DEVICES"))


def test_xdist_workers_pin_their_device_when_they_start(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(
        test_pinned="""
        import os

        import pytest

        @pytest.mark.parametrize("case", range(4))
        def test_sees_one_device(case):
            worker = os.environ["PYTEST_XDIST_WORKER"]
            assert os.environ["CUDA_VISIBLE_DEVICES"] == ["7", "9"][int(worker[2:]) % 2]
        """
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,9")
    monkeypatch.setenv("PYTHONPATH", str(Path(pytest_attnfaith.__file__).parents[1]))  # this checkout's plugin
    pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider").assert_outcomes(passed=4)
