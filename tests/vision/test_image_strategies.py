"""Hypothesis strategies of perturbed images: patch occlusions and noise, replayable, and audited as they come."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import pytest_attnfaith as af
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.strategies import perturbed_images

BASE = {"pixel_values": torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))}


@settings(max_examples=30, deadline=None)
@given(x=perturbed_images(BASE, patch_size=2, max_edits=3, fill="mean"))
def test_each_edit_changes_only_what_it_says(x):
    changed = (x["pixel_values"] != BASE["pixel_values"]).flatten(1).any(dim=1)
    edited_rows = {edit.row for edit in x.edits if edit.kind == "occlude" or edit.sigma > 0}
    assert set(changed.nonzero().flatten().tolist()) <= edited_rows
    assert x["pixel_values"].shape == BASE["pixel_values"].shape
    for edit in x.edits:
        assert edit.kind in ("occlude", "noise") and 0 <= edit.patch < 16 and 0.0 <= edit.sigma <= 0.1


@settings(max_examples=20, deadline=None)
@given(x=perturbed_images(BASE, patch_size=2, max_edits=1, edits=["occlude"], fill=0.0))
def test_an_occlusion_blanks_one_patch(x):
    for edit in x.edits:
        r, c = divmod(edit.patch, 4)
        assert torch.all(x["pixel_values"][edit.row, :, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] == 0)
        assert f"patch ({r}, {c}) occluded" in repr(x)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=perturbed_images(BASE, patch_size=2, max_edits=2))
def test_attention_that_is_the_only_path_stays_used_under_perturbation(attentive_digits, x):
    net = af.wrap(attentive_digits.model, attention="attention", embeddings="embeddings")
    inputs = {"pixel_values": torch.cat([x["pixel_values"], attentive_digits.held_out[:21]])}
    report = af.audit(net, inputs, checks=["permutation", "uniform"], permutations=20)
    assert report.checks["permutation"].per_instance.shape == (24,)
    assert report.verdicts["used"] == "yes"


def test_bad_arguments_are_refused():
    with pytest.raises(AttnFaithError, match="patch_size=3 is not valid"):
        perturbed_images(BASE, patch_size=3)
    with pytest.raises(AttnFaithError, match="pixel_values"):
        perturbed_images({"input_ids": torch.zeros(1, 3, dtype=torch.long)}, patch_size=2)
    with pytest.raises(AttnFaithError, match="edits="):
        perturbed_images(BASE, patch_size=2, edits=["blur"])
