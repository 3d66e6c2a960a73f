"""bf16 and fp16 models are audited with the float32 verdicts: the output distribution is float64 from the logits,
and an attention row may sum to 1 within the rounding of its dtype."""

from __future__ import annotations

import copy

import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.metrics import distribution_tolerance
from pytest_attnfaith.zoo import ZooModel

FAST = {"permutations": 30}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["faithful", "unused", "misleading"])
def test_half_precision_zoo_models_get_the_float32_verdicts(kind: str, dtype: torch.dtype, inputs) -> None:
    net = ZooModel(kind)
    full = af.audit(af.wrap(net, attention="attn", embeddings="embed"), inputs, **FAST, scale="probability")
    half = af.audit(
        af.wrap(copy.deepcopy(net).to(dtype), attention="attn", embeddings="embed"), inputs, **FAST, scale="probability"
    )
    assert half.verdicts == full.verdicts
    assert {name: r.verdict for name, r in half.checks.items()} == {name: r.verdict for name, r in full.checks.items()}
    assert half.checks["adversarial"].details["exact"] == full.checks["adversarial"].details["exact"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_trained_bilstm_in_half_precision_gets_the_float32_answers(dtype: torch.dtype, trained_bilstms, bilstm_inputs) -> None:
    net = trained_bilstms["diverse"]
    full = af.audit(af.wrap(net, attention="attn", embeddings="embed"), bilstm_inputs, **FAST, scale="probability")
    half = af.audit(
        af.wrap(copy.deepcopy(net).to(dtype), attention="attn", embeddings="embed"), bilstm_inputs, **FAST, scale="probability"
    )
    assert half.verdicts == full.verdicts == {"used": "yes", "agrees": "yes", "unique": "no"}
    assert next(net.parameters()).dtype == torch.float32  # the audited copy, not the model, changed dtype


def test_the_distribution_tolerance_follows_the_dtype() -> None:
    assert distribution_tolerance(torch.float32) == 1e-3
    assert distribution_tolerance(torch.float16) == pytest.approx(4 * 2**-10)
    assert distribution_tolerance(torch.bfloat16) == pytest.approx(4 * 2**-7)
    row = torch.softmax(torch.randn(4, 64), dim=-1).to(torch.bfloat16)
    assert ((row.double().sum(-1) - 1).abs() <= distribution_tolerance(torch.bfloat16)).all()
