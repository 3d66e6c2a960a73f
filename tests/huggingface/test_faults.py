"""A fault at any forward call of an audit (1..30) and a KeyboardInterrupt leave the model exactly as it was: its
train/eval flags, hooks, weights, attention implementation, and the process's patched functions; the next audit
gives the same results as one that was never interrupted."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.zoo import BiLSTMClassifier, sentiment_task
from tests.huggingface.conftest import build, token_batch
from tests.huggingface.test_concurrency import MHAClassifier, process_state

FAST = {"checks": ["uniform", "permutation", "erasure", "gradient"], "permutations": 8, "batch_size": 4}
WRAPPED_INPUTS = sentiment_task(6, seed=4, length=9).inputs()


class InjectedFaultError(RuntimeError):
    pass


def state(net: nn.Module) -> dict[str, Any]:
    config = getattr(net, "config", None)
    return {
        "training": {name: module.training for name, module in net.named_modules()},
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in net.modules()],
        "weights": {name: value.clone() for name, value in net.state_dict().items()},
        "requires_grad": {name: p.requires_grad for name, p in net.named_parameters()},
        "implementation": getattr(config, "_attn_implementation", None),
        "modules": [type(m).__name__ for m in net.modules()],
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    weights = a["weights"].keys() == b["weights"].keys() and all(
        torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"]
    )
    return weights and {k: v for k, v in a.items() if k != "weights"} == {k: v for k, v in b.items() if k != "weights"}


def faulty(net: nn.Module, where: nn.Module, at: int, error: type[BaseException]) -> Any:
    """A pre-hook on ``where`` that raises ``error`` at its ``at``-th call (installed before the snapshot)."""
    calls = [0]

    def hook(module: nn.Module, args: Any) -> None:
        calls[0] += 1
        if calls[0] == at:
            raise error("injected")

    return where.register_forward_pre_hook(hook), calls


CASES = {
    "bilstm": lambda: (BiLSTMClassifier(seed=3).train(), "attn", "embed"),
    "mha": lambda: (MHAClassifier().train(), "mha", "embed"),
    "bert": lambda: (build("bert").train(), None, None),
    "llama": lambda: (build("llama"), None, None),
}


def audited(net: nn.Module, attention: str | None, embeddings: str | None) -> tuple[Any, Any, nn.Module]:
    if attention is None:
        return net, token_batch(), net.get_input_embeddings()
    return af.wrap(net, attention=attention, embeddings=embeddings), WRAPPED_INPUTS, getattr(net, embeddings)  # type: ignore[arg-type]


def results(report: af.Report) -> dict[str, Any]:
    return {name: result["per_instance"] for name, result in report.to_dict()["checks"].items()}


@pytest.mark.parametrize("name", list(CASES))
def test_a_fault_at_every_forward_call_leaves_the_model_as_it_was(name: str) -> None:
    net, attention, embeddings = CASES[name]()
    model, inputs, where = audited(net, attention, embeddings)
    handle, calls = faulty(net, where, 0, InjectedFaultError)
    before, process = state(net), process_state()
    clean = results(af.audit(model, inputs, **FAST))
    total = calls[0]
    handle.remove()
    raised = 0
    for at in range(1, min(total, 30) + 1):
        handle, calls = faulty(net, where, at, InjectedFaultError if at % 7 else KeyboardInterrupt)
        try:  # a fault inside a probe pass the audit may survive (it falls back to full passes)
            af.audit(model, inputs, **FAST)
        except (InjectedFaultError, KeyboardInterrupt):
            raised += 1
        assert same(state(net), before), f"call {at}"
        assert process_state() == process, f"call {at}"
        handle.remove()
    assert raised >= min(total, 30) // 2
    handle, calls = faulty(net, where, 0, InjectedFaultError)
    assert results(af.audit(model, inputs, **FAST)) == clean
    handle.remove()
