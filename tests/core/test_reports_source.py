"""What an audit puts in its report for people to read: words from a vocabulary, positions under ``redact``, clear
errors (a layer a wrapped model does not have, non-finite outputs naming the instance), plurals, HTML for notebooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.formatting import compact, plural, printable
from pytest_attnfaith.worst import flag_count
from pytest_attnfaith.zoo import VOCAB, WORDS, ZooModel, sentiment_task

INPUTS = sentiment_task(4, seed=2, length=8).inputs()
FAST = {"checks": ["uniform"]}


def real_ids(row: int) -> list[int]:
    return [i for i, keep in zip(INPUTS["input_ids"][row].tolist(), INPUTS["attention_mask"][row].tolist(), strict=True) if keep]


def tokens_with(vocabulary: object) -> list[list[str]]:
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed", vocabulary=vocabulary)
    return af.audit(model, INPUTS, **FAST).instances["tokens"]


def test_zoo_words_cover_its_vocabulary() -> None:
    assert len(WORDS) == VOCAB and len(set(WORDS)) == VOCAB


def test_a_sequence_vocabulary_gives_the_words_of_the_real_tokens() -> None:
    assert tokens_with(WORDS)[1] == [WORDS[i] for i in real_ids(1)]


def test_a_mapping_vocabulary_shows_the_ids_it_does_not_cover_as_numbers() -> None:
    words = {i: f"w{i}" for i in range(0, VOCAB, 2)}
    assert tokens_with(words)[0] == [f"w{i}" if i % 2 == 0 else str(i) for i in real_ids(0)]


def test_a_numpy_array_of_words_is_a_sequence_vocabulary() -> None:
    assert tokens_with(np.array(WORDS))[1] == [WORDS[i] for i in real_ids(1)]


def test_a_sequence_shorter_than_the_ids_shows_the_rest_as_numbers() -> None:
    assert tokens_with(WORDS[:10])[2] == [WORDS[i] if i < 10 else str(i) for i in real_ids(2)]


def test_a_tokenizer_vocabulary_uses_convert_ids_to_tokens() -> None:
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.BertTokenizerFast(vocab={word: index for index, word in enumerate(WORDS)})
    assert tokens_with(tokenizer)[3] == [WORDS[i] for i in real_ids(3)]


@pytest.mark.parametrize(
    ("vocabulary", "message"),
    [
        ("the movie", "vocabulary is a str; expected a sequence of strings"),
        (42, "vocabulary is a int; expected"),
        (["a", 3], "vocabulary entry 1 is 3, a int; expected str token text"),
        ({"the": 1}, "vocabulary key 'the' is a str; expected integer token ids as keys (a word -> id mapping?"),
        ({True: "yes"}, "vocabulary key True is a bool"),
    ],
)
def test_a_bad_vocabulary_is_an_error_when_wrapping(vocabulary: object, message: str) -> None:
    with pytest.raises(af.AttnFaithError, match=message.replace("(", r"\(").replace("?", r"\?")):
        af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed", vocabulary=vocabulary)


def test_redact_replaces_every_token_by_its_position_even_with_a_vocabulary() -> None:
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed", vocabulary=WORDS)
    report = af.audit(model, INPUTS, redact=True, **FAST)
    lengths = INPUTS["attention_mask"].sum(dim=1).tolist()
    assert report.instances["tokens"] == [[f"#{t}" for t in range(n)] for n in lengths]
    assert not set(WORDS[1:]) & {token for row in report.instances["tokens"] for token in row}


@pytest.mark.parametrize("layer", [3, 1, -2])
def test_a_layer_a_wrapped_model_does_not_have_is_an_error(layer: int) -> None:
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    with pytest.raises(af.AttnFaithError, match=f"option layer={layer} is not valid for a wrapped model: it has one attention"):
        af.audit(model, INPUTS, layer=layer, **FAST)


@pytest.mark.parametrize("layer", [0, -1])
def test_layer_0_and_minus_1_name_the_one_attention(layer: int) -> None:
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    assert af.audit(model, INPUTS, layer=layer, **FAST).options["layer"] == layer


class NanForOneInstance(ZooModel):
    """Finite logits except for instances whose first token is ``poison``."""

    def __init__(self, poison: int) -> None:
        super().__init__("faithful")
        self.poison = poison

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = super().forward(input_ids, attention_mask)
        bad = (input_ids[:, 0] == self.poison).unsqueeze(1)
        return torch.where(bad, torch.full_like(logits, float("nan")), logits)


def test_non_finite_outputs_name_the_instance_across_chunks() -> None:
    inputs = sentiment_task(12, seed=4).inputs()
    first = inputs["input_ids"][:, 0].tolist()
    row = next(r for r in range(3, len(first)) if first[r] not in first[:r])  # beyond the first chunk of 2
    model = af.wrap(NanForOneInstance(first[row]), attention="attn", embeddings="embed")
    with pytest.raises(af.AttnFaithError, match=rf"NaN or inf for instance {row} of the inputs \(logits \[nan, nan\]\)"):
        af.audit(model, inputs, batch_size=2, **FAST)


def test_counts_of_one_are_singular() -> None:
    assert flag_count(1, 0) == "1 instance, 0 flagged (0%)"
    assert (plural(1, "head"), plural(2, "head"), plural(12_095, "instance")) == ("1 head", "2 heads", "12,095 instances")
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    with pytest.raises(af.AttnFaithError, match=r"the attention has 1 head$"):
        af.audit(model, INPUTS, head=1, **FAST)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.98, "0.98"), (0.5, "0.50"), (0.0123, "0.012"), (3.1e-5, "3.1e-5"), (-0.002, "-2.0e-3"), (0.0, "0"), (None, "-")],
)
def test_compact_numbers_never_round_a_small_value_to_zero(value: float | None, text: str) -> None:
    assert compact(value) == text


def test_printable_escapes_control_and_bidi_characters() -> None:
    assert printable("a\x1b[31mb\u202ec\nd") == "a\\x1b[31mb\\u202ec\\nd"


def test_report_renders_as_html_in_a_notebook_with_its_style_scoped() -> None:
    model = af.wrap(ZooModel("unused"), attention="attn", embeddings="embed", vocabulary=WORDS)
    html = af.audit(model, INPUTS, checks=["uniform", "permutation"], permutations=10)._repr_html_()
    assert html.startswith('<div class="attnfaith"><style>') and "<body" not in html
    assert "audit of ZooModel" in html and "FAILED" in html and "<svg" in html and 'class="heat"' in html
    assert WORDS[real_ids(0)[0]] in html
    style = html.split("<style>")[1].split("</style>")[0]
    selectors = [rule.split("{")[0].strip() for rule in style.split("}") if "{" in rule]
    assert all(selector.startswith((".attnfaith", "main.attnfaith")) for selector in selectors)
