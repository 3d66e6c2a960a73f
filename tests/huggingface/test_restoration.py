"""After every audit — passing, failing or raising — the model is exactly as it was."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import pytest_attnfaith as af
from tests.huggingface.conftest import build, token_batch

FAST = {"permutations": 5, "adversarial_steps": 5}


def snapshot(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Everything an audit could disturb, and the model's output on ``inputs``."""
    training = model.training
    model.eval()
    with torch.no_grad():
        output = model(**inputs).logits.clone()
    model.train(training)
    return {
        "output": output,
        "weights": {name: tensor.detach().clone() for name, tensor in model.state_dict().items()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "implementation": [getattr(m.config, "_attn_implementation", None) for m in model.modules() if hasattr(m, "config")],
        "hooks": {name: _hooks(m) for name, m in model.named_modules()},
        "training": {name: m.training for name, m in model.named_modules()},
        "modules": [name for name, _ in model.named_modules()],
    }


def _hooks(module: nn.Module) -> tuple[tuple[int, ...], ...]:
    kinds = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._forward_hooks_with_kwargs)
    return tuple(tuple(hooks) for hooks in kinds)


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert torch.equal(before["output"], after["output"])
    assert before["weights"].keys() == after["weights"].keys()
    assert all(torch.equal(before["weights"][k], after["weights"][k]) for k in before["weights"])
    for key in ("requires_grad", "implementation", "hooks", "training", "modules"):
        assert before[key] == after[key], key


@pytest.fixture(params=["bert", "gpt2", "llama", "deberta-v2"])
def model(request) -> nn.Module:
    """A fresh model in train mode, with a user's hook and a frozen parameter."""
    net = build(request.param)
    net.train()
    net.get_input_embeddings().weight.requires_grad_(False)
    handle = net.get_input_embeddings().register_forward_hook(lambda module, args, output: None)
    yield net
    handle.remove()


def test_a_failing_audit_leaves_the_model_as_it_was(model):
    inputs = token_batch()
    before = snapshot(model, inputs)
    report = af.audit(model, inputs, **FAST)
    assert not report.passed
    assert_unchanged(before, snapshot(model, inputs))


def test_a_passing_audit_leaves_the_model_as_it_was(model):
    inputs = token_batch()
    before = snapshot(model, inputs)
    report = af.audit(model, inputs, checks=["uniform"], epsilon=1e-9, require=("used",), inconclusive="pass")
    assert report.passed
    assert_unchanged(before, snapshot(model, inputs))


def test_rollout_and_per_head_audits_leave_the_model_as_it_was(model):
    inputs = token_batch()
    before = snapshot(model, inputs)
    options = {} if model.config.model_type == "deberta-v2" else {"aggregation": "rollout"}
    af.audit(model, inputs, checks=["uniform", "loo"], per_head=True, **options)
    assert_unchanged(before, snapshot(model, inputs))


def test_an_audit_that_raises_mid_way_leaves_the_model_as_it_was(model):
    """The model raises on its fourth forward pass, inside a check, after the switch to the audit's attention."""
    inputs = token_batch()
    calls = []

    def fail_late(module: nn.Module, args: Any) -> None:
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom in the middle of the audit")

    handle = model.register_forward_pre_hook(fail_late)
    try:
        before = snapshot(model, inputs)
        calls.clear()
        with pytest.raises(RuntimeError, match="boom"):
            af.audit(model, inputs, **FAST)
        assert len(calls) == 4
        assert_unchanged(before, snapshot(model, inputs))
    finally:
        handle.remove()


def test_an_option_error_found_during_the_first_pass_leaves_the_model_as_it_was(model):
    inputs = token_batch()
    before = snapshot(model, inputs)
    with pytest.raises(af.AttnFaithError, match="out of range"):
        af.audit(model, inputs, layer=9)
    assert_unchanged(before, snapshot(model, inputs))


def test_the_fine_tuned_minilm_is_unchanged_by_failing_and_passing_audits(minilm, sentiment):
    inputs, _ = sentiment
    model_inputs = {k: v for k, v in inputs.items() if k != "special_tokens_mask"}
    before = snapshot(minilm, model_inputs)
    af.audit(minilm, inputs, checks=["uniform", "permutation"], permutations=5)
    assert_unchanged(before, snapshot(minilm, model_inputs))


MODEL_FACTS = {"default_query", "path", "implementation_before", "_loaded_tokenizer"}
"""What an adapter learns about the model itself (not about one audit) and may keep between sessions."""


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_an_adapter_the_user_keeps_holds_nothing_of_an_audit_once_it_ends(name):
    adapter = af.huggingface(build(name))
    before = {key: value for key, value in vars(adapter).items() if key not in MODEL_FACTS}
    af.audit(adapter, token_batch(), targets=[3, 7] if name == "llama" else None, per_head=True, **FAST)
    after = {key: value for key, value in vars(adapter).items() if key not in MODEL_FACTS}
    assert all(after[key] is None for key in after.keys() - before.keys())  # a shortcut's slot, emptied
    for key, value in before.items():
        kept = after[key]
        assert kept is value or (type(kept) is type(value) and repr(kept) == repr(value)), key
    assert adapter._hidden is None and adapter._decoder is None and adapter._copies is None and adapter.layers == []
