"""Explainers that prove their own numbers: integrated gradients refine their path until complete (or say which
instances did not, NaN), and sampled Shapley values carry their standard errors and say where their ranking is noise."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.explainers import integrated_gradients, notes, shapley
from pytest_attnfaith.metrics import output_distribution
from pytest_attnfaith.options import parse_option_text, resolve_options
from pytest_attnfaith.report.explanations import html_section
from pytest_attnfaith.session import opened
from pytest_attnfaith.zoo import sentiment_task
from tests.core.conftest import wrapped


@pytest.fixture(scope="module")
def net(trained_bilstms) -> torch.nn.Module:
    return copy.deepcopy(trained_bilstms["vanilla"]).double()


@pytest.fixture(scope="module")
def inputs(bilstm_inputs) -> dict[str, torch.Tensor]:
    return {key: value[:16] for key, value in bilstm_inputs.items()}


def outputs(net, ids, mask, classes, *, log_odds: bool = False) -> torch.Tensor:
    """f of the BiLSTM computed here: p of ``classes``, or its log-odds (the one logit signed toward the class)."""
    with torch.no_grad():
        p = output_distribution(net(ids, mask))
    chosen = p.gather(1, classes[:, None])[:, 0]
    return (chosen.log() - (1 - chosen).log()) if log_odds else chosen


def test_a_coarse_rule_is_refined_until_every_instance_is_complete(net, inputs) -> None:
    """Riemann-left with 4 nodes misses completeness; the adaptive path meets it within ig_tolerance on every
    instance, and the report entry holds the nodes and gaps."""
    model = af.wrap(net, attention="attn", embeddings="embed")
    options = resolve_options(ig_method="riemann_left", ig_steps=4, ig_tolerance=(0.001, 0.01), scale="probability")
    with opened(model, inputs, options) as context:
        fixed_options = resolve_options(ig_method="riemann_left", ig_steps=4, ig_tolerance=None, scale="probability")
        scores = integrated_gradients.attribute(context).cpu()
        entry = notes.take(context)
        fixed = integrated_gradients.attribute(type(context)(context.model, context.batch, fixed_options, context.reference))
        classes = context.predicted.cpu()
    change = outputs(net, inputs["input_ids"], inputs["attention_mask"], classes) - outputs(
        net, torch.zeros_like(inputs["input_ids"]), inputs["attention_mask"], classes
    )
    gap = (scores.sum(dim=1) - change).abs()
    assert (gap <= 0.001 + 0.01 * change.abs()).all()
    assert ((fixed.cpu().sum(dim=1) - change).abs() > 0.001 + 0.01 * change.abs()).any(), "the coarse rule alone misses"
    assert entry is not None and entry["unconverged"] == 0 and min(entry["steps"]) >= 4 and max(entry["steps"]) > 4
    assert np.allclose(entry["gaps"], gap.numpy(), atol=1e-9)
    assert np.allclose(entry["changes"], change.numpy(), atol=1e-9)


def test_completeness_holds_for_any_scalar_the_explainer_is_given(net, inputs) -> None:
    """A logit f (the log-odds of the predicted class) instead of the probability: Σ IG = f(x) − f(b) within tolerance."""
    model = af.wrap(net, attention="attn", embeddings="embed")

    with opened(model, inputs, resolve_options()) as context:

        def logit(forward, instances):
            p = forward.probs.double().gather(1, context.predicted[instances][:, None])[:, 0]
            return p.log() - (1 - p).log()

        scores = integrated_gradients.attribute(context, objective=logit).cpu()
        classes = context.predicted.cpu()
    change = outputs(net, inputs["input_ids"], inputs["attention_mask"], classes, log_odds=True) - outputs(
        net, torch.zeros_like(inputs["input_ids"]), inputs["attention_mask"], classes, log_odds=True
    )
    assert change.abs().max() > 1.0, "the logit moves by more than a probability can"
    assert ((scores.sum(dim=1) - change).abs() <= 0.005 + 0.02 * change.abs()).all()


def test_an_instance_that_cannot_converge_is_nan_counted_and_warned(net, inputs) -> None:
    model = af.wrap(net, attention="attn", embeddings="embed")
    with pytest.warns(af.ConvergenceWarning, match=r"completeness gap \d"):
        report = af.audit_explanation(
            model, inputs, "integrated_gradients", ig_method="riemann_left", ig_steps=2, ig_max_steps=2, ig_tolerance=1e-6
        )
    entry = report.model["explainer"]
    nan_rows = [i for i, row in enumerate(report.instances["scores"]) if any(math.isnan(v) for v in row)]
    assert entry["unconverged"] == len(nan_rows) > 0
    assert all(entry["gaps"][i] > 1e-6 for i in nan_rows)
    for check in ("comprehensiveness", "sufficiency"):  # never ranked: undefined for the checks
        values = report.checks[check].per_instance
        assert all(math.isnan(values[i]) for i in nan_rows)
    assert "did not converge" in html_section({"test_ig": [report.to_dict()]})


def test_mean_baseline_starts_from_each_instances_mean_embedding(net, inputs) -> None:
    """f(b) computed here with the embeddings' output replaced by the instance's mean real embedding."""
    report = af.audit_explanation(
        af.wrap(net, attention="attn", embeddings="embed"),
        inputs,
        "integrated_gradients",
        ig_baseline="mean",
        scale="probability",
    )
    real = inputs["attention_mask"].bool()[..., None]

    def to_mean(module, args, output):
        mean = (output * real).sum(1, keepdim=True) / real.sum(1, keepdim=True)
        return torch.where(real, mean, output)

    classes = torch.tensor(report.instances["predicted"])
    handle = net.embed.register_forward_hook(to_mean)
    try:
        start = outputs(net, inputs["input_ids"], inputs["attention_mask"], classes)
    finally:
        handle.remove()
    full = outputs(net, inputs["input_ids"], inputs["attention_mask"], classes)
    entry = report.model["explainer"]
    assert entry["baseline"] == "mean" and entry["unconverged"] == 0
    assert np.allclose(entry["changes"], (full - start).numpy(), atol=1e-9)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"ig_tolerance": (0.0, 0.0)}, "ig_tolerance"),
        ({"ig_tolerance": (-1.0, 0.1)}, "ig_tolerance"),
        ({"ig_tolerance": "tight"}, "ig_tolerance"),
        ({"ig_max_steps": 10, "ig_steps": 50}, "ig_max_steps=10 is below ig_steps=50"),
        ({"ig_baseline": "noise"}, "ig_baseline"),
    ],
)
def test_bad_integrated_gradients_options_are_refused_by_name(options, match) -> None:
    with pytest.raises(af.AttnFaithError, match=match):
        resolve_options(**options)


def test_tolerance_text_from_an_ini_file() -> None:
    assert parse_option_text("ig_tolerance", "0.01, 0.05") == (0.01, 0.05)
    assert parse_option_text("ig_tolerance", "none") is None
    assert resolve_options(ig_tolerance=0.01).ig_tolerance == (0.01, 0.0)


def test_shapley_standard_errors_are_the_spread_over_the_permutations(trained_bilstms) -> None:
    """Sampled (25 of 9! orders): SE_t = sd_π(marginal) / √25 from the marginals recomputed here; exact (all 4! orders):
    SE = 0. The within-noise fraction counts the adjacent pairs of the top ⌈0.5·n⌉."""
    model = af.wrap(trained_bilstms["vanilla"], attention="attn", embeddings="embed")
    inputs = sentiment_task(6, seed=5, length=9, min_length=9).inputs()
    with opened(model, inputs, resolve_options(removal="mask", mask_token_id=7)) as context:
        scores = shapley.attribute(context)
        entry = notes.take(context)
        keys = torch.rand(6, 25, 9, generator=context.generator("shapley"))
        marginal, _ = shapley._marginals(context, torch.arange(6), keys)
    errors = entry["standard_errors"]
    expected = marginal.std(dim=1) / 5.0
    assert torch.allclose(errors, expected, atol=1e-12) and errors.gt(0).any()
    assert torch.allclose(scores, marginal.mean(dim=1), atol=1e-12)
    fractions = [value for value in entry["within_noise"] if value is not None]
    assert len(fractions) == 6 and all(0.0 <= value <= 1.0 for value in fractions)
    short = sentiment_task(3, seed=5, length=4, min_length=4).inputs()
    exact = af.audit_explanation(model, short, "shapley", removal="mask", mask_token_id=7, shapley_samples=24)
    assert exact.model["explainer"]["max_standard_error"] == 0.0
    assert "within 2 SE" in html_section({"test_shapley": [exact.to_dict()]})


def test_within_noise_is_the_share_of_adjacent_top_pairs_closer_than_two_standard_errors(trained_bilstms) -> None:
    model = af.wrap(trained_bilstms["vanilla"], attention="attn", embeddings="embed")
    inputs = sentiment_task(4, seed=6, length=8, min_length=8).inputs()
    with opened(model, inputs, resolve_options(removal="mask", mask_token_id=7, shapley_samples=40)) as context:
        shapley.attribute(context)
        entry = notes.take(context)
        keys = torch.rand(4, 40, 8, generator=context.generator("shapley"))
        marginal, _ = shapley._marginals(context, torch.arange(4), keys)
    for row in range(4):
        phi = marginal[row].mean(dim=0)
        order = phi.argsort(descending=True)[:4]  # k = ⌈0.5 · 8⌉
        close = [
            abs(float(phi[a] - phi[b])) <= 2 * float((marginal[row, :, a] - marginal[row, :, b]).std()) / math.sqrt(40)
            for a, b in itertools.pairwise(order)
        ]
        assert entry["within_noise"][row] == pytest.approx(sum(close) / 3)


def test_only_explainers_with_numbers_of_their_own_carry_an_entry() -> None:
    comparison = af.compare_explanations(
        wrapped("misleading"), sentiment_task(8, seed=2).inputs(), ["attention", "shapley"], removal="mask", mask_token_id=0
    )
    assert "explainer" not in comparison.reports["attention"].model
    assert comparison.reports["shapley"].model["explainer"]["name"] == "shapley"
