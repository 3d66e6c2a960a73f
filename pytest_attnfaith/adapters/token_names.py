"""The words a report shows for token ids: ``wrap(net, ..., vocabulary=...)``.

A vocabulary is a sequence indexed by id (``["<pad>", "the", ...]``), a mapping id → text, or a
tokenizer (anything with ``convert_ids_to_tokens``, e.g. a Hugging Face tokenizer). An id the
vocabulary does not cover (beyond the sequence, absent from the mapping, ``None`` from the
tokenizer) is shown as its number, so that a partial vocabulary (say, only the label words) still
helps; the statistics never depend on it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_attnfaith.errors import AttnFaithError

EXPECTED = "a sequence of strings indexed by token id, a mapping id -> str, or a tokenizer with convert_ids_to_tokens"


class TokenNames:
    """Token text by id, from a validated sequence, mapping or tokenizer."""

    def __init__(self, vocabulary: Any) -> None:
        self.tokenizer: Any = None
        self.table: Mapping[int, str] | Sequence[str] = ()
        if callable(getattr(vocabulary, "convert_ids_to_tokens", None)):
            self.tokenizer = vocabulary
        elif isinstance(vocabulary, Mapping):
            self.table = dict(_entries(vocabulary.items()))
        elif _indexable(vocabulary):
            self.table = [text for _, text in _entries(enumerate(vocabulary))]
        else:
            raise AttnFaithError(f"vocabulary is a {type(vocabulary).__name__}; expected {EXPECTED}")

    def decode(self, ids: list[int]) -> list[str]:
        """The text of each id (its number where the vocabulary has none)."""
        if self.tokenizer is not None:
            return [
                str(i) if token is None else str(token)
                for i, token in zip(ids, self.tokenizer.convert_ids_to_tokens(ids), strict=True)
            ]
        if isinstance(self.table, Mapping):
            return [self.table.get(i, str(i)) for i in ids]
        size = len(self.table)
        return [self.table[i] if 0 <= i < size else str(i) for i in ids]


def _indexable(vocabulary: Any) -> bool:
    """A sequence of token texts: a list or tuple, a numpy array of strings, ... (not a string itself)."""
    if isinstance(vocabulary, (str, bytes)):
        return False
    return isinstance(vocabulary, Sequence) or (hasattr(vocabulary, "__len__") and hasattr(vocabulary, "__getitem__"))


def _entries(items: Any) -> list[tuple[int, str]]:
    """``(id, text)`` pairs, checked: integer ids, string texts."""
    entries = []
    for key, text in items:
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            hint = " (a word -> id mapping? give {id: word for word, id in mapping.items()})" if isinstance(key, str) else ""
            raise AttnFaithError(f"vocabulary key {key!r} is a {type(key).__name__}; expected integer token ids as keys{hint}")
        if not isinstance(text, str):
            raise AttnFaithError(f"vocabulary entry {key} is {text!r}, a {type(text).__name__}; expected str token text")
        entries.append((int(key), text))
    return entries
