"""Adapters: one ``AttentionModel`` interface over any model.

``as_attention_model`` accepts an ``AttentionModel`` (e.g. from ``wrap()``) or a Hugging Face
``PreTrainedModel`` (recognised without importing transformers unless one is passed).
"""

from __future__ import annotations

from typing import Any

from pytest_attnfaith.adapters.base import AttentionModel
from pytest_attnfaith.adapters.inputs import Batch, prepare_batch
from pytest_attnfaith.adapters.passes import Edit, Forward
from pytest_attnfaith.adapters.recognise import is_huggingface_model
from pytest_attnfaith.adapters.torch_module import WrappedModel, wrap
from pytest_attnfaith.errors import AttnFaithError

__all__ = [
    "AttentionModel",
    "Batch",
    "Edit",
    "Forward",
    "WrappedModel",
    "as_attention_model",
    "is_huggingface_model",
    "prepare_batch",
    "wrap",
]


def as_attention_model(model: Any) -> AttentionModel:
    """The adapter for ``model``; a clear error for anything that is neither wrapped nor Hugging Face."""
    if isinstance(model, AttentionModel):
        return model
    if is_huggingface_model(model):
        from pytest_attnfaith.adapters.huggingface import HuggingFaceModel

        return HuggingFaceModel(model)
    import torch

    if isinstance(model, torch.nn.Module):
        raise AttnFaithError(
            f"{type(model).__name__} is a plain torch.nn.Module: say where its attention and embeddings are with "
            "af.wrap(net, attention='path.to.attention', embeddings='path.to.embeddings')"
        )
    raise AttnFaithError(f"model is a {type(model).__name__}; expected af.wrap(net, ...) or a transformers PreTrainedModel")
