"""The datasets as Jain & Wallace used them, read at run time from ``--data`` (never copied into the project).

Every sentence is wrapped in <SOS> ... <EOS> as in their preprocessing; those two positions are marked in
``special_tokens_mask`` so that no statistic uses them (J&W compute τ on ``[1:L-1]``).
"""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

PAD, UNK, SOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<sos>", "<eos>")
AGNEWS_CLASSES = {"1": 0, "3": 1}  # World (0) vs Business (1)
AGNEWS_SPLIT = (0.7, 0.1)  # train, dev fractions of each class; the rest is test


@dataclass
class Split:
    """Raw sentences (lists of words) and labels."""

    words: list[list[str]]
    labels: list[int]

    def head(self, limit: int | None) -> Split:
        return self if limit is None else Split(self.words[:limit], self.labels[:limit])

    def sample(self, limit: int | None, seed: int) -> Split:
        """``limit`` sentences drawn at random with ``seed`` (SST's file is sorted by label: a head is one class)."""
        if limit is None or limit >= len(self.labels):
            return self
        index = random.Random(seed).sample(range(len(self.labels)), limit)
        return Split([self.words[i] for i in index], [self.labels[i] for i in index])


@dataclass
class Dataset:
    name: str
    train: Split
    dev: Split
    test: Split

    def limited(self, limit: int | None) -> Dataset:
        return Dataset(self.name, self.train.head(limit), self.dev.head(limit), self.test.head(limit))


def load_sst(root: Path) -> Dataset:
    """J&W's binary SST (``sst/sst_dataset.csv``: text,label,exp_split), already lower-cased and tokenised."""
    path = _existing(root / "sst" / "sst_dataset.csv")
    splits: dict[str, Split] = {name: Split([], []) for name in ("train", "dev", "test")}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            splits[row["exp_split"]].words.append(row["text"].split())
            splits[row["exp_split"]].labels.append(int(row["label"]))
    return Dataset("SST", splits["train"], splits["dev"], splits["test"])


def agnews_words(title: str, description: str) -> list[str]:
    """Lower-cased words, numbers and punctuation; digits become ``qqq`` as in J&W's cleaning."""
    text = f"{title} {description}".lower().replace("\\", " ")
    return ["qqq" if token.isdigit() else token for token in re.findall(r"[a-z]+|\d+|[^\w\s]", text)]


def load_agnews(root: Path, seed: int) -> Dataset:
    """AG News World vs Business from ``agnews/test.csv``, split per class (stratified) 70/10/20 with ``seed``."""
    path = _existing(root / "agnews" / "test.csv")
    by_class: dict[int, list[list[str]]] = {0: [], 1: []}
    with path.open(newline="", encoding="utf-8") as handle:
        for cls, title, description in csv.reader(handle):
            if cls in AGNEWS_CLASSES:
                by_class[AGNEWS_CLASSES[cls]].append(agnews_words(title, description))
    parts: dict[str, Split] = {name: Split([], []) for name in ("train", "dev", "test")}
    rng = random.Random(seed)
    for label, sentences in by_class.items():
        order = list(range(len(sentences)))
        rng.shuffle(order)
        cut_train = int(AGNEWS_SPLIT[0] * len(order))
        cut_dev = cut_train + int(AGNEWS_SPLIT[1] * len(order))
        for name, index in (("train", order[:cut_train]), ("dev", order[cut_train:cut_dev]), ("test", order[cut_dev:])):
            parts[name].words.extend(sentences[i] for i in index)
            parts[name].labels.extend([label] * len(index))
    for name, split in parts.items():  # interleave the classes so that --limit keeps both
        order = list(range(len(split.labels)))
        random.Random(f"{seed}-{name}").shuffle(order)
        parts[name] = Split([split.words[i] for i in order], [split.labels[i] for i in order])
    return Dataset("AG News", parts["train"], parts["dev"], parts["test"])


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise SystemExit(f"data file {path} not found: pass --data pointing at the folder that holds sst/ and agnews/")
    return path


class Vocabulary:
    """Words seen in the training split; others map to <unk>."""

    def __init__(self, sentences: list[list[str]]) -> None:
        counts = Counter(word for sentence in sentences for word in sentence)
        self.words = list(SPECIALS) + sorted(counts, key=lambda w: (-counts[w], w))
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentence: list[str]) -> list[int]:
        return [SOS, *(self.index.get(word, UNK) for word in sentence), EOS]


def batch_inputs(sequences: list[list[int]]) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``special_tokens_mask`` (<sos>, <eos>)."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), PAD, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
    mask = (ids != PAD).long()
    special = ((ids == SOS) | (ids == EOS)).long()
    return {"input_ids": ids, "attention_mask": mask, "special_tokens_mask": special}
