"""Jain & Wallace's (2019) binary classifiers for the benchmarks, and Mohankumar et al.'s (2020) conicity.

``AttentionClassifier(encoder="lstm")`` is the paper's BiLSTM + additive (tanh) attention; ``encoder="average"``
is its "no context" average-embedding encoder (h_t = tanh(W e_t)), with the same attention and head. Both read
token ids with ``attention_mask`` and return one binary logit (B,). The attention distribution is the output of
the ``attn`` submodule and the embeddings the output of ``embed`` (``af.wrap(net, attention="attn",
embeddings="embed")``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pytest_attnfaith.zoo import MaskedSoftmax, conicity

ENCODERS = ("lstm", "average")

__all__ = ["ENCODERS", "AttentionClassifier", "conicity"]


class AttentionClassifier(nn.Module):
    """Embeddings → encoder → additive attention v·tanh(W h_t) → linear head on Σ α_t h_t (one logit)."""

    def __init__(self, vocab: int, encoder: str = "lstm", embedding: int = 300, hidden: int = 128) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder={encoder!r}; expected one of {ENCODERS}")
        self.kind = encoder
        self.embed = nn.Embedding(vocab, embedding, padding_idx=0)
        self.encoder: nn.Module
        if encoder == "lstm":
            self.encoder = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
            size = 2 * hidden
        else:
            self.encoder = nn.Linear(embedding, hidden)
            size = hidden
        self.project = nn.Linear(size, size // 2)
        self.score = nn.Linear(size // 2, 1, bias=False)
        self.attn = MaskedSoftmax()
        self.head = nn.Linear(size, 1)

    def encode(self, input_ids: Tensor, mask: Tensor) -> Tensor:
        """Hidden states h_t (B, T, size); zero at padding for the BiLSTM (packed sequences).

        Without gradients, the BiLSTM runs once per distinct (input_ids, mask) row of the batch: an exact
        shortcut for audits, whose attention counterfactuals repeat each instance many times.
        """
        embedded = self.embed(input_ids)
        if self.kind == "average":
            return torch.tanh(self.encoder(embedded))
        if not torch.is_grad_enabled():
            _, first, inverse = _distinct_rows(torch.cat([input_ids, mask.to(input_ids.dtype)], dim=1))
            return self._recur(embedded[first], mask[first])[inverse]
        return self._recur(embedded, mask)

    def _recur(self, embedded: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.encoder(packed)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=embedded.shape[1])
        return hidden

    def classify(self, hidden: Tensor, mask: Tensor) -> Tensor:
        alpha = self.attn(self.score(torch.tanh(self.project(hidden))).squeeze(-1), mask)
        return self.head((alpha.unsqueeze(-1) * hidden).sum(dim=1)).squeeze(-1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        return self.classify(self.encode(input_ids, mask), mask)


def _distinct_rows(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The distinct rows, the index of one occurrence of each, and each row's index among the distinct ones."""
    distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.empty(len(distinct), dtype=torch.long, device=rows.device).scatter_(
        0, inverse, torch.arange(len(rows), device=rows.device)
    )
    return distinct, first, inverse
