"""Training as Jain & Wallace did: Adam (lr 1e-3, weight decay 1e-5), batches of 32, binary cross-entropy,
the epoch with the best dev ROC-AUC kept; optionally Mohankumar et al.'s conicity penalty (``diversity`` = λ)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor, nn

from benchmarks.models import AttentionClassifier, conicity
from benchmarks.reproduce.data import batch_inputs

BATCH = 32
LR = 1e-3
WEIGHT_DECAY = 1e-5


@dataclass
class Trained:
    """A trained model and its training record."""

    model: AttentionClassifier
    best_epoch: int
    dev_auc: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with mid-ranks); NaN when one class is absent."""
    positive = labels == 1
    count_pos, count_neg = int(positive.sum()), int((~positive).sum())
    if not count_pos or not count_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - count_pos * (count_pos + 1) / 2) / (count_pos * count_neg))


@torch.no_grad()
def predict(model: nn.Module, sequences: list[list[int]], size: int = 256) -> np.ndarray:
    """P(class 1) per sequence, in batches of similar length."""
    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out = np.zeros(len(sequences))
    for start in range(0, len(order), size):
        index = order[start : start + size]
        inputs = batch_inputs([sequences[i] for i in index])
        out[index] = torch.sigmoid(model(inputs["input_ids"], inputs["attention_mask"])).numpy()
    return out


def _batches(sequences: list[list[int]], generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar length (sort within windows of 50 batches), in shuffled order."""
    order = torch.randperm(len(sequences), generator=generator).tolist()
    window = BATCH * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(sequences[i]))
        batches.extend(chunk[i : i + BATCH] for i in range(0, len(chunk), BATCH))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _step(model: AttentionClassifier, inputs: dict[str, Tensor], labels: Tensor, diversity: float) -> Tensor:
    mask = inputs["attention_mask"]
    hidden = model.encode(inputs["input_ids"], mask)
    loss = nn.functional.binary_cross_entropy_with_logits(model.classify(hidden, mask), labels)
    if diversity:
        real = mask * (1 - inputs["special_tokens_mask"])
        loss = loss + diversity * conicity(hidden, real).mean()
    return loss


def train(
    model: AttentionClassifier,
    train_set: tuple[list[list[int]], list[int]],
    dev_set: tuple[list[list[int]], list[int]],
    epochs: int,
    seed: int,
    diversity: float = 0.0,
    track: Callable[[nn.Module], dict[str, float]] | None = None,
) -> Trained:
    """Train for ``epochs`` and return the epoch with the best dev ROC-AUC (in eval mode).

    ``track(model)``, if given, is called after every epoch; its values join that epoch's history record.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sequences, labels = train_set
    targets = torch.tensor(labels, dtype=torch.float)
    dev_labels = np.asarray(dev_set[1])
    best: Trained | None = None
    history = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for index in _batches(sequences, generator):
            loss = _step(model, batch_inputs([sequences[i] for i in index]), targets[index], diversity)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scores = predict(model, dev_set[0])
        record = {
            "epoch": epoch,
            "dev_auc": roc_auc(dev_labels, scores),
            "dev_accuracy": float(((scores > 0.5) == dev_labels).mean()),
        }
        if track is not None:
            record.update(track(model.eval()))
        history.append(record)
        if best is None or record["dev_auc"] > best.dev_auc:
            best = Trained(copy.deepcopy(model).eval(), epoch, record["dev_auc"])
    assert best is not None, "epochs must be >= 1"
    best.history = history
    best.seconds = time.perf_counter() - started
    return best
