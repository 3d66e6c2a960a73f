"""What the token strategies know about tokens: the pool to draw from, special ids, and how to show them.

Built from a Hugging Face tokenizer, a plain vocabulary (a sequence of token ids, or a mapping
token -> id such as ``tokenizer.get_vocab()``), or both (the vocabulary then restricts the pool).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_attnfaith.errors import AttnFaithError


@dataclass(frozen=True)
class TokenPool:
    """Token ids to draw from (``pool``), ids never drawn or edited (``special``) and display names."""

    pool: tuple[int, ...]
    special: frozenset[int]
    names: Mapping[int, str]
    ids: Mapping[str, int]
    tokenizer: Any = None
    mask_token_id: int | None = None
    pad_token_id: int = 0
    size: int | None = None
    _whole: dict[int, bool] = field(default_factory=dict, repr=False)

    def pick(self, choice: int, avoid: int | None = None) -> int | None:
        """The first pool token at or after index ``choice`` (cyclically) that is not ``avoid`` and,
        with a tokenizer, re-tokenizes to itself (a whole token, e.g. not a lone "##ing" or "[unused3]")."""
        for step in range(len(self.pool)):
            token = self.pool[(choice + step) % len(self.pool)]
            if token != avoid and self.is_whole(token):
                return token
        return None

    def is_whole(self, token: int) -> bool:
        """True when decoding ``token`` alone and tokenizing the text gives back exactly ``token``."""
        if self.tokenizer is None:
            return True
        if token not in self._whole:
            text = self.tokenizer.decode([token])
            self._whole[token] = list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) == [token]
        return self._whole[token]

    def lookup(self, token: int | str, what: str) -> int:
        """The id of ``token`` (an id, or a token string of the vocabulary)."""
        if isinstance(token, bool) or not isinstance(token, (int, str)):
            raise AttnFaithError(f"{what} {token!r} is a {type(token).__name__}; expected a token id (int) or a token string")
        if isinstance(token, str):
            if token not in self.ids:
                raise AttnFaithError(
                    f"{what} {token!r} is not a single token of the vocabulary; expected one token "
                    "(a word that splits into several word pieces cannot be one edit)"
                )
            return self.ids[token]
        if token < 0 or (self.size is not None and token >= self.size):
            raise AttnFaithError(f"{what} {token} is not a token id; expected an id in [0, {self.size})")
        return token

    def lookup_all(self, tokens: Iterable[int | str], what: str) -> tuple[int, ...]:
        if isinstance(tokens, (str, bytes)):
            raise AttnFaithError(f"{what} is a string; expected a list of tokens")
        ids = tuple(dict.fromkeys(self.lookup(token, what) for token in tokens))
        special = [i for i in ids if i in self.special]
        if special:
            raise AttnFaithError(f"{what} contains special tokens {[self.name(i) for i in special]}; expected ordinary tokens")
        return ids

    def name(self, token: int) -> str:
        """How one token is shown (its vocabulary string, or its id)."""
        return self.names.get(token, str(token))

    def text(self, ids: Sequence[int]) -> str:
        """How a sequence is shown: the tokenizer's decoding, or the token names separated by spaces."""
        if self.tokenizer is not None:
            return str(self.tokenizer.decode(list(ids)))
        return " ".join(self.name(i) for i in ids)


def build_token_pool(tokenizer: Any, vocabulary: Any, mask_token_id: int | None, pad_token_id: int | None) -> TokenPool:
    """Combine a tokenizer and/or a plain vocabulary; at least one of them is required."""
    if tokenizer is None and vocabulary is None:
        raise AttnFaithError(
            "perturbed() needs tokenizer= (a Hugging Face tokenizer) or vocabulary= (token ids, or a token -> id mapping)"
        )
    ids: dict[str, int] = {}
    special: set[int] = set()
    size = None
    if tokenizer is not None:
        if not hasattr(tokenizer, "get_vocab") or not hasattr(tokenizer, "decode"):
            kind = type(tokenizer).__name__
            raise AttnFaithError(f"tokenizer is a {kind}; expected a Hugging Face tokenizer (get_vocab, decode)")
        ids = dict(tokenizer.get_vocab())
        special = {int(i) for i in tokenizer.all_special_ids}
        size = len(tokenizer)
        mask_token_id = tokenizer.mask_token_id if mask_token_id is None else mask_token_id
        pad_token_id = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
    candidates = _pool(vocabulary, ids)
    pad = 0 if pad_token_id is None else int(pad_token_id)
    special |= {pad} | ({int(mask_token_id)} if mask_token_id is not None else set())
    pool = tuple(i for i in candidates if i not in special)
    if not pool:
        raise AttnFaithError("the vocabulary has no ordinary token to draw from (only special or padding ids)")
    return TokenPool(
        pool=pool,
        special=frozenset(special),
        names={i: token for token, i in ids.items()},
        ids=ids,
        tokenizer=tokenizer,
        mask_token_id=mask_token_id,
        pad_token_id=pad,
        size=size,
    )


def _pool(vocabulary: Any, ids: dict[str, int]) -> list[int]:
    """The ids of ``vocabulary`` (adding its token strings to ``ids``), or every id of the tokenizer."""
    if vocabulary is None:
        return sorted(set(ids.values()))
    if isinstance(vocabulary, Mapping):
        for token, index in vocabulary.items():
            if not isinstance(token, str) or isinstance(index, bool) or not isinstance(index, int):
                raise AttnFaithError(f"vocabulary maps {token!r} to {index!r}; expected a mapping token (str) -> id (int)")
            ids.setdefault(token, index)
        return sorted(set(vocabulary.values()))
    if isinstance(vocabulary, (str, bytes)) or not isinstance(vocabulary, Iterable):
        raise AttnFaithError(f"vocabulary is a {type(vocabulary).__name__}; expected token ids or a mapping token -> id")
    pool = list(vocabulary)
    bad = [i for i in pool if isinstance(i, bool) or not isinstance(i, int) or i < 0]
    if bad:
        raise AttnFaithError(f"vocabulary contains {bad[:3]!r}; expected non-negative integer token ids")
    return sorted(set(pool))
