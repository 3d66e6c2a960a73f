"""Fixtures: the zoo of models whose verdict is known by construction, and a trained J&W BiLSTM."""

from __future__ import annotations

import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.zoo import BiLSTMClassifier, SentimentTask, ZooModel, sentiment_task, train_classifier

FAST = {"permutations": 30, "adversarial_steps": 60}


@pytest.fixture(scope="session")
def task() -> SentimentTask:
    return sentiment_task(48, seed=7)


@pytest.fixture(scope="session")
def inputs(task: SentimentTask) -> dict[str, torch.Tensor]:
    return task.inputs()


def wrapped(kind: str) -> af.AttentionModel:
    return af.wrap(ZooModel(kind), attention="attn", embeddings="embed")


@pytest.fixture(scope="session")
def trained_bilstms() -> dict[str, BiLSTMClassifier]:
    """Vanilla, conicity-trained (λ = 0.3) and mean-pooled twin, each trained in about two seconds."""
    train = sentiment_task(1000, seed=0, length=16)
    return {
        "vanilla": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4),
        "diverse": train_classifier(BiLSTMClassifier(seed=0), train, epochs=4, diversity=0.3),
        "twin": train_classifier(BiLSTMClassifier(readout="mean", seed=0), train, epochs=4),
    }


@pytest.fixture(scope="session")
def bilstm_inputs() -> dict[str, torch.Tensor]:
    return sentiment_task(80, seed=99, length=16).inputs()
