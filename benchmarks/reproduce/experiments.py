"""Train Jain & Wallace's models on one dataset and audit each on its test split through the public API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import pytest_attnfaith as af
from benchmarks.models import AttentionClassifier
from benchmarks.reproduce.data import Dataset, Vocabulary, batch_inputs
from benchmarks.reproduce.train import Trained, predict, roc_auc, train

DIVERSITY = 0.3  # Mohankumar et al. (2020), λ for the conicity penalty


@dataclass(frozen=True)
class Variant:
    """One model of the reproduction: encoder, conicity weight, embedding initialisation."""

    key: str
    label: str
    encoder: str
    diversity: float = 0.0
    minilm_embeddings: bool = False


VARIANTS = (
    Variant("bilstm", "BiLSTM + tanh attention (J&W)", "lstm"),
    Variant("average", "Average embedding + tanh attention (J&W, no context)", "average"),
    Variant("diversity", f"BiLSTM + conicity penalty λ={DIVERSITY} (Mohankumar et al.)", "lstm", DIVERSITY),
)
GAP_VARIANT = Variant("bilstm-minilm", "BiLSTM, embeddings initialised from MiniLM's WordPiece table", "lstm", 0.0, True)


@dataclass
class Settings:
    seed: int
    epochs: int
    audit_limit: int | None
    permutations: int
    batch_size: int
    minilm_dir: str | None
    head_permutations: int = 20


def build_model(variant: Variant, vocab: Vocabulary, settings: Settings) -> AttentionClassifier:
    torch.manual_seed(settings.seed)
    if not variant.minilm_embeddings:
        return AttentionClassifier(len(vocab), variant.encoder)
    from benchmarks.reproduce.transformer import minilm_word_vectors

    assert settings.minilm_dir is not None
    vectors = minilm_word_vectors(vocab.words, settings.minilm_dir)
    model = AttentionClassifier(len(vocab), variant.encoder, embedding=vectors.shape[1])
    with torch.no_grad():
        model.embed.weight.copy_(vectors)
    return model


def audit_model(model: torch.nn.Module, sequences: list[list[int]], settings: Settings, **options: Any) -> af.Report:
    """Every check (or ``options['checks']``) through ``af.audit`` on one batch of the test split."""
    inputs = batch_inputs(sequences)
    wrapped = af.wrap(model, attention="attn", embeddings="embed")
    options.setdefault("permutations", settings.permutations)
    options.setdefault("scale", "probability")  # the reproduction keeps Jain & Wallace's definitions (docs/reproducing.md)
    return af.audit(wrapped, inputs, seed=settings.seed, batch_size=settings.batch_size, progress=True, **options)


def tau_tracker(sequences: list[list[int]], settings: Settings) -> Any:
    """After each epoch, on a few dev sentences: mean τ (gradient, LOO) and the permutation check (median TVD,
    fraction flagged), to see how agreement and use of the attention move with training."""

    def track(model: torch.nn.Module) -> dict[str, float]:
        wrapped = af.wrap(model, attention="attn", embeddings="embed")
        checks = ("gradient", "loo", "permutation")
        options = {"seed": settings.seed, "batch_size": settings.batch_size, "permutations": settings.permutations}
        report = af.audit(wrapped, batch_inputs(sequences), checks=checks, scale="probability", **options)
        permutation = report.checks["permutation"]
        return {
            **{f"dev_tau_{name}": report.checks[name].statistic for name in ("gradient", "loo")},
            "dev_permutation_median": permutation.details["median"],
            "dev_permutation_flagged": permutation.statistic,
        }

    return track


def train_variant(variant: Variant, dataset: Dataset, settings: Settings, track: int = 0) -> tuple[Trained, Vocabulary]:
    """Train one variant on the training split (best dev epoch kept); ``track`` > 0: record the dev τ of that many
    dev sentences after every epoch."""
    vocab = Vocabulary(dataset.train.words)
    encode = [vocab.encode(words) for words in dataset.train.words]
    dev = [vocab.encode(words) for words in dataset.dev.words]
    print(f"[{dataset.name}] training {variant.label} ({settings.epochs} epochs, vocabulary {len(vocab)})", flush=True)
    trained = train(
        build_model(variant, vocab, settings),
        (encode, dataset.train.labels),
        (dev, dataset.dev.labels),
        settings.epochs,
        settings.seed,
        variant.diversity,
        tau_tracker(dev[:track], settings) if track else None,
    )
    return trained, vocab


def run_variant(variant: Variant, dataset: Dataset, settings: Settings, checks: Any = None, track: int = 0) -> dict[str, Any]:
    """Train one variant, measure it on the test split and audit it; a JSON-ready record with the Report.

    ``track`` > 0: record the dev τ of that many dev sentences after every epoch."""
    trained, vocab = train_variant(variant, dataset, settings, track)
    test = [vocab.encode(words) for words in dataset.test.words]
    test_labels = np.asarray(dataset.test.labels)
    scores = predict(trained.model, test)
    audited = test
    if settings.audit_limit and settings.audit_limit < len(test):  # a random sample: SST's file is sorted by label
        picked = np.random.default_rng(settings.seed).choice(len(test), settings.audit_limit, replace=False)
        audited = [test[i] for i in sorted(picked)]
    print(f"[{dataset.name}] auditing {variant.key} on {len(audited)} test instances", flush=True)
    started = time.perf_counter()
    report = audit_model(trained.model, audited, settings, checks=checks)
    return {
        "dataset": dataset.name,
        "model": variant.key,
        "label": variant.label,
        "test_accuracy": float(((scores > 0.5) == test_labels).mean()),
        "test_auc": roc_auc(test_labels, scores),
        **_training_record(trained),
        "audited": len(audited),
        "audit_seconds": time.perf_counter() - started,
        "report": report.to_dict(),
    }


def _training_record(trained: Trained) -> dict[str, Any]:
    return {
        "best_epoch": trained.best_epoch,
        "dev_auc": trained.dev_auc,
        "history": trained.history,
        "train_seconds": trained.seconds,
    }
