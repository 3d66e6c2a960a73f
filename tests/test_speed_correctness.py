"""The fast paths give the answers of the slow ones: the partial forward (``adapters.partial``) equals the
full forward, and the exact adversarial optimum is a true maximum that J&W's search never exceeds.

No timing here: speed is measured by ``python -m benchmarks.speed``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import rnn

import pytest_attnfaith as af
from pytest_attnfaith.adapters import Edit, prepare_batch
from pytest_attnfaith.adapters.rowcache import RowCache, row_keys
from pytest_attnfaith.checks import Context
from pytest_attnfaith.checks._common import replace_rows
from pytest_attnfaith.checks.adversarial import exact_max_jsd, linear_readout, max_jsd, search_max_jsd, slab
from pytest_attnfaith.metrics import jsd, tvd
from pytest_attnfaith.options import resolve_options
from pytest_attnfaith.zoo import BiLSTMClassifier, MaskedSoftmax, ZooModel, sentiment_task

COUNTERFACTUAL = ["permutation", "uniform", "erasure", "adversarial"]
FAST = {"permutations": 12, "adversarial_steps": 40}


def sharp_bilstm(seed: int = 0, scale: float = 25.0) -> BiLSTMClassifier:
    """J&W's architecture, untrained, with a head scaled so that tokens pull the output far apart."""
    net = BiLSTMClassifier(embedding=8, hidden=8, seed=seed)
    with torch.no_grad():
        net.head.weight.mul_(scale)
    return net.eval()


class Branchy(nn.Module):
    """Attention whose readout depends on a data-dependent branch: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(40, 4)
        self.score = nn.Linear(4, 1)
        self.attn = MaskedSoftmax()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        e = self.embed(input_ids)
        alpha = self.attn(self.score(e).squeeze(-1), attention_mask)
        z = (alpha * e[..., 0]).sum(1)
        if bool((attention_mask.sum(1) > 100).any()):
            z = -z
        return torch.stack([torch.zeros_like(z), 3 * z], dim=1)


def per_check(report: af.Report) -> dict[str, np.ndarray]:
    return {name: result.per_instance for name, result in report.checks.items()}


def assert_same(left: af.Report, right: af.Report) -> None:
    for name, values in per_check(left).items():
        np.testing.assert_allclose(values, right.checks[name].per_instance, rtol=0, atol=1e-6, equal_nan=True, err_msg=name)


@contextlib.contextmanager
def session_context(net: nn.Module, inputs: dict[str, Tensor], **options: object) -> Iterator[Context]:
    model = af.wrap(net, attention="attn", embeddings="embed")
    resolved = resolve_options(**{"scale": "probability", **options})  # the TVD references below
    with model.session(resolved):
        batch = prepare_batch(inputs).to(model.device)
        yield Context(model, batch, resolved, model.forward(batch))


@pytest.mark.parametrize("kind", ["bilstm", "faithful", "unused", "misleading"])
def test_partial_forward_gives_the_full_forward_values(kind: str) -> None:
    net = sharp_bilstm() if kind == "bilstm" else ZooModel(kind)
    inputs = sentiment_task(10, seed=3).inputs()
    fast = af.audit(af.wrap(net, attention="attn", embeddings="embed"), inputs, checks=COUNTERFACTUAL, **FAST)
    full = af.audit(af.wrap(net, attention="attn", embeddings="embed", partial=False), inputs, checks=COUNTERFACTUAL, **FAST)
    assert fast.model["partial"].startswith("counterfactual passes re-run")
    assert full.model["partial"].startswith("off")
    assert_same(fast, full)


def test_partial_forward_holds_across_chunks_and_in_the_gradient_search() -> None:
    net, inputs = sharp_bilstm(seed=1), sentiment_task(9, seed=4).inputs()
    # batch_size 6 < 9 instances: the cache fills and starts afresh within every sweep
    options = {"adversarial_method": "search", "batch_size": 6, "permutations": 6, "adversarial_steps": 12}
    fast = af.audit(af.wrap(net, attention="attn", embeddings="embed"), inputs, checks=COUNTERFACTUAL, **options)
    full = af.audit(af.wrap(net, attention="attn", embeddings="embed", partial=False), inputs, checks=COUNTERFACTUAL, **options)
    assert_same(fast, full)


def test_untraceable_forward_falls_back_to_full_passes_with_a_note() -> None:
    inputs = sentiment_task(8, seed=5).inputs()
    net = Branchy()
    fast = af.audit(af.wrap(net, attention="attn", embeddings="embed"), inputs, checks=["permutation", "uniform"], permutations=8)
    full = af.audit(
        af.wrap(net, attention="attn", embeddings="embed", partial=False),
        inputs,
        checks=["permutation", "uniform"],
        permutations=8,
    )
    assert fast.model["partial"].startswith("full forward passes: TraceError")
    assert_same(fast, full)


def test_partial_forward_leaves_model_and_torch_as_they_were() -> None:
    net = sharp_bilstm()
    attributes, pack = set(vars(net)), rnn.pack_padded_sequence
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    af.audit(
        af.wrap(net, attention="attn", embeddings="embed"), sentiment_task(6).inputs(), checks=["permutation"], permutations=4
    )
    assert set(vars(net)) == attributes and rnn.pack_padded_sequence is pack
    assert all(m.training for m in net.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())


def test_row_cache_finds_rows_by_content_and_misses_changed_rows() -> None:
    cache = RowCache(capacity=4)
    ids = torch.tensor([[5, 6, 7], [8, 9, 0], [5, 6, 7]])
    keys = row_keys([ids])
    assert (cache.find({"input_ids": ids}, keys) == -1).all()
    slots = cache.add({"input_ids": ids[:2], "node:h": torch.tensor([[1.0], [2.0]])}, keys[:2])
    assert slots.tolist() == [0, 1]
    query = torch.tensor([[8, 9, 0], [5, 6, 7], [5, 6, 8]])
    assert cache.find({"input_ids": query}, row_keys([query])).tolist() == [1, 0, -1]
    shorter = query[:, :2]
    assert (cache.find({"input_ids": shorter}, row_keys([shorter])) == -1).all()


def test_device_option_cpu_keeps_every_tensor_on_cpu() -> None:
    inputs = sentiment_task(6, seed=2).inputs()
    with session_context(sharp_bilstm(), inputs, device="cpu", **FAST) as context:
        assert context.probs.device.type == "cpu" and context.attention.device.type == "cpu"
        values, methods = max_jsd(context)
    assert set(methods) == {"exact"} and np.isfinite(values).all()


# -- the exact adversarial optimum ---------------------------------------------------------------


def vertex_candidates(alpha: Tensor, vertex: Tensor, real: Tensor, p1: float, epsilon: float) -> Tensor:
    """Every one-hot and every two-token mixture on a slab face, built directly (no shortcut)."""
    positions = real.nonzero().flatten().tolist()
    lo = torch.logit(torch.tensor(max(p1 - epsilon, 0.0), dtype=torch.float64)).item()
    hi = torch.logit(torch.tensor(min(p1 + epsilon, 1.0), dtype=torch.float64)).item()
    out = [torch.nn.functional.one_hot(torch.tensor(i), len(alpha)).double() for i in positions]
    for i, j in itertools.permutations(positions, 2):
        for bound in (lo, hi):
            if np.isfinite(bound) and vertex[i] != vertex[j]:
                lam = (bound - vertex[j].item()) / (vertex[i].item() - vertex[j].item())
                if 0 < lam < 1:
                    weights = torch.zeros(len(alpha), dtype=torch.float64)
                    weights[i], weights[j] = lam, 1 - lam
                    out.append(weights)
    return torch.stack(out).float()


def outputs(context: Context, instance: int, weights: Tensor) -> Tensor:
    rows = torch.full((len(weights),), instance)
    return context.model.forward(context.batch.select(rows), Edit(replace_rows, {"weights": weights})).probs


def test_exact_optimum_is_the_best_vertex_checked_through_the_model() -> None:
    inputs = sentiment_task(6, length=7, min_length=4, seed=11).inputs()
    with session_context(sharp_bilstm(seed=2), inputs) as context:
        vertex, linear = linear_readout(context)
        assert linear.all()
        epsilon = context.options.epsilon
        exact = exact_max_jsd(context.attention, context.real, vertex, *slab(context.logits[:, 0], epsilon, "probability"))
        for b in range(context.batch.size):
            candidates = vertex_candidates(context.attention[b], vertex[b], context.real[b], float(context.probs[b, 1]), epsilon)
            feasible = tvd(outputs(context, b, candidates), context.probs[b]) <= epsilon + 1e-4
            best = jsd(candidates[feasible], context.attention[b].expand_as(candidates[feasible])).max()
            assert exact[b].item() == pytest.approx(max(best.item(), 0.0), abs=1e-5)


def simplex_grid(length: int, steps: int) -> Tensor:
    points = [c for c in itertools.product(range(steps + 1), repeat=length - 1) if sum(c) <= steps]
    grid = torch.tensor([[*c, steps - sum(c)] for c in points], dtype=torch.float32)
    return grid / steps


def test_exact_optimum_bounds_a_dense_grid_and_is_nearly_reached_by_it() -> None:
    inputs = {"input_ids": torch.tensor([[13, 5, 20, 31], [2, 17, 9, 25], [30, 14, 11, 1]])}
    grid = simplex_grid(4, 36)
    with session_context(sharp_bilstm(seed=3), inputs) as context:
        vertex, linear = linear_readout(context)
        exact = exact_max_jsd(
            context.attention, context.real, vertex, *slab(context.logits[:, 0], context.options.epsilon, "probability")
        )
        for b in range(3):
            feasible = tvd(outputs(context, b, grid), context.probs[b]) <= context.options.epsilon
            sampled = jsd(grid[feasible], context.attention[b].expand_as(grid[feasible])).max().item()
            assert linear[b] and sampled <= exact[b].item() + 1e-5
            assert sampled >= 0.9 * exact[b].item()


def test_search_never_exceeds_the_exact_optimum() -> None:
    inputs = sentiment_task(8, length=8, min_length=4, seed=12).inputs()
    with session_context(sharp_bilstm(seed=4), inputs, adversarial_steps=150) as context:
        vertex, linear = linear_readout(context)
        exact = exact_max_jsd(
            context.attention, context.real, vertex, *slab(context.logits[:, 0], context.options.epsilon, "probability")
        )
        with torch.enable_grad():
            searched = search_max_jsd(context, torch.arange(context.batch.size))
    assert linear.all()
    assert (searched <= exact + 1e-5).all()
    assert (searched > 0).any()
