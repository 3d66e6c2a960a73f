"""Tiny models whose attention faithfulness is known by construction, and a generated sentiment task.

Used by the project's tests, the demo and the benchmarks (and handy for users who want to see a
failing and a passing audit in seconds). Vocabulary: 0 is padding; ``POSITIVE`` and ``NEGATIVE``
tokens carry the label; ``DISTRACTORS`` are neutral tokens some models attend to; the rest are
neutral. ``WORDS`` gives each id a word, for reports (``af.wrap(..., vocabulary=WORDS)``).

* ``faithful``: the evidence token reaches the output only through attention, and attention
  peaks on it: z = c · Σ_t α_t s_t with s_t the token's sentiment (±1, 0 for neutral tokens).
* ``unused``: the same attention is computed, but the output mean-pools the sentiments.
* ``constant_values``: the output attends over identical values (Σ α_t v = v), beside mean pooling.
* ``vanishing``: the attention path is scaled by 1e-4 beside mean pooling.
* ``misleading``: attention is used (it weighs position-dependent values) but peaks on distractor
  tokens; the label reaches the output only through a direct (summed) path.

``AttentionOnlyClassifier`` (embedding → tanh → additive attention → one binary logit; the attention is its only
path), trained to saturation by ``train_saturated``, is the well-trained model whose probabilities hide how much
its attention matters (``docs/thresholds.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

VOCAB = 40
POSITIVE = (1, 2, 3, 4)
NEGATIVE = (5, 6, 7, 8)
DISTRACTORS = (9, 10, 11)
SCALE = 3.0
WORDS: tuple[str, ...] = (
    "<pad>",
    *("great", "wonderful", "excellent", "superb"),  # POSITIVE
    *("awful", "terrible", "boring", "dreadful"),  # NEGATIVE
    *("really", "quite", "actually"),  # DISTRACTORS
    *("the", "movie", "film", "plot", "actors", "story", "was", "is", "and", "a", "with", "this", "it", "of"),
    *("scenes", "script", "cast", "director", "ending", "music", "camera", "dialogue", "score", "screen", "hour"),
    *("sequel", "studio", "premiere"),
)


class MaskedSoftmax(nn.Module):
    """Additive-attention normaliser: its output (B, T) is the attention distribution."""

    def forward(self, scores: Tensor, mask: Tensor) -> Tensor:
        return torch.softmax(scores.masked_fill(mask == 0, float("-inf")), dim=-1)


def _fixed_embedding() -> nn.Embedding:
    """dim 0: is evidence; dim 1: sentiment; dim 2: small neutral noise; dim 3: is distractor."""
    generator = torch.Generator().manual_seed(1234)
    table = torch.zeros(VOCAB, 4)
    table[:, 2] = 0.5 * torch.randn(VOCAB, generator=generator)
    table[list(POSITIVE), 0] = 1.0
    table[list(NEGATIVE), 0] = 1.0
    table[list(POSITIVE), 1] = 1.0
    table[list(NEGATIVE), 1] = -1.0
    table[list(DISTRACTORS), 3] = 1.0
    table[0] = 0.0
    embedding = nn.Embedding(VOCAB, 4, padding_idx=0)
    embedding.weight.data.copy_(table)
    return embedding


class ZooModel(nn.Module):
    """Attention over token embeddings with a readout chosen by ``kind`` (see the module doc)."""

    KINDS = ("faithful", "unused", "constant_values", "vanishing", "misleading")

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind={kind!r}; expected one of {self.KINDS}")
        self.kind = kind
        self.embed = _fixed_embedding()
        self.score = nn.Linear(4, 1)
        focus = 3 if kind == "misleading" else 0
        with torch.no_grad():
            self.score.weight.zero_()
            self.score.weight[0, focus] = 4.0
            self.score.weight[0, 2] = 1.0
            self.score.bias.zero_()
        self.attn = MaskedSoftmax()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        e = self.embed(input_ids)
        alpha = self.attn(self.score(e).squeeze(-1), mask)
        sentiment = e[..., 1]
        real = mask.to(e.dtype)
        mean_pooled = (sentiment * real).sum(1) / real.sum(1).clamp(min=1.0)
        attended = (alpha * sentiment).sum(1)
        if self.kind == "faithful":
            z = SCALE * attended
        elif self.kind == "unused":
            z = SCALE * mean_pooled * 4.0
        elif self.kind == "constant_values":
            constant = torch.ones_like(sentiment)
            z = SCALE * (alpha * constant).sum(1) - SCALE + SCALE * 4.0 * mean_pooled
        elif self.kind == "vanishing":
            z = SCALE * 4.0 * mean_pooled + 1e-4 * attended
        else:  # misleading: attention on distractors over position-only values; label through a direct path
            direct = (sentiment * real).sum(1)
            position = torch.arange(input_ids.shape[1], device=e.device, dtype=e.dtype) / input_ids.shape[1]
            z = SCALE * direct + 4.0 * (alpha * position).sum(1) - 2.0
        return torch.stack([torch.zeros_like(z), z], dim=1)


@dataclass
class SentimentTask:
    """A generated sentiment task: one evidence token per sentence among neutral tokens."""

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor

    def inputs(self, count: int | None = None) -> dict[str, Tensor]:
        end = count if count is not None else len(self.labels)
        return {"input_ids": self.input_ids[:end], "attention_mask": self.attention_mask[:end]}


def sentiment_task(count: int, length: int = 12, seed: int = 0, min_length: int = 6, distractors: bool = True) -> SentimentTask:
    """``count`` right-padded sentences of ``min_length``..``length`` tokens with one evidence token."""
    generator = torch.Generator().manual_seed(seed)
    neutral_low = max(DISTRACTORS) + 1
    ids = torch.randint(neutral_low, VOCAB, (count, length), generator=generator)
    lengths = torch.randint(min_length, length + 1, (count,), generator=generator)
    labels = torch.randint(0, 2, (count,), generator=generator)
    positive = torch.tensor(POSITIVE)[torch.randint(0, len(POSITIVE), (count,), generator=generator)]
    negative = torch.tensor(NEGATIVE)[torch.randint(0, len(NEGATIVE), (count,), generator=generator)]
    rows = torch.arange(count)
    where = (torch.rand(count, generator=generator) * lengths).long()
    ids[rows, where] = torch.where(labels == 1, positive, negative)
    if distractors:
        spot = (torch.rand(count, generator=generator) * lengths).long()
        spot = torch.where(spot == where, (spot + 1) % lengths, spot)
        ids[rows, spot] = torch.tensor(DISTRACTORS)[torch.randint(0, len(DISTRACTORS), (count,), generator=generator)]
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).long()
    ids = ids * mask
    return SentimentTask(ids, mask, labels)


class BiLSTMClassifier(nn.Module):
    """Jain & Wallace's classifier: embeddings → BiLSTM → additive (tanh) attention → linear head on Σ α_t h_t.

    ``readout="mean"`` makes its decorative twin: the attention is computed, but the head reads the mean of the
    hidden states. Returns one binary logit per instance (B,).
    """

    def __init__(
        self, vocab: int = VOCAB, embedding: int = 32, hidden: int = 32, readout: str = "attention", seed: int = 0
    ) -> None:
        super().__init__()
        if readout not in ("attention", "mean"):
            raise ValueError(f"readout={readout!r}; expected 'attention' or 'mean'")
        self.readout = readout
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.embed = nn.Embedding(vocab, embedding, padding_idx=0)
            self.encoder = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
            self.project = nn.Linear(2 * hidden, hidden)
            self.score = nn.Linear(hidden, 1, bias=False)
            self.attn = MaskedSoftmax()
            self.head = nn.Linear(2 * hidden, 1)

    def hidden_states(self, input_ids: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(input_ids), lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.encoder(packed)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=input_ids.shape[1])
        return hidden

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        hidden = self.hidden_states(input_ids, mask)
        alpha = self.attn(self.score(torch.tanh(self.project(hidden))).squeeze(-1), mask)
        if self.readout == "attention":
            pooled = (alpha.unsqueeze(-1) * hidden).sum(dim=1)
        else:
            real = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)


def conicity(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mohankumar et al. (2020): mean cosine similarity of each real hidden state to their mean, per instance."""
    real = mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * real).sum(dim=1, keepdim=True) / real.sum(dim=1, keepdim=True).clamp(min=1.0)
    cosine = torch.nn.functional.cosine_similarity(hidden, mean.expand_as(hidden), dim=-1)
    return (cosine * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def train_classifier(
    model: BiLSTMClassifier, task: SentimentTask, epochs: int = 8, seed: int = 0, diversity: float = 0.0, lr: float = 1e-2
) -> BiLSTMClassifier:
    """Train with Adam on binary cross-entropy (+ ``diversity`` × conicity); returns the model in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(task.labels), generator=generator).split(32):
            ids, mask, labels = task.input_ids[index], task.attention_mask[index], task.labels[index].float()
            loss = nn.functional.binary_cross_entropy_with_logits(model(ids, mask), labels)
            if diversity:
                loss = loss + diversity * conicity(model.hidden_states(ids, mask), mask).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


class Tempered(nn.Module):
    """``net``'s logits multiplied by ``temperature``: the same decisions, more or less confident (the temperature
    sweep of ``docs/thresholds.md``)."""

    def __init__(self, net: nn.Module, temperature: float) -> None:
        super().__init__()
        self.net, self.temperature = net, temperature

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.net(input_ids, attention_mask) * self.temperature


class AttentionOnlyClassifier(nn.Module):
    """Embedding → tanh → additive attention → one binary logit on Σ α_t h_t: attention is the only path."""

    def __init__(self, vocab: int = VOCAB, width: int = 16, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.embed = nn.Embedding(vocab, width, padding_idx=0)
            self.score = nn.Linear(width, 1)
            self.attn = MaskedSoftmax()
            self.head = nn.Linear(width, 1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        hidden = torch.tanh(self.embed(input_ids))
        alpha = self.attn(self.score(hidden).squeeze(-1), mask)
        return self.head((alpha.unsqueeze(-1) * hidden).sum(dim=1)).squeeze(-1)


def train_saturated(steps: int = 300, seed: int = 1) -> AttentionOnlyClassifier:
    """An ``AttentionOnlyClassifier`` trained for ``steps`` full-batch Adam steps (lr 0.05) on 512 generated
    sentences: most outputs end with p̂ > 0.999. Returned in eval mode."""
    task = sentiment_task(512, seed=seed)
    net = AttentionOnlyClassifier()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(task.input_ids, task.attention_mask), task.labels.float()).backward()
        optimizer.step()
    return net.eval()
