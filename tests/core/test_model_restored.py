"""The user's model is left exactly as it was: hooks, train/eval mode, weights, requires_grad — also on error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.zoo import BiLSTMClassifier, sentiment_task

INPUTS = sentiment_task(16, seed=5, length=12).inputs()
FAST = {"permutations": 10, "adversarial_steps": 20}


def snapshot(net: nn.Module) -> dict:
    return {
        "training": {name: module.training for name, module in net.named_modules()},
        "hooks": {
            name: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for name, m in net.named_modules()
        },
        "weights": {name: p.detach().clone() for name, p in net.state_dict().items()},
        "requires_grad": {name: p.requires_grad for name, p in net.named_parameters()},
        "grads": {name: p.grad for name, p in net.named_parameters()},
    }


def assert_same(net: nn.Module, before: dict) -> None:
    after = snapshot(net)
    assert after["training"] == before["training"]
    assert after["hooks"] == before["hooks"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(g is None for g in after["grads"].values())
    for name, value in before["weights"].items():
        assert torch.equal(after["weights"][name], value), name
    assert torch.softmax is torch.nn.functional.softmax or callable(torch.softmax)


def test_model_in_train_mode_is_audited_in_eval_mode_and_returned_in_train_mode() -> None:
    net = BiLSTMClassifier(seed=1)
    net.train()
    net.head.eval()  # a mixed state must come back as it was
    partly_frozen = next(net.encoder.parameters())
    partly_frozen.requires_grad_(False)
    before = snapshot(net)
    report_train = af.audit(af.wrap(net, attention="attn", embeddings="embed"), INPUTS, **FAST)
    assert_same(net, before)
    net.eval()
    report_eval = af.audit(af.wrap(net, attention="attn", embeddings="embed"), INPUTS, **FAST)
    assert report_train.to_dict()["checks"] == report_eval.to_dict()["checks"]


def test_model_is_restored_after_a_failing_verdict() -> None:
    net = BiLSTMClassifier(readout="mean", seed=2)
    before = snapshot(net)
    with pytest.raises(af.AttentionNotFaithful):
        af.assert_attention_faithful(af.wrap(net, attention="attn", embeddings="embed"), INPUTS, **FAST)
    assert_same(net, before)


class RaisesMidAudit(BiLSTMClassifier):
    """Raises on the n-th call: somewhere inside a check, after hooks are installed."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(seed=3)
        self.calls = 0
        self.fail_at = fail_at

    def forward(self, input_ids, attention_mask=None):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        return super().forward(input_ids, attention_mask)


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_model_is_restored_when_it_raises_mid_audit(fail_at: int) -> None:
    net = RaisesMidAudit(fail_at)
    net.train()
    before = snapshot(net)
    softmax = (torch.softmax, torch.nn.functional.softmax, torch.Tensor.softmax)
    with pytest.raises(RuntimeError, match="boom"):
        af.audit(af.wrap(net, attention="attn", embeddings="embed"), INPUTS, **FAST)
    assert_same(net, before)
    assert (torch.softmax, torch.nn.functional.softmax, torch.Tensor.softmax) == softmax


def test_mha_model_is_restored_and_global_softmax_unpatched_after_raising() -> None:
    from tests.core.test_wrap import MHAClassifier

    net = MHAClassifier()

    def explode(module, args, output):
        raise RuntimeError("late failure")

    softmax = (torch.softmax, torch.nn.functional.softmax, torch.Tensor.softmax, torch.nn.functional.scaled_dot_product_attention)
    handle = net.head.register_forward_hook(explode)
    before = snapshot(net)
    with pytest.raises(RuntimeError, match="late failure"):
        af.audit(af.wrap(net, attention="mha", embeddings="embed"), INPUTS, **FAST)
    assert_same(net, before)
    handle.remove()
    after = (torch.softmax, torch.nn.functional.softmax, torch.Tensor.softmax, torch.nn.functional.scaled_dot_product_attention)
    assert after == softmax
    assert not torch._C._is_torch_function_mode_enabled()


def test_same_seed_gives_the_same_report_and_another_seed_other_permutations() -> None:
    net = BiLSTMClassifier(seed=4)
    model = af.wrap(net, attention="attn", embeddings="embed")
    first = af.audit(model, INPUTS, seed=7, adversarial_method="search", **FAST).to_dict()
    second = af.audit(model, INPUTS, seed=7, adversarial_method="search", **FAST).to_dict()
    other = af.audit(model, INPUTS, seed=8, adversarial_method="search", **FAST).to_dict()
    assert first["checks"] == second["checks"]
    assert first["checks"]["permutation"]["per_instance"] != other["checks"]["permutation"]["per_instance"]
