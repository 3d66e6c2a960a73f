"""Wall time of a test suite under ``pytest -n 2``, with and without the plugin sharing the cores among the workers.

    nice -n 10 .venv/bin/python -m benchmarks.xdist_threads     # writes its section of benchmarks/RESULTS.md

The suite is ``examples/`` (a model repository: two BiLSTMs trained per session, five audits;
``-m "not minilm"``), which sets no thread count of its own. Three configurations, each run as a
fresh ``pytest`` process, interleaved, ``--repeat`` times: serial; ``-n 2`` with every worker keeping
torch's default intra-op threads (``-o attnfaith_xdist_threads=false``: what 0.1 did); ``-n 2`` with
the plugin's default (each worker cores ÷ workers threads). ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` are removed from the environment. Reported: the median wall time and the CPU time
of the process and its workers (``RUSAGE_CHILDREN``), and each median's ratio to the serial one.
Wall time is the measure here (the point of ``-n`` is to finish sooner), so the machine's load is
recorded beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS.md")
TITLE = "## pytest-xdist: torch threads per worker"
CONFIGURATIONS = {
    "serial": [],
    "-n 2, default threads in every worker": ["-n", "2", "-o", "attnfaith_xdist_threads=false"],
    "-n 2, cores ÷ workers threads (plugin default)": ["-n", "2"],
}


def run(args: list[str]) -> dict[str, float]:
    """One ``pytest`` process on ``examples/``: wall seconds and CPU seconds of it and its workers."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not minilm", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT / "examples", env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def measure(repeat: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGURATIONS}
    load = [os.getloadavg()]
    for round_ in range(repeat):
        for name, args in CONFIGURATIONS.items():
            print(f"round {round_ + 1}/{repeat}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(run(args))
        load.append(os.getloadavg())
    medians = {
        name: {key: statistics.median(r[key] for r in results) for key in ("wall", "cpu")} for name, results in runs.items()
    }
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_default_threads": torch.get_num_threads(),
            "load_average": load,
        },
        "runs": runs,
        "medians": medians,
    }


def section(results: dict[str, Any]) -> str:
    serial = results["medians"]["serial"]
    rows = [
        f"| {name} | {m['wall']:.1f} s | {m['wall'] / serial['wall']:.2f}× | {m['cpu']:.1f} s | {m['cpu'] / serial['cpu']:.2f}× |"
        for name, m in results["medians"].items()
    ]
    machine = results["machine"]
    loads = ", ".join(f"{values[0]:.1f}" for values in machine["load_average"])
    repeat = len(next(iter(results["runs"].values())))
    return "\n".join(
        [
            TITLE,
            "",
            'Command: `nice -n 10 .venv/bin/python -m benchmarks.xdist_threads` — `pytest -q -m "not minilm"` in `examples/`'
            f" (5 tests, two BiLSTMs trained per session), each configuration a fresh process, interleaved, median of {repeat}.",
            "",
            "| configuration | wall time | / serial | CPU time (all processes) | / serial |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Machine: {machine['cpus']} CPUs, shared; torch {machine['torch']} (default intra-op threads "
            f"{machine['torch_default_threads']}); 1-minute load average before and after each round: {loads}.",
            "",
            "```json",
            json.dumps(results, indent=1),
            "```",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (default 3)")
    args = parser.parse_args(argv)
    text = section(measure(args.repeat))
    write_section(RESULTS, "xdist", text)
    print(text.split("```")[0])


if __name__ == "__main__":
    main()
