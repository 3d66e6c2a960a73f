"""With default settings, the verdict on every zoo model is the one known by construction."""

from __future__ import annotations

import pytest

import pytest_attnfaith as af
from tests.core.conftest import wrapped

DECORATIVE = ["unused", "constant_values", "vanishing"]


@pytest.mark.parametrize("kind", DECORATIVE)
def test_decorative_attention_fails_with_the_permutation_check_among_the_failures(kind: str, inputs) -> None:
    with pytest.raises(af.AttentionNotFaithful) as raised:
        af.assert_attention_faithful(wrapped(kind), inputs)
    report = raised.value.report
    assert not report.checks["permutation"].passed
    assert report.answers["used"] is False
    assert "used" in str(raised.value) and "permutation" in str(raised.value)


def test_attention_that_drives_the_output_onto_the_evidence_passes(inputs) -> None:
    report = af.assert_attention_faithful(wrapped("faithful"), inputs)
    assert report.passed and report.answers == {"used": True, "agrees": True, "unique": True}
    assert all(result.passed for result in report.checks.values())


def test_misleading_attention_fails_the_gradient_check(inputs) -> None:
    with pytest.raises(af.AttentionNotFaithful) as raised:
        af.assert_attention_faithful(wrapped("misleading"), inputs)
    report = raised.value.report
    assert not report.checks["gradient"].passed
    assert report.checks["gradient"].statistic < 0.1
    assert report.answers["agrees"] is False


def test_conicity_training_makes_bilstm_attention_used_but_not_unique(trained_bilstms, bilstm_inputs) -> None:
    """DESIGN.md's story: the diversity-trained BiLSTM's attention is used (far more than the vanilla one's), yet a
    very different attention gives the same output (linear head: the exact adversarial optimum applies)."""
    vanilla = af.audit(af.wrap(trained_bilstms["vanilla"], attention="attn", embeddings="embed"), bilstm_inputs)
    diverse = af.audit(af.wrap(trained_bilstms["diverse"], attention="attn", embeddings="embed"), bilstm_inputs)
    assert diverse.answers["used"] is True
    assert diverse.answers["unique"] is False
    assert diverse.checks["adversarial"].details["exact"] == len(bilstm_inputs["input_ids"])
    assert diverse.checks["permutation"].details["median"] > 1.5 * vanilla.checks["permutation"].details["median"]


def test_decorative_twin_of_the_bilstm_fails_every_question(trained_bilstms, bilstm_inputs) -> None:
    with pytest.raises(af.AttentionNotFaithful) as raised:
        af.assert_attention_faithful(af.wrap(trained_bilstms["twin"], attention="attn", embeddings="embed"), bilstm_inputs)
    assert raised.value.report.answers == {"used": False, "agrees": False, "unique": False}
    message = str(raised.value).splitlines()
    assert len(raised.value.report.failed_checks) == 6
    assert len(message) <= 60, "a six-check failure fits a screen (0.2: 106 lines, every check's three worst tables)"
    assert sum(line.startswith("    instance ") for line in message) == 3  # the option worst=3: the worst overall


def test_require_relaxes_the_verdict_to_the_named_questions(trained_bilstms, bilstm_inputs) -> None:
    model = af.wrap(trained_bilstms["diverse"], attention="attn", embeddings="embed")
    with pytest.raises(af.AttentionNotFaithful, match="unique"):
        af.assert_attention_faithful(model, bilstm_inputs)
    assert af.assert_attention_faithful(model, bilstm_inputs, require=("used", "agrees")).passed
