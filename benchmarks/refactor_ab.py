"""Before / after a refactoring: the hot paths of the package, timed on two source trees in alternating processes.

    nice -n 10 .venv/bin/python -m benchmarks.refactor_ab --before /tmp/before --rounds 3

``--before``: a checkout of the earlier commit (e.g. ``git archive <commit> | tar -x -C /tmp/before``); ``--after``:
the later one (default: this tree). Each round runs every workload once in a fresh process per tree (before, then
after, then the next round in the other order), with one torch thread; a workload's figure is the CPU time of its best
of ``--repeats`` runs (default 2) in that process (after a warm-up run). The ratio after / before is the median over
rounds of the per-round ratios, so that a machine shared with other jobs slows both sides of a round alike.

Workloads: ``bilstm``: J&W's BiLSTM (partial forward, untrained), uniform + permutation + erasure on 64 instances;
``mha``: a classifier over ``nn.MultiheadAttention`` (softmax interception, the process-wide patches), uniform +
permutation on 32 instances; ``minilm``: the packaged MiniLM, permutation with 100 permutations on 16 sentences
(cached hidden states, query copies); ``llama``: a tiny random Llama, permutation on 16 instances (one-token passes).
``<model>-passes``: the adapter's hot path alone on the same model and inputs, in one session: the reference pass and
20 edited passes of the whole batch (``edited_passes``), what every audit's counterfactuals run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 2
MODELS = ("bilstm", "mha", "minilm", "llama")
WORKLOADS = MODELS + tuple(f"{name}-passes" for name in MODELS)


def workload(name: str) -> Any:
    """A function that runs workload ``name`` once (built here, timed by the caller): ``<model>`` audits the model,
    ``<model>-passes`` runs only the adapter's hot path on it (``edited_passes``)."""
    import pytest_attnfaith as af

    model_name, _, kind = name.partition("-")
    model, inputs, options = subject(model_name)
    if kind == "passes":
        return lambda: edited_passes(model, inputs)
    return lambda: af.audit(model, inputs, **options)


def edited_passes(model: Any, inputs: Any, count: int = 20) -> None:
    """In one session: the reference pass, then ``count`` passes with the read rows replaced by the uniform
    distribution over the real tokens (what uniform, permutation and the search run, pass after pass)."""
    import torch

    from pytest_attnfaith.adapters import Edit, as_attention_model, prepare_batch
    from pytest_attnfaith.options import resolve_options

    adapter, batch = as_attention_model(model), prepare_batch(inputs)
    weights = batch.attention_mask.double() / batch.attention_mask.sum(dim=1, keepdim=True)
    edit = Edit(lambda rows, real, weights: weights.unsqueeze(1).expand_as(rows).to(rows.dtype), {"weights": weights})
    with adapter.session(resolve_options()), torch.no_grad():
        adapter.forward_chunked(batch)
        for _ in range(count):
            adapter.forward(batch, edit)


def subject(name: str) -> tuple[Any, Any, dict[str, Any]]:
    """Model ``name``, its inputs and the options of its audit."""
    import torch
    from torch import nn

    import pytest_attnfaith as af
    from pytest_attnfaith.zoo import VOCAB, BiLSTMClassifier, sentiment_task

    if name == "bilstm":
        model = af.wrap(BiLSTMClassifier(embedding=64, hidden=64, seed=0), attention="attn", embeddings="embed")
        inputs = sentiment_task(64, length=24, min_length=10, seed=3).inputs()
        return model, inputs, {"checks": ["uniform", "permutation", "erasure"]}
    if name == "mha":

        class MHA(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                torch.manual_seed(0)
                self.embed = nn.Embedding(VOCAB, 32, padding_idx=0)
                self.mha = nn.MultiheadAttention(32, 4, batch_first=True)
                self.head = nn.Linear(32, 2)

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
                e = self.embed(input_ids)
                out, _ = self.mha(e, e, e, key_padding_mask=None if attention_mask is None else attention_mask == 0)
                return self.head(out[:, 0])

        model = af.wrap(MHA(), attention="mha", embeddings="embed")
        inputs = sentiment_task(32, length=16, seed=3).inputs()
        return model, inputs, {"checks": ["uniform", "permutation"], "permutations": 50}
    if name == "minilm":
        from benchmarks.speed import minilm

        net, inputs = minilm()
        return net, inputs, {"checks": ["permutation"], "permutations": 100}
    if name == "llama":
        import transformers as tf

        torch.manual_seed(0)
        config = tf.LlamaConfig(
            vocab_size=120, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        net = tf.LlamaForCausalLM(config).eval()
        ids = torch.randint(1, 120, (16, 20), generator=torch.Generator().manual_seed(1))
        return net, {"input_ids": ids}, {"checks": ["permutation"], "permutations": 50}
    raise ValueError(name)


def child(names: list[str], repeats: int = REPEATS) -> dict[str, float]:
    """In this process: each workload's best CPU time of ``repeats`` runs, after a warm-up run."""
    import torch

    torch.set_num_threads(1)
    out = {}
    for name in names:
        run = workload(name)
        run()
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            run()
            best = min(best, time.process_time() - start)
        out[name] = best
    return out


def run_tree(tree: Path, names: list[str], repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    script = Path(__file__).resolve()
    code = f"import json, runpy; ab = runpy.run_path({str(script)!r}); print(json.dumps(ab['child']({names!r}, {repeats})))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the earlier source tree")
    parser.add_argument("--after", type=Path, default=ROOT, help="the later source tree (default: this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs per workload and process (the best counts)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    args = parser.parse_args(argv)
    rounds: list[dict[str, dict[str, float]]] = []
    for index in range(args.rounds):
        order = [("before", args.before), ("after", args.after)]
        if index % 2:
            order.reverse()
        rounds.append({side: run_tree(tree, args.workloads, args.repeats) for side, tree in order})
        print(json.dumps(rounds[-1]), flush=True)
    summary = {
        name: {
            "before": statistics.median(r["before"][name] for r in rounds),
            "after": statistics.median(r["after"][name] for r in rounds),
            "ratio": statistics.median(r["after"][name] / r["before"][name] for r in rounds),
        }
        for name in args.workloads
    }
    print(json.dumps({"rounds": rounds, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
