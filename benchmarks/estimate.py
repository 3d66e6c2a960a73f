"""``af.estimate`` against the audit it estimates: passes and seconds, on the zoo, a tiny random BERT and a tiny random
Llama with two ``targets``.

One command, one process, one torch thread (writes its section of ``benchmarks/RESULTS.md``):

    nice -n 10 .venv/bin/python -m benchmarks.estimate

Per case: ``af.estimate(model, inputs, **options)`` then, right after it in the same process,
``af.audit(model, inputs, **options)``, wall seconds (``time.perf_counter``) and the audit's passes (the instances of
every call of its adapter's ``forward``: a forward hook on a module misses a Hugging Face decoder's shortcut passes);
``--repeats`` pairs per case (the table shows each ratio's range over them). Ratios: estimate / audit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch

import pytest_attnfaith as af
from benchmarks.sections import write_section
from pytest_attnfaith.adapters import as_attention_model
from pytest_attnfaith.zoo import ZooModel, sentiment_task

ATLAS = {"permutations": 10, "per_head": True, "checks": ["permutation", "uniform", "erasure", "gradient", "loo"]}
SEARCH = {"permutations": 10, "adversarial_method": "search", "adversarial_steps": 100}
TINY = {"vocab_size": 120, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


def zoo(n: int) -> tuple[Any, dict[str, torch.Tensor]]:
    """The zoo's faithful model (``tests/core/conftest.py``'s ``wrapped("faithful")``) on ``n`` sentiment instances."""
    model = af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")
    return model, sentiment_task(n, seed=2).inputs()


def token_batch(size: int, length: int = 9, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with the first two instances padded by three positions (``tests/huggingface/conftest.py``)."""
    ids = torch.randint(5, TINY["vocab_size"], (size, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[:2, length - 3 :] = 0
    return {"input_ids": ids * mask, "attention_mask": mask}


def bert(n: int) -> tuple[Any, dict[str, torch.Tensor]]:
    import transformers as tf

    torch.manual_seed(0)
    model = tf.BertForSequenceClassification(tf.BertConfig(**TINY, num_labels=2)).eval()
    return model, token_batch(n)


def llama(n: int) -> tuple[Any, dict[str, torch.Tensor]]:
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(**TINY, num_key_value_heads=2, bos_token_id=0, eos_token_id=0)
    model = tf.LlamaForCausalLM(config).eval()
    return model, token_batch(n)


Build = Callable[[int], tuple[Any, dict[str, torch.Tensor]]]
"""A case's model and its ``n`` inputs."""
ZOO_OPTIONS = (("defaults", {}), ("search", SEARCH), ("atlas", ATLAS))
LLAMA = {"targets": [7, 11], "scale": "probability", "permutations": 10, "adversarial_steps": 100}
CASES: list[tuple[str, Build, int, dict[str, Any]]] = [
    *[(f"zoo faithful, {kind}", zoo, n, options) for n in (32, 128) for kind, options in ZOO_OPTIONS],
    ("tiny BERT, defaults", bert, 32, {}),
    ("tiny BERT, per_head", bert, 32, {"permutations": 10, "per_head": True}),
    ("tiny Llama, two targets", llama, 12, LLAMA),
]


@contextlib.contextmanager
def passes_of(model: Any) -> Iterator[dict[str, int]]:
    """Instances through every pass the audit's adapter runs (every call of its ``forward``: full, edited, with a
    backward, and the shortcuts a Hugging Face decoder's passes take, which no module hook sees)."""
    adapter = as_attention_model(model)
    counted = {"rows": 0}
    run = type(adapter).forward

    def forward(self: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        counted["rows"] += batch.size
        return run(self, batch, *args, **kwargs)

    with mock.patch.object(type(adapter), "forward", forward):
        yield counted


def measure(build: Callable[[int], tuple[Any, dict[str, torch.Tensor]]], n: int, options: dict[str, Any]) -> dict[str, float]:
    """One estimate and the audit right after it: their passes and seconds."""
    model, inputs = build(n)
    start = time.perf_counter()
    estimate = af.estimate(model, inputs, **options)
    took = time.perf_counter() - start
    with passes_of(model) as counted, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start, cpu = time.perf_counter(), time.process_time()
        af.audit(model, inputs, **options)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "passes": estimate.passes,
        "counted": counted["rows"],
        "estimate": estimate.seconds,
        "audit": seconds,
        "cpu": cpu,
        "took": took,
    }


def markdown(rows: list[tuple[str, int, dict[str, Any], list[dict[str, float]]]], repeats: int) -> str:
    lines = [
        "### af.estimate against the audit (estimate, then the audit right after it in the same process)",
        "",
        f"`python -m benchmarks.estimate --repeats {repeats}` ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch thread, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at the "
        "end). Ratios estimate / audit; seconds are wall "
        "seconds, CPU seconds the audit process's (`time.process_time`: on one thread, its wall time less the time it waited "
        "while other work ran); passes: the instances of every call of the audit's adapter's `forward`. "
        "A range is the lowest and highest over the repeats.",
        "",
        "| case | n | options | passes est / counted | ratio passes | seconds est / audit | ratio seconds | ratio CPU s | "
        "estimate took |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, n, options, runs in rows:
        passes = [run["passes"] / run["counted"] for run in runs]
        seconds = [run["estimate"] / run["audit"] for run in runs]
        cpu = [run["estimate"] / run["cpu"] for run in runs]
        last = runs[-1]
        lines.append(
            f"| {name} | {n} | `{options}` | {last['passes']:,} / {last['counted']:,} | {_span(passes)} | "
            f"{last['estimate']:.2f} / {last['audit']:.2f} | {_span(seconds)} | {_span(cpu)} | {last['took']:.2f} s |"
        )
    return "\n".join(lines)


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}" if abs(high - low) < 0.005 else f"{low:.2f}–{high:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="estimate-then-audit pairs per case")
    parser.add_argument("--output", default=str(Path(__file__).with_name("RESULTS.md")), help="the results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name, build, n, options in CASES:
        runs = [measure(build, n, options) for _ in range(args.repeats)]
        rows.append((name, n, options, runs))
        print(
            f"{name} n={n}: "
            + "; ".join(
                f"passes {r['passes'] / r['counted']:.2f} seconds {r['estimate'] / r['audit']:.2f} ({r['audit']:.2f} s)"
                for r in runs
            ),
            flush=True,
        )
    text = markdown(rows, args.repeats)
    print(text)
    write_section(Path(args.output), "estimate", text)


if __name__ == "__main__":
    main()
