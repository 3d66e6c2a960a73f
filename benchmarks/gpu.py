"""On a GPU: the default audit and the atlas of a model of at least 1B parameters in bf16, against its plain passes.

    python -m benchmarks.gpu MODEL_FOLDER [--instances 16] [--targets " negative" " positive"]

``MODEL_FOLDER``: a local Hugging Face causal LM of at least 1B parameters (e.g. Llama-3.2-1B or Qwen2.5-1.5B,
downloaded beforehand; nothing is fetched). The model is loaded in bfloat16 with ``device_map="auto"`` (accelerate),
and ``--instances`` SST test sentences (``benchmarks.smollm2``'s zero-shot prompt) are audited at the last layer:
the default six-check audit, then the atlas (``per_head=True``, the five checks of *used* and *agrees*). Each is
timed (CUDA synchronised) and divided by the time of one plain forward pass over the same prompts (median of 5), and
``af.estimate``'s passes, seconds and peak memory are printed beside the measured ones (``torch.cuda``'s peak).
Writes ``benchmarks/gpu.json``. On a machine without CUDA it refuses, with exit status 2: there is nothing to measure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import pytest_attnfaith as af
from benchmarks import smollm2

HERE = Path(__file__).parent
LEAST_PARAMETERS = 10**9
ATLAS_CHECKS = ("permutation", "uniform", "erasure", "gradient", "loo")


def timed(fn: Any) -> tuple[Any, float]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    torch.cuda.synchronize()
    return value, time.perf_counter() - start


def measure(folder: str, instances: int, targets: list[str], data: Path) -> dict[str, Any]:
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(folder)
    model = tf.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, device_map="auto").eval()
    parameters = sum(p.numel() for p in model.parameters())
    if parameters < LEAST_PARAMETERS:
        raise SystemExit(f"benchmarks.gpu: {folder} has {parameters:,} parameters; expected at least 1B")
    texts, _ = smollm2.sst(data, instances, seed=0)
    inputs = smollm2.encode(tokenizer, texts).to(model.device)
    with torch.no_grad():
        plain = statistics.median(timed(lambda: model(**inputs))[1] for _ in range(5))
    adapter = af.huggingface(model, tokenizer=tokenizer)
    results: dict[str, Any] = {"model": folder, "parameters": parameters, "instances": instances, "plain_seconds": plain}
    runs = {"default": {}, "atlas": {"per_head": True, "checks": list(ATLAS_CHECKS)}}
    for name, options in runs.items():
        options = {"targets": targets, **options}
        estimate = af.estimate(adapter, inputs, **options)
        torch.cuda.reset_peak_memory_stats()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report, seconds = timed(lambda options=options: af.audit(adapter, inputs, **options))
        results[name] = {
            "seconds": seconds,
            "ratio_to_plain_pass": seconds / plain,
            "peak_memory_bytes": torch.cuda.max_memory_allocated(),
            "estimate": estimate.to_dict(),
            "verdicts": report.verdicts,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a local Hugging Face causal LM folder of at least 1B parameters")
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--targets", nargs=2, default=list(smollm2.TARGETS))
    parser.add_argument("--data", type=Path, default=smollm2.DEFAULT_SST)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "benchmarks.gpu: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine", file=sys.stderr
        )
        return 2
    results = measure(args.model, args.instances, args.targets, args.data)
    print(json.dumps(results, indent=2))
    (HERE / "gpu.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
