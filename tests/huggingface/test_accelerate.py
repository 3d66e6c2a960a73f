"""Models dispatched by accelerate (``device_map``, disk offload) are audited as they are: the statistics of the
undispatched model, and accelerate's hooks still in place afterwards."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import transformers as tf

import pytest_attnfaith as af
from tests.huggingface.conftest import build, token_batch

accelerate = pytest.importorskip("accelerate")

OPTIONS = {"checks": ["permutation", "uniform", "erasure", "gradient", "loo"], "permutations": 10}


def hooked(model: tf.PreTrainedModel) -> dict[str, str]:
    """Module name → the class of the accelerate hook on it."""
    return {name: type(module._hf_hook).__name__ for name, module in model.named_modules() if hasattr(module, "_hf_hook")}


def audited(model: tf.PreTrainedModel) -> af.Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return af.audit(model, token_batch(6, 9), **OPTIONS)


@pytest.mark.parametrize("dispatch", ["disk_offload", "device_map"])
def test_a_dispatched_model_gives_the_statistics_of_the_undispatched_one(tmp_path: Path, dispatch: str) -> None:
    plain = build("bert").eval()
    model = copy.deepcopy(plain)
    if dispatch == "disk_offload":
        accelerate.disk_offload(model, offload_dir=str(tmp_path), execution_device="cpu")
    else:
        device_map = {"bert.embeddings": "cpu", "bert.encoder": "disk", "bert.pooler": "cpu", "classifier": "cpu"}
        accelerate.dispatch_model(model, device_map=device_map, offload_dir=str(tmp_path), main_device="cpu")
    hooks = hooked(model)
    assert hooks  # accelerate is in place before the audit
    expected, report = audited(plain), audited(model)
    assert hooked(model) == hooks
    assert report.verdicts == expected.verdicts
    for name, result in expected.checks.items():
        np.testing.assert_allclose(report.checks[name].per_instance, result.per_instance, rtol=1e-5, atol=1e-6)
        assert report.checks[name].statistic == pytest.approx(result.statistic, rel=1e-5, abs=1e-6)
