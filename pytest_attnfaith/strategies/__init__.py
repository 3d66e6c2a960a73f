"""Hypothesis strategies for attention faithfulness: perturbed inputs, attention, property helpers.

    from hypothesis import given, settings
    from pytest_attnfaith.strategies import perturbed
    settings.load_profile("attnfaith")

    @given(x=perturbed(base_inputs, tokenizer=tok, max_edits=3))
    def test_attention_stays_faithful(x):
        assert_attention_faithful(model, x)

Importing this package registers the ``attnfaith`` settings profiles and imports neither torch nor
transformers; the strategies themselves are loaded on first use. Guide: ``docs/hypothesis.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_attnfaith.strategies.profiles import PROFILE, PROFILE_NO_SHRINK, register_profiles

if TYPE_CHECKING:
    from pytest_attnfaith.strategies.attention import (
        AttentionCandidate,
        attention_distributions,
        position_permutations,
        tvd_bounded_attention,
    )
    from pytest_attnfaith.strategies.images import ImageEdit, PerturbedImages, perturbed_images
    from pytest_attnfaith.strategies.properties import assert_erasure_property, target_disagreement
    from pytest_attnfaith.strategies.tokens import EDITS, PerturbedInputs, TokenEdit, perturbed

_LAZY = {
    "perturbed": "tokens",
    "perturbed_images": "images",
    "PerturbedImages": "images",
    "ImageEdit": "images",
    "PerturbedInputs": "tokens",
    "TokenEdit": "tokens",
    "EDITS": "tokens",
    "attention_distributions": "attention",
    "position_permutations": "attention",
    "tvd_bounded_attention": "attention",
    "AttentionCandidate": "attention",
    "assert_erasure_property": "properties",
    "target_disagreement": "properties",
}

__all__ = [
    "EDITS",
    "PROFILE",
    "PROFILE_NO_SHRINK",
    "AttentionCandidate",
    "ImageEdit",
    "PerturbedImages",
    "PerturbedInputs",
    "TokenEdit",
    "assert_erasure_property",
    "attention_distributions",
    "perturbed",
    "perturbed_images",
    "position_permutations",
    "register_profiles",
    "target_disagreement",
    "tvd_bounded_attention",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


register_profiles()
