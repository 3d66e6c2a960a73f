"""Vision transformers on scikit-learn's 8×8 digits, trained in seconds: the image counterpart of ``zoo``.

``PatchClassifier`` cuts an image (B, 1, 8, 8) into 2×2 patches (16 positions), adds a class token and
position embeddings (``embeddings``: (B, 17, D)), and lets the class token attend once over every position
(``attention``: a distribution (B, 17)). ``pool="cls"``: the output is a linear map of the attention-weighted
sum of the positions' values, so the attention is the model's only path from the patches to the output (it
must pass *used*). ``pool="mean"``: its twin computes the same attention and discards it, reading the mean of
the patches' values instead (the attention is decorative: *used* must fail). Audit either with
``af.wrap(net, attention="attention", embeddings="embeddings")`` and ``{"pixel_values": images}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

POOLS = ("cls", "mean")


def load_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 digits (shipped with it, offline): images (N, 1, 8, 8) in [0, 1] and labels (N,)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(digits.target, dtype=torch.long)


class PatchEmbeddings(nn.Module):
    """2×2 patches → D, a class token in front, position embeddings added: (B, C, H, W) → (B, 1 + HW/4, D)."""

    def __init__(self, dim: int, patch: int = 2, channels: int = 1, patches: int = 16) -> None:
        super().__init__()
        self.patch = patch
        self.project = nn.Linear(channels * patch * patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, patches + 1, dim) * 0.1)

    def forward(self, pixel_values: Tensor) -> Tensor:
        p = self.patch
        patches = pixel_values.unfold(2, p, p).unfold(3, p, p)  # (B, C, H/p, W/p, p, p)
        patches = patches.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)  # (B, HW/p², C·p²), row-major
        tokens = torch.cat([self.cls.expand(patches.shape[0], -1, -1), self.project(patches)], dim=1)
        return tokens + self.position


class ClassTokenAttention(nn.Module):
    """The class token's attention over every position: softmax(k_j · q / √D) with q from position 0, (B, T)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)

    def forward(self, embeddings: Tensor) -> Tensor:
        q = self.query(embeddings[:, 0])
        scores = torch.einsum("btd,bd->bt", self.key(embeddings), q) / embeddings.shape[-1] ** 0.5
        return scores.softmax(dim=-1)


class PatchClassifier(nn.Module):
    """Digits from 2×2 patches through one class-token attention (``pool="cls"``) or past it (``pool="mean"``)."""

    def __init__(self, pool: str = "cls", dim: int = 32, classes: int = 10) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool={pool!r}; expected one of {POOLS}")
        self.pool = pool
        self.embeddings = PatchEmbeddings(dim)
        self.attention = ClassTokenAttention(dim)
        self.value = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.out = nn.Linear(dim, classes)

    def forward(self, pixel_values: Tensor) -> Tensor:
        e = self.embeddings(pixel_values)
        alpha = self.attention(e)
        values = self.value(e)
        pooled = torch.einsum("bt,btd->bd", alpha, values) if self.pool == "cls" else values[:, 1:].mean(dim=1)
        return self.out(pooled)


@dataclass
class TrainedDigits:
    model: PatchClassifier
    held_out: Tensor  # images (n, 1, 8, 8) never trained on
    labels: Tensor
    accuracy: float  # on held_out


def train_digits(pool: str = "cls", seed: int = 0, epochs: int = 30, held_out: int = 297) -> TrainedDigits:
    """A ``PatchClassifier`` trained on the first 1,500 digits (Adam, minibatches of 100), seeded, in seconds."""
    torch.manual_seed(seed)
    images, labels = load_digits()
    train_x, train_y = images[:-held_out], labels[:-held_out]
    model = PatchClassifier(pool)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), 100):
            index = order[start : start + 100]
            loss = nn.functional.cross_entropy(model(train_x[index]), train_y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    test_x, test_y = images[-held_out:], labels[-held_out:]
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(dim=1) == test_y).float().mean())
    return TrainedDigits(model=model, held_out=test_x, labels=test_y, accuracy=accuracy)
