"""The reports of an image audit show the image with each map over its patch grid, readable at 14 × 14 patches."""

from __future__ import annotations

import json
import re

import torch
import transformers as tf

import pytest_attnfaith as af
from pytest_attnfaith.report.html import render_html
from pytest_attnfaith.report.schema import session_document
from tests.vision.conftest import TINY, build_vision, images


def test_the_notebook_view_of_an_image_audit_shows_the_image_and_every_map(attentive_digits):
    net = af.wrap(attentive_digits.model, attention="attention", embeddings="embeddings")
    report = af.audit(net, {"pixel_values": attentive_digits.held_out[:16]}, permutations=10, adversarial_steps=20, worst=1)
    record = report.instances["image"]
    assert record["grid"] == [4, 4] and record["shown"]
    assert len(record["pixels"][0]) == 8 and len(record["pixels"][0][0]) == 8
    html = report._repr_html_()
    assert "Maps over the image (4 × 4 patches)" in html
    for title in ("image", "attention", "gradient × input", "integrated gradients", "leave-one-out"):
        assert f'aria-label="{title}"' in html
    json.dumps(report.to_dict())  # the record is plain JSON


def test_196_patches_from_a_hugging_face_vit_fill_a_readable_grid():
    torch.manual_seed(0)
    vit = tf.ViTForImageClassification(tf.ViTConfig(**{**TINY, "image_size": 28}))
    pixels = torch.randn(2, 1, 28, 28)
    report = af.audit(vit, {"pixel_values": pixels}, permutations=5, adversarial_steps=5, checks=["permutation"])
    record = report.instances["image"]
    assert record["grid"] == [14, 14]
    assert set(record["maps"]) == {"attention", "rollout", "gradient_x_input", "integrated_gradients", "leave_one_out"}
    assert all(len(values) == 196 for values in record["maps"]["rollout"])
    html = render_html(session_document({"test_vit": [report.to_dict()]}, outcomes={"test_vit": "passed"}))
    panel = re.search(r'aria-label="rollout">(.*?)</svg>', html)
    assert panel is not None and panel.group(1).count("<title>patch") == 196


def test_a_redacted_image_audit_shows_no_pixels():
    report = af.audit(build_vision("vit"), {"pixel_values": images(2)}, checks=["uniform"], redact=True)
    assert report.instances["image"]["pixels"] == []
    assert 'aria-label="image"' not in report._repr_html_()


def test_the_explanations_section_of_an_image_audit_shows_the_image(attentive_digits):
    net = af.wrap(attentive_digits.model, attention="attention", embeddings="embeddings")
    comparison = af.compare_explanations(net, {"pixel_values": attentive_digits.held_out[:6]}, ["attention", "leave_one_out"])
    html = render_html(session_document({"test_maps": [report.to_dict() for report in comparison.reports.values()]}))
    assert html.count('aria-label="image"') == 2  # its first two instances
    assert html.count('aria-label="leave-one-out"') == 2
