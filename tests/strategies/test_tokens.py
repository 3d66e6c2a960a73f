"""``perturbed``: only valid batches, within the edit bound, special tokens and padding untouched,
shrinking to the fewest edits."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st

from pytest_attnfaith.adapters import prepare_batch
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.strategies import EDITS, PerturbedInputs, perturbed
from pytest_attnfaith.zoo import DISTRACTORS, VOCAB

NEUTRAL = tuple(range(max(DISTRACTORS) + 1, VOCAB))

SYNONYMS = {"good": ["great", "fine"], "dull": ["boring"]}
FEW = settings(max_examples=40, deadline=None, database=None)
QUIET = settings(deadline=None, database=None)  # for find(): no example database written


def unpadded(inputs: Any, row: int) -> list[int]:
    return inputs["input_ids"][row][inputs["attention_mask"][row].bool()].tolist()


def assert_valid_layout(x: PerturbedInputs, base: Any, max_edits: int, pad_id: int) -> None:
    """Same batch size, length within the edit bound, 0/1 masks, right padding with the pad id."""
    ids, mask = x["input_ids"], x["attention_mask"]
    assert ids.dtype == base["input_ids"].dtype and ids.shape[0] == base["input_ids"].shape[0]
    assert base["input_ids"].shape[1] <= ids.shape[1] <= base["input_ids"].shape[1] + max_edits
    assert mask.shape == ids.shape and set(mask.unique().tolist()) <= {0, 1}
    assert torch.equal(mask, mask.sort(dim=1, descending=True).values), "padding must follow the real tokens"
    assert bool((ids[mask == 0] == pad_id).all())
    assert len(x.edits) <= max_edits


def assert_edits_account_for_rows(x: PerturbedInputs, base: Any) -> None:
    """Unedited rows are the base rows; each row's length moved by its inserts minus its deletes."""
    for row in range(base["input_ids"].shape[0]):
        kinds = [edit.kind for edit in x.edits if edit.row == row]
        if not kinds:
            assert unpadded(x, row) == unpadded(base, row)
        assert len(unpadded(x, row)) == len(unpadded(base, row)) + kinds.count("insert") - kinds.count("delete")


@FEW
@given(data=st.data())
def test_plain_vocabulary_edits_give_valid_batches_within_the_bound(zoo_inputs: Any, data: st.DataObject) -> None:
    max_edits = data.draw(st.integers(0, 4), label="max_edits")
    x = data.draw(perturbed(zoo_inputs, vocabulary=NEUTRAL, max_edits=max_edits, distractors=DISTRACTORS))
    assert_valid_layout(x, zoo_inputs, max_edits, pad_id=0)
    assert_edits_account_for_rows(x, zoo_inputs)
    assert set(x) == {"input_ids", "attention_mask"}, "only model inputs, nothing the core would pass on to the model"
    base_tokens = set(zoo_inputs["input_ids"].flatten().tolist())
    new_tokens = set(x["input_ids"][x["attention_mask"].bool()].tolist()) - base_tokens
    assert new_tokens <= set(NEUTRAL) | set(DISTRACTORS)
    for edit in x.edits:
        assert edit.kind in EDITS and edit.kind != "mask", "no mask token is known for a plain vocabulary"
        if edit.kind == "insert":
            assert edit.new in DISTRACTORS
        if edit.kind == "substitute":
            assert edit.new in NEUTRAL and edit.new != edit.old
    prepare_batch(x)


@pytest.fixture(scope="module")
def review_edits(minilm_tokenizer: Any, review_batch: Any) -> st.SearchStrategy[PerturbedInputs]:
    return perturbed(review_batch, tokenizer=minilm_tokenizer, max_edits=3)


@pytest.fixture(scope="module")
def synonym_edits(minilm_tokenizer: Any, review_batch: Any) -> st.SearchStrategy[PerturbedInputs]:
    return perturbed(review_batch, tokenizer=minilm_tokenizer, substitutions=SYNONYMS, edits=("substitute",))


@FEW
@given(data=st.data())
def test_tokenizer_edits_leave_special_tokens_and_padding_in_place(
    minilm_tokenizer: Any, review_batch: Any, review_edits: st.SearchStrategy[PerturbedInputs], data: st.DataObject
) -> None:
    x = data.draw(review_edits)
    tok = minilm_tokenizer
    assert_valid_layout(x, review_batch, 3, pad_id=tok.pad_token_id)
    assert_edits_account_for_rows(x, review_batch)
    assert set(x) == {"input_ids", "attention_mask", "special_tokens_mask", "token_type_ids"}
    ids, mask, special = x["input_ids"], x["attention_mask"].bool(), x["special_tokens_mask"].bool()
    assert bool((ids < len(tok)).all()) and bool((ids >= 0).all())
    for row in range(ids.shape[0]):
        tokens = unpadded(x, row)
        assert tokens[0] == tok.cls_token_id and tokens[-1] == tok.sep_token_id
        assert tok.cls_token_id not in tokens[1:-1] and tok.sep_token_id not in tokens[1:-1]
        assert minilm_tokenizer(x.texts[row], add_special_tokens=False)["input_ids"] == tokens, "the text re-tokenizes to the ids"
        flagged = special[row][mask[row]].tolist()
        assert flagged == [True] + [False] * (len(tokens) - 2) + [True]
    assert bool(special[~mask].all()), "padding is flagged special, as the tokenizer does"
    assert bool((x["token_type_ids"] == 0).all())
    for edit in x.edits:
        if edit.kind == "mask":
            assert edit.new == tok.mask_token_id
        if edit.kind in ("substitute", "insert"):
            assert edit.new not in tok.all_special_ids


@FEW
@given(data=st.data())
def test_substitutions_come_only_from_the_synonym_list(
    minilm_tokenizer: Any, synonym_edits: st.SearchStrategy[PerturbedInputs], data: st.DataObject
) -> None:
    x = data.draw(synonym_edits)
    ids = minilm_tokenizer.convert_tokens_to_ids
    allowed = {ids(word): set(ids(alternatives)) for word, alternatives in SYNONYMS.items()}
    for edit in x.edits:
        assert edit.kind == "substitute" and edit.new in allowed[edit.old]
    assert sum("dull" in text or "boring" in text for text in x.texts) == 1


def test_left_padded_base_stays_left_padded() -> None:
    ids = torch.tensor([[0, 0, 20, 21], [22, 23, 24, 25]])
    base = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    example = find(
        perturbed(base, vocabulary=NEUTRAL, edits=("delete",)), lambda x: any(e.row == 1 for e in x.edits), settings=QUIET
    )
    assert example["attention_mask"].tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    assert example["input_ids"][1, 0] == 0


def test_shrinks_to_one_edit_when_one_suffices(zoo_inputs: Any) -> None:
    strategy = perturbed(zoo_inputs, vocabulary=NEUTRAL, distractors=DISTRACTORS, max_edits=5)
    example = find(strategy, lambda x: any(e.kind == "insert" and e.new == DISTRACTORS[-1] for e in x.edits), settings=QUIET)
    assert len(example.edits) == 1
    assert example.edits[0].new == DISTRACTORS[-1] and example.edits[0].row == 0 and example.edits[0].position == 0


def test_no_edit_budget_gives_the_base(zoo_inputs: Any) -> None:
    example = find(perturbed(zoo_inputs, vocabulary=NEUTRAL, max_edits=0), lambda x: True, settings=QUIET)
    assert example.edits == ()
    assert torch.equal(example["input_ids"], zoo_inputs["input_ids"])


def test_repr_shows_the_edits_and_the_edited_text(minilm_tokenizer: Any, review_batch: Any) -> None:
    strategy = perturbed(review_batch, tokenizer=minilm_tokenizer, substitutions={"good": ["great"]}, edits=("substitute",))
    example = find(strategy, lambda x: len(x.edits) == 1 and x.edits[0].row == 0, settings=QUIET)
    expected = "PerturbedInputs(1 edit\n  row 0: substitute 'good' -> 'great' at 4\n  row 0: '[CLS] the movie was great [SEP]')"
    assert repr(example) == expected
    assert example.texts[1] == "[CLS] a terrible plot [SEP]"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs tokenizer= .* or vocabulary="),
        ({"vocabulary": NEUTRAL, "edits": ("mask",)}, "no mask token is known"),
        ({"vocabulary": NEUTRAL, "edits": ("shuffle",)}, "expected a non-empty selection"),
        ({"vocabulary": NEUTRAL, "max_edits": -1}, "max_edits=-1 is not valid"),
        ({"vocabulary": NEUTRAL, "distractors": []}, "distractors is empty"),
        ({"vocabulary": NEUTRAL, "substitutions": {"good": ["great"]}}, "'good' is not a single token"),
        ({"vocabulary": [0, 1.5]}, "expected non-negative integer token ids"),
        ({"vocabulary": NEUTRAL, "distractors": [0]}, "special tokens"),
    ],
)
def test_bad_arguments_are_refused_with_the_expectation(zoo_inputs: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AttnFaithError, match=message):
        perturbed(zoo_inputs, **kwargs)


def test_tokenizer_refuses_ids_outside_its_vocabulary(minilm_tokenizer: Any) -> None:
    with pytest.raises(AttnFaithError, match="outside the tokenizer's vocabulary"):
        perturbed({"input_ids": torch.tensor([[101, 10**6, 102]])}, tokenizer=minilm_tokenizer)
