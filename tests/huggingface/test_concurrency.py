"""Two audits at once: of the same model from two threads they run one after the other (a lock per model); of
different models they share the process-wide patches (counted, restored by the last). Afterwards every model and
every patched function equals its state before."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
import transformers as tf
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.adapters import patches
from pytest_attnfaith.zoo import sentiment_task
from tests.core.test_wrap import MHAClassifier
from tests.huggingface.conftest import build, token_batch

WRAPPED_INPUTS = sentiment_task(12, seed=3, length=10).inputs()
FAST = {"checks": ["uniform", "permutation", "erasure"], "permutations": 10}


def process_state() -> dict[str, Any]:
    return {
        "F.softmax": F.softmax,
        "torch.softmax": torch.softmax,
        "Tensor.softmax": torch.Tensor.softmax,
        "sdpa": F.scaled_dot_product_attention,
        "rnn": torch.nn.utils.rnn.pack_padded_sequence,
        "patches": patches.installed(),
    }


def model_state(net: nn.Module) -> dict[str, Any]:
    config = getattr(net, "config", None)
    return {
        "training": {name: module.training for name, module in net.named_modules()},
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in net.modules()],
        "implementation": getattr(config, "_attn_implementation", None),
    }


def in_threads(*jobs: Callable[[], Any]) -> list[Any]:
    """Run the jobs at once (started together), return their results; re-raise the first error."""
    start = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = jobs[index]()
        except BaseException as err:
            results[index] = err

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def checks_of(report: af.Report) -> dict[str, Any]:
    return {name: result["per_instance"] for name, result in report.to_dict()["checks"].items()}


def test_two_threads_on_one_wrapped_model_run_one_after_the_other_and_leave_it_as_it_was() -> None:
    net = MHAClassifier().train()
    model = af.wrap(net, attention="mha", embeddings="embed")
    before, process = model_state(net), process_state()
    alone = checks_of(af.audit(model, WRAPPED_INPUTS, **FAST))
    first, second = in_threads(*[lambda: af.audit(model, WRAPPED_INPUTS, **FAST)] * 2)
    assert checks_of(first) == alone and checks_of(second) == alone
    assert model_state(net) == before
    assert process_state() == process


def test_a_huggingface_model_and_a_wrapped_model_audited_at_once_are_both_restored() -> None:
    bert, net = build("bert").train(), MHAClassifier().train()
    hf_inputs = token_batch()
    before = {"bert": model_state(bert), "net": model_state(net)}
    process = process_state()
    jobs = [
        lambda: af.audit(bert, hf_inputs, **FAST),
        lambda: af.audit(af.wrap(net, attention="mha", embeddings="embed"), WRAPPED_INPUTS, **FAST),
        lambda: af.audit(bert, hf_inputs, **FAST),
    ]
    alone = [checks_of(job()) for job in jobs]
    for _ in range(3):  # each wrapped session traces its model (torch.fx patches nn.Module.__call__ meanwhile)
        together = [checks_of(report) for report in in_threads(*jobs)]
        assert together == alone
    assert {"bert": model_state(bert), "net": model_state(net)} == before
    assert process_state() == process


def test_a_deberta_model_outside_the_interface_and_a_wrapped_model_at_once() -> None:
    deberta, net = build("deberta-v2"), MHAClassifier()
    before = {"deberta": model_state(deberta), "net": model_state(net)}
    process = process_state()
    jobs = [
        lambda: af.audit(deberta, token_batch(), **FAST),
        lambda: af.audit(af.wrap(net, attention="mha", embeddings="embed"), WRAPPED_INPUTS, **FAST),
    ]
    alone = [checks_of(job()) for job in jobs]
    assert [checks_of(report) for report in in_threads(*jobs)] == alone
    assert {"deberta": model_state(deberta), "net": model_state(net)} == before
    assert process_state() == process
    assert isinstance(deberta, tf.PreTrainedModel)
