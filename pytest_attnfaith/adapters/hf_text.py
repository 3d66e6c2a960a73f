"""The text side of a Hugging Face model: its tokenizer (the tokens reports show, the mask token) and its output
(``targets``: token ids or words of a causal LM, classes or labels of a classifier; a causal LM's linear head cut to
the target rows). Importing this module does not import transformers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from pytest_attnfaith.adapters.base import AttentionModel
from pytest_attnfaith.adapters.inputs import Batch
from pytest_attnfaith.adapters.token_names import TokenNames
from pytest_attnfaith.errors import AttnFaithError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


class HuggingFaceText(AttentionModel):
    """A ``transformers.PreTrainedModel``'s tokenizer and output targets (the layers: ``hf_model``)."""

    def __init__(self, model: nn.Module, tokenizer: Any = None, shortcuts: bool = True) -> None:
        super().__init__(model, where=type(model).__name__)
        self.config: Any = model.config
        self.tokenizer = tokenizer
        self._head: TargetHead | None = None
        self._target_words: list[tuple[str, int]] | None = None
        self._loaded_tokenizer = False

    def _forget_session(self) -> None:
        super()._forget_session()
        self._head, self._target_words = None, None

    def resolve_targets(self, targets: tuple[Any, ...] | None) -> Tensor | None:
        """Token ids or words (a causal LM; words through the tokenizer, first token each), class indices or labels
        (a sequence classifier; labels through ``config.label2id``), checked against the output's size."""
        if targets is None:
            return None
        if isinstance(targets[0], str):
            ids = self._word_ids(targets) if self._generative() else self._label_ids(targets)
        else:
            ids = [int(target) for target in targets]
        size, what = self._output_size()
        outside = [target for target in ids if target >= size]
        if outside:
            raise AttnFaithError(
                f"targets {outside} are out of range: {type(self.module).__name__} has {size} {what}; expected ids below {size}"
            )
        return torch.tensor(ids, dtype=torch.long)

    def _generative(self) -> bool:
        return bool(type(self.module).can_generate())  # type: ignore[attr-defined]

    def _output_size(self) -> tuple[int, str]:
        if not self._generative():
            return int(getattr(self.config, "num_labels", 0)), "classes"
        head = self.module.get_output_embeddings()  # type: ignore[operator]
        if isinstance(head, nn.Linear):
            return int(head.out_features), "tokens in its output vocabulary"
        return int(self.config.get_text_config().vocab_size), "tokens in its vocabulary"

    def _word_ids(self, words: tuple[str, ...]) -> list[int]:
        """Each word's first token (what the next-token distribution at the last real token scores)."""
        tokenizer = self.loaded_tokenizer()
        if tokenizer is None:
            raise AttnFaithError(
                f"targets={list(words)!r} are words, but no tokenizer is known for {type(self.module).__name__}; "
                "expected af.huggingface(model, tokenizer=...) (or a model saved with its tokenizer), or token ids"
            )
        pieces = {word: list(tokenizer.encode(word, add_special_tokens=False)) for word in words}
        empty = [word for word, ids in pieces.items() if not ids]
        if empty:
            raise AttnFaithError(f"targets {empty!r} have no tokens under {type(tokenizer).__name__}; expected words")
        first: dict[int, str] = {}
        for word, ids in pieces.items():
            if ids[0] in first:
                token = TokenNames(tokenizer).decode(ids[:1])[0]
                raise AttnFaithError(
                    f"targets {first[ids[0]]!r} and {word!r} both start with token {ids[0]} ({token!r}): the next-token "
                    "distribution cannot tell them apart; expected words whose first tokens differ (or token ids)"
                )
            first[ids[0]] = word
        self._target_words = [(word, len(ids)) for word, ids in pieces.items()]
        return [ids[0] for ids in pieces.values()]

    def _label_ids(self, labels: tuple[str, ...]) -> list[int]:
        known = {str(k): int(v) for k, v in (getattr(self.config, "label2id", None) or {}).items()}
        missing = [label for label in labels if label not in known]
        if missing:
            raise AttnFaithError(
                f"targets {missing!r} are not labels of {type(self.module).__name__}: config.label2id has {sorted(known)}; "
                "expected labels from it, or class indices"
            )
        return [known[label] for label in labels]

    def _restricted_head(self) -> TargetHead | None:
        """A causal LM's output head cut to the target rows (K of V), where it is a linear layer."""
        if self.targets is None or not self._generative():
            return None
        head = self.module.get_output_embeddings()  # type: ignore[operator]
        return TargetHead(head, self.targets) if isinstance(head, nn.Linear) else None

    @contextlib.contextmanager
    def _target_head(self) -> Iterator[None]:
        """The restricted head in place of the model's own for one call (put back on exit)."""
        if self._head is None:
            yield
            return
        original = self.module.get_output_embeddings()  # type: ignore[operator]
        self.module.set_output_embeddings(self._head)  # type: ignore[operator]
        try:
            yield
        finally:
            self.module.set_output_embeddings(original)  # type: ignore[operator]

    def _target_logits(self, logits: Tensor) -> Tensor:
        if self._head is not None:
            return logits  # the restricted head computed the target logits only
        return super()._target_logits(logits)

    def describe_output(self) -> str | dict[str, Any]:
        generative = self._generative()
        if self.targets is None:
            return "next-token distribution at the last real token" if generative else "logits"
        ids = self.targets.tolist()
        if not generative:
            labels = getattr(self.config, "id2label", None) or {}
            named = [labels.get(i) for i in ids]
            return {"distribution": "softmax over the logits of the target classes", "ids": ids, "labels": named}
        tokenizer = self.loaded_tokenizer()
        words = self._target_words
        size, _ = self._output_size()
        return {
            "distribution": "softmax over the next-token logits of the targets at the last real token",
            "ids": ids,
            "tokens": TokenNames(tokenizer).decode(ids) if tokenizer is not None else None,
            "words": [word for word, _ in words] if words else None,
            "multi_token": [word for word, count in words if count > 1] if words else [],
            "output_head": f"target rows only ({len(ids)} of {size})" if self._head else f"all {size} rows, then the targets",
        }

    def pad_token_id(self) -> int | None:
        for source in (self.loaded_tokenizer(), self.config):
            value = getattr(source, "pad_token_id", None)
            if isinstance(value, int):
                return value
        return None

    def mask_token_id(self) -> int | None:
        if self.options.mask_token_id is not None:
            return self.options.mask_token_id
        sources = (self.loaded_tokenizer(), self.config)
        for attribute in ("mask_token_id", "pad_token_id"):
            for source in sources:
                value = getattr(source, attribute, None)
                if isinstance(value, int):
                    return value
        return None

    def tokens(self, batch: Batch) -> list[list[str]]:
        if batch.input_ids is None or (tokenizer := self.loaded_tokenizer()) is None:
            return super().tokens(batch)
        decode = TokenNames(tokenizer).decode
        return [
            decode([i for i, keep in zip(row, real, strict=True) if keep])
            for row, real in zip(batch.input_ids.tolist(), batch.real.tolist(), strict=True)
        ]

    def loaded_tokenizer(self) -> Any:
        """The tokenizer given, else the one saved beside the model's weights (local folders only), else None."""
        if self.tokenizer is None and not self._loaded_tokenizer:
            self._loaded_tokenizer = True
            self.tokenizer = _local_tokenizer(getattr(self.config, "_name_or_path", ""))
        return self.tokenizer


class TargetHead(nn.Module):
    """A linear output head restricted to the target rows: z = h W[ids]ᵀ + b[ids], K logits instead of V."""

    def __init__(self, head: nn.Linear, ids: Tensor) -> None:
        super().__init__()
        index = ids.to(head.weight.device)
        self.weight = head.weight.detach()[index]
        self.bias = head.bias.detach()[index] if head.bias is not None else None

    def forward(self, hidden: Tensor) -> Tensor:
        return nn.functional.linear(hidden, self.weight, self.bias)


def _local_tokenizer(path: str) -> Any:
    if not path or not os.path.isdir(path) or not any(os.path.exists(os.path.join(path, f)) for f in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)
