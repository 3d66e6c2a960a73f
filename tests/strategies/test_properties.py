"""Property helpers and profiles: the erasure property, search steering, the attnfaith settings
profiles, and a planted trigger found and shrunk to a one-edit example."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis.errors import InvalidArgument

import pytest_attnfaith as af
from pytest_attnfaith.strategies import (
    PROFILE,
    PROFILE_NO_SHRINK,
    PerturbedInputs,
    assert_erasure_property,
    perturbed,
    register_profiles,
    target_disagreement,
)
from pytest_attnfaith.zoo import DISTRACTORS, NEGATIVE, POSITIVE, SCALE, VOCAB, ZooModel, sentiment_task

TRIGGER = VOCAB - 1
NEUTRAL = tuple(range(max(DISTRACTORS) + 1, TRIGGER))
SYNONYMS = {token: [other for other in group if other != token] for group in (POSITIVE, NEGATIVE) for token in group}
LABEL_PRESERVING = {"vocabulary": NEUTRAL, "substitutions": SYNONYMS, "edits": ("substitute", "insert", "swap")}
FEW = settings(max_examples=8, deadline=None, database=None)


def wrapped(net: torch.nn.Module) -> af.AttentionModel:
    return af.wrap(net, attention="attn", embeddings="embed")


class TriggeredModel(ZooModel):
    """The faithful zoo model, except that a row holding ``TRIGGER`` is read out by mean pooling (attention unused)."""

    def __init__(self) -> None:
        super().__init__("faithful")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        faithful = super().forward(input_ids, mask)
        sentiment = self.embed(input_ids)[..., 1] * mask
        z = SCALE * 4.0 * sentiment.sum(dim=1) / mask.sum(dim=1)
        pooled = torch.stack([torch.zeros_like(z), z], dim=1)
        triggered = ((input_ids == TRIGGER) & (mask == 1)).any(dim=1, keepdim=True)
        return torch.where(triggered, pooled, faithful)


@pytest.fixture(scope="module")
def sentence() -> dict[str, torch.Tensor]:
    """One zoo sentence (a single instance, so one triggered row decides the verdict)."""
    return sentiment_task(1, seed=3).inputs()


# a property of each instance: any flagged instance fails (its interval clears 0), none flagged passes
PER_INSTANCE = {"checks": ("uniform",), "uniform_threshold": 0.0, "inconclusive": "pass"}


def test_a_planted_trigger_is_found_and_shrunk_to_one_edit(sentence: dict[str, torch.Tensor]) -> None:
    model = wrapped(TriggeredModel())
    af.assert_attention_faithful(model, sentence, **PER_INSTANCE)
    seen: list[PerturbedInputs] = []

    # Hypothesis' default profile (100 examples, shrinking), without an example database, and without the
    # 200 ms deadline, which a loaded CI machine can exceed on an audit (DeadlineExceeded is not the failure sought)
    @settings(database=None, deadline=None)
    @given(x=perturbed(sentence, distractors=(*DISTRACTORS, TRIGGER), **LABEL_PRESERVING))
    def attention_stays_faithful(x: PerturbedInputs) -> None:
        seen.append(x)
        af.assert_attention_faithful(model, x, **PER_INSTANCE)

    with pytest.raises(af.AttentionNotFaithful) as failure:
        attention_stays_faithful()
    minimal = seen[-1]
    assert len(minimal.edits) == 1 and minimal.edits[0].new == TRIGGER
    assert TRIGGER in minimal["input_ids"][0].tolist()
    report = "\n".join(getattr(failure.value, "__notes__", []))
    assert f"PerturbedInputs(1 edit\n      row 0: {minimal.edits[0].kind} " in report
    assert minimal.texts[0] in report


def test_erasure_property_holds_for_faithful_attention(zoo_inputs: Any) -> None:
    report = assert_erasure_property(wrapped(ZooModel("faithful")), zoo_inputs)
    assert report.passed and list(report.checks) == ["erasure"]
    assert report.options["erasure_margin"] == 0.0 and report.options["erasure_threshold"] == 0.0


@FEW
@given(x=perturbed(sentiment_task(3, seed=11).inputs(), **LABEL_PRESERVING))
def test_erasure_property_survives_label_preserving_edits(x: PerturbedInputs) -> None:
    assert_erasure_property(wrapped(ZooModel("faithful")), x)


def test_erasure_failure_names_the_edited_text(zoo_inputs: Any) -> None:
    strategy = perturbed(zoo_inputs, vocabulary=NEUTRAL, edits=("swap",))
    x = find(strategy, lambda x: len(x.edits) == 1, settings=settings(database=None, deadline=None))
    with pytest.raises(af.AttentionNotFaithful, match="erasure") as failure:
        assert_erasure_property(wrapped(ZooModel("unused")), x, margin=0.01)
    message = str(failure.value)
    assert "failing inputs: 1 edit" in message and x.texts[x.edits[0].row] in message
    assert failure.value.report.checks["erasure"].statistic == 1.0


def test_target_disagreement_reports_minus_the_mean_tau(zoo_inputs: Any) -> None:
    model = wrapped(ZooModel("misleading"))
    observed: list[tuple[float, float]] = []

    @FEW
    @given(x=perturbed(zoo_inputs, **LABEL_PRESERVING))
    def steered(x: PerturbedInputs) -> None:
        report = af.audit(model, x, checks=("gradient",))
        observed.append((target_disagreement(report), report.checks["gradient"].statistic))

    steered()
    assert observed and all(value == -tau for value, tau in observed)
    report = af.audit(model, zoo_inputs, checks=("gradient",))
    with pytest.raises(InvalidArgument):
        target_disagreement(report)  # hypothesis.target() refuses to be called outside a test: it was called
    with pytest.raises(af.AttnFaithError, match="no 'loo' result"):
        target_disagreement(report, check="loo")


@pytest.fixture
def restore_profiles() -> Iterator[None]:
    yield
    register_profiles()


def test_profiles_suit_expensive_model_calls(monkeypatch: pytest.MonkeyPatch, restore_profiles: None) -> None:
    monkeypatch.delenv("CI", raising=False)
    register_profiles()
    profile = settings.get_profile(PROFILE)
    assert profile.deadline is None and profile.max_examples == 10 and not profile.derandomize
    assert HealthCheck.too_slow in profile.suppress_health_check
    assert Phase.shrink in profile.phases and Phase.shrink not in settings.get_profile(PROFILE_NO_SHRINK).phases


def test_profiles_are_derandomized_under_ci(monkeypatch: pytest.MonkeyPatch, restore_profiles: None) -> None:
    monkeypatch.setenv("CI", "true")
    assert register_profiles(max_examples=4) == (PROFILE, PROFILE_NO_SHRINK)
    for name in (PROFILE, PROFILE_NO_SHRINK):
        profile = settings.get_profile(name)
        assert profile.derandomize and profile.database is None and profile.max_examples == 4


def test_importing_the_strategies_package_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, hypothesis, pytest_attnfaith.strategies as s; "
        "hypothesis.settings.get_profile(s.PROFILE); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
