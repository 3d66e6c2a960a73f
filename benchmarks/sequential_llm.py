"""SmolLM2's last layer decided sequentially: the instances and CPU-seconds to answer *used* and *agrees*.

    python -m benchmarks.sequential_llm [--data ../shared/data/sst/sst_dataset.csv] [--max-instances 96]

SmolLM2-135M-Instruct as a zero-shot SST classifier (``benchmarks.smollm2``: the prompt, ``targets`` " negative" /
" positive"), one thread. The SST test sentences are a source read 16 at a time; the audit stops once both questions
are answered, or at ``--max-instances``. Budget: 20 permutations (the docs/llm.md budget). Writes
``benchmarks/sequential_llm.json`` and its section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

import pytest_attnfaith as af
from benchmarks import smollm2
from benchmarks.sections import write_section

HERE = Path(__file__).parent
CHECKS = ("permutation", "uniform", "erasure", "gradient", "loo")
BATCH = 16


def measure(data: Path, max_instances: int) -> dict[str, object]:
    torch.set_num_threads(1)
    model, tokenizer = smollm2.load()
    texts, _ = smollm2.sst(data, max_instances, seed=0)
    source = smollm2.encode(tokenizer, texts)
    adapter = af.huggingface(model, tokenizer=tokenizer)
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = af.audit(
            adapter,
            source,
            checks=list(CHECKS),
            require=["used", "agrees"],
            targets=list(smollm2.TARGETS),
            permutations=20,
            sequential=True,
            batch_size=BATCH,
            max_instances=max_instances,
        )
    return {
        "cpu_seconds": time.process_time() - start_cpu,
        "wall_seconds": time.perf_counter() - start_wall,
        "instances_used": report.instances_used,
        "stopped": report.model["sequential"]["stopped"],
        "verdicts": report.verdicts,
        "checks": {
            name: {"statistic": r.statistic, "interval": list(r.interval), "verdict": r.verdict, "instances": r.per_instance.size}
            for name, r in report.checks.items()
        },
    }


def markdown(result: dict[str, object], max_instances: int) -> str:
    lines = [
        f"### SmolLM2 last layer, sequential (batches of {BATCH}, at most {max_instances} SST sentences, 1 thread)",
        "",
        f"`python -m benchmarks.sequential_llm --max-instances {max_instances}`: used **{result['verdicts']['used']}**, "  # type: ignore[index]
        f"agrees **{result['verdicts']['agrees']}** after {result['instances_used']} instances "  # type: ignore[index]
        f"({result['stopped']}), {result['cpu_seconds']:.0f} CPU-seconds ({result['wall_seconds']:.0f} s wall).",
        "",
        "| check | statistic | interval (confidence sequence) | verdict | instances |",
        "|---|---|---|---|---|",
    ]
    for name, check in result["checks"].items():  # type: ignore[attr-defined]
        low, high = check["interval"]
        lines.append(
            f"| {name} | {check['statistic']:.3f} | [{low:.3f}, {high:.3f}] | {check['verdict']} | {check['instances']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=smollm2.DEFAULT_SST)
    parser.add_argument("--max-instances", type=int, default=96)
    args = parser.parse_args()
    result = measure(args.data, args.max_instances)
    table = markdown(result, args.max_instances)
    print(table)
    (HERE / "sequential_llm.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_section(HERE / "RESULTS.md", "sequential_llm", table)


if __name__ == "__main__":
    main()
