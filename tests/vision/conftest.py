"""Vision fixtures: tiny random Hugging Face vision transformers over 8×8 one-channel images, and the digits
classifiers of ``pytest_attnfaith.vision_zoo`` trained once per session (seconds)."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from pytest_attnfaith.vision_zoo import TrainedDigits, train_digits

TINY = {
    "image_size": 8,
    "patch_size": 2,
    "num_channels": 1,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "num_labels": 10,
}
ARCHITECTURES = {
    "vit": (tf.ViTConfig, tf.ViTForImageClassification),
    "deit": (tf.DeiTConfig, tf.DeiTForImageClassification),
    "deit-teacher": (tf.DeiTConfig, tf.DeiTForImageClassificationWithTeacher),
    "beit": (tf.BeitConfig, tf.BeitForImageClassification),
}
EXPLAINERS = ("attention", "rollout", "gradient_x_input", "integrated_gradients", "leave_one_out", "shapley")
"""The explainers this suite checks on patches (the attention-derived ones need a model's value vectors)."""
SPECIAL = {"vit": 1, "deit": 2, "deit-teacher": 2, "beit": 1}  # class token; DeiT's distillation token


def build_vision(name: str, seed: int = 0) -> tf.PreTrainedModel:
    torch.manual_seed(seed)
    config_class, model_class = ARCHITECTURES[name]
    return model_class(config_class(**TINY)).eval()


def images(count: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="session")
def attentive_digits() -> TrainedDigits:
    """The digits classifier whose class-token attention pooling is its only path."""
    return train_digits("cls")


@pytest.fixture(scope="session")
def mean_digits() -> TrainedDigits:
    """Its twin: the same attention computed, the patches mean-pooled past it."""
    return train_digits("mean")
