"""Reports show words, not a tokenizer's symbols: a byte-level BPE tokenizer (GPT-2's, SmolLM2's) writes a word's
leading space as ``Ġ``, a newline as ``Ċ`` and the two bytes of ``é`` as ``Ã©``; the terminal, the HTML, the JSON and
the failure message show ``gorgeous``, ``↵`` and ``és``. A real byte-level BPE tokenizer is trained here in
milliseconds on the prompts (``tokenizers``), and a tiny random Llama reads them."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import pytest_attnfaith as af
from pytest_attnfaith.adapters.token_names import TokenNames
from tests.huggingface.conftest import SMALL

TEXTS = [
    "Review: a gorgeous , witty film\nSentiment:",
    "Review: très beau , un café gorgeous\nSentiment:",
    "Review: a dull , dumb film\nSentiment:",
    "Review: the cast is gorgeous and witty\nSentiment:",
]
LABELS = ["Sentiment: positive", "Sentiment: negative"]
SYMBOLS = ("Ġ", "Ċ", "Ã")


def byte_level_tokenizer() -> tf.PreTrainedTokenizerFast:
    """GPT-2's kind of tokenizer (byte-level BPE, ``Ġ`` for a leading space), trained on ``TEXTS`` and the labels."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator((TEXTS + LABELS) * 4, trainer=trainer)
    return tf.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>")


def tiny_llama(tokenizer: tf.PreTrainedTokenizerFast) -> tf.LlamaForCausalLM:
    """A random 2-layer Llama over ``tokenizer``'s vocabulary, seeded."""
    torch.manual_seed(0)
    return tf.LlamaForCausalLM(tf.LlamaConfig(**{**SMALL, "vocab_size": len(tokenizer)}, num_key_value_heads=2))


@pytest.fixture(scope="module")
def byte_level() -> tf.PreTrainedTokenizerFast:
    return byte_level_tokenizer()


def test_the_symbols_of_a_byte_level_tokenizer_read_as_the_text_they_stand_for(byte_level) -> None:
    ids = byte_level("a gorgeous café\nx\ty", add_special_tokens=False)["input_ids"]
    raw = byte_level.convert_ids_to_tokens(ids)
    assert "Ġgorgeous" in raw and "Ċ" in raw  # what 0.2 showed
    shown = TokenNames(byte_level).decode(ids)
    assert "gorgeous" in shown and "↵" in shown and "⇥" in shown
    assert "".join(shown).replace("↵", "").replace("⇥", "") == "agorgeouscaféxy"
    assert not any(symbol in token for token in shown for symbol in SYMBOLS)


def test_an_audit_shows_words_in_its_tokens_html_json_and_failure_message(byte_level) -> None:
    llama = tiny_llama(byte_level)
    prompts = byte_level(TEXTS, return_tensors="pt", padding=True)
    model = af.huggingface(llama, tokenizer=byte_level)
    with pytest.raises(af.AttentionNotFaithful) as failure:
        af.assert_attention_faithful(model, prompts, checks=["uniform", "gradient"], require=("used", "agrees"))
    report = failure.value.report
    words = [token for tokens in report.instances["tokens"] for token in tokens]
    assert {"gorgeous", "↵", "café", "très"} <= set(words)
    for text in (json.dumps(report.to_dict(), ensure_ascii=False), report._repr_html_(), str(failure.value)):
        assert not any(symbol in text for symbol in SYMBOLS), text[:2000]
    assert "gorgeous" in report._repr_html_()
