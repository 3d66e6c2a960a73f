"""Progress display: silent unless asked, tqdm when installed, plain stderr lines otherwise."""

from __future__ import annotations

import builtins
import io
from typing import Any

import pytest

import pytest_attnfaith as af
from pytest_attnfaith import progress
from pytest_attnfaith.zoo import ZooModel, sentiment_task


def without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def blocked(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)


def test_disabled_tracking_yields_every_name_and_writes_nothing() -> None:
    stream = io.StringIO()
    assert list(progress.track(["a", "b"], enabled=False, stream=stream)) == ["a", "b"]
    assert stream.getvalue() == ""


def test_without_tqdm_each_step_is_one_plain_line(monkeypatch: pytest.MonkeyPatch) -> None:
    without_tqdm(monkeypatch)
    stream = io.StringIO()
    assert list(progress.track(["gradient", "loo"], enabled=True, stream=stream)) == ["gradient", "loo"]
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("attnfaith [1/2] gradient")
    assert lines[1].startswith("attnfaith [2/2] loo")
    assert lines[2].startswith("attnfaith: 2/2 checks in")


def test_display_is_closed_when_the_work_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    without_tqdm(monkeypatch)
    stream = io.StringIO()
    steps = progress.track(["gradient", "loo"], enabled=True, stream=stream)
    assert next(steps) == "gradient"
    with pytest.raises(RuntimeError):
        steps.throw(RuntimeError("check failed"))
    assert stream.getvalue().splitlines()[-1].startswith("attnfaith: 0/2 checks in")


def test_tqdm_bar_reports_the_running_check() -> None:
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    for _ in progress.track(["gradient", "loo"], enabled=True, stream=stream):
        pass
    assert "loo" in stream.getvalue()


def test_audit_is_silent_by_default_and_shows_progress_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    inputs = sentiment_task(4).inputs()
    af.audit(model, inputs, checks=["uniform", "erasure"])
    assert capsys.readouterr().err == ""
    af.audit(model, inputs, checks=["uniform", "erasure"], progress=True)
    assert "attnfaith" in capsys.readouterr().err
