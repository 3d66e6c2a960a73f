"""``python -m benchmarks.reproduce.explanations``: which explanation clears the bar on SST, per model and removal.

Trains the models as the reproduction does (J&W's BiLSTM: ``experiments.train_variant``; MiniLM fine-tuned:
``transformer.fine_tune``) and loads SmolLM2-135M-Instruct as a zero-shot classifier (``benchmarks/smollm2.py``),
draws a seeded sample of test sentences, and runs ``af.compare_explanations`` with every applicable explainer
(SmolLM2: ``--smollm2-explainers``) under both removal operators (``removal="delete"`` and ``"mask"``). Writes
the comparisons (JSON), one HTML page through the plugin's report, and the Markdown section of
``benchmarks/REPRODUCTION.md``; ``--from-json`` rewrites the last two from a JSON, whose ``runs`` name the
command behind each model's rows (two runs' JSON merged: both runs listed).

A model is a ``Case`` built by a function of ``MODELS``; ``explain_model`` runs any case. To add a model, add
``MODELS[name]`` returning its ``Case`` (``sst_smollm2``: a causal LM with ``options={"targets": [...]}``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pytest_attnfaith as af
from benchmarks import smollm2
from benchmarks.reproduce.__main__ import DEFAULT_DATA
from benchmarks.reproduce.data import PAD, Dataset, batch_inputs, load_sst
from benchmarks.reproduce.experiments import VARIANTS, Settings, train_variant
from benchmarks.reproduce.train import predict
from benchmarks.sections import write_section
from pytest_attnfaith.audit import environment

REMOVALS = ("delete", "mask")
CLASSIC = ("attention", "rollout", "gradient_x_input", "integrated_gradients", "leave_one_out", "shapley")  # 0.2's six
SMOLLM2_EXPLAINERS = ("attention", "rollout", "gradient_x_input", "leave_one_out", "integrated_gradients")  # no shapley: cost


@dataclass
class Case:
    """A trained model, the inputs its explanations are tested on, what the report calls it, and its options."""

    name: str
    label: str
    model: Any
    inputs: dict[str, torch.Tensor]
    explainers: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def sst_bilstm(args: argparse.Namespace, dataset: Dataset) -> Case:
    """J&W's BiLSTM + tanh attention, trained as in the reproduction; <sos>/<eos> special, <pad> masks a token."""
    settings = Settings(args.seed, args.epochs, None, 100, args.batch_size, None)
    trained, vocab = train_variant(VARIANTS[0], dataset, settings)
    scores = predict(trained.model, [vocab.encode(words) for words in dataset.test.words])
    test = dataset.test.sample(args.bilstm_sentences, args.seed)
    inputs = batch_inputs([vocab.encode(words) for words in test.words])
    model = af.wrap(trained.model, attention="attn", embeddings="embed")
    names = tuple(name for name in CLASSIC if name != "rollout")  # one attention layer: no rollout
    record = {
        "test_accuracy": float(((scores > 0.5) == np.asarray(dataset.test.labels)).mean()),
        "best_epoch": trained.best_epoch,
        "train_seconds": trained.seconds,
    }
    label = "BiLSTM + tanh attention (J&W)"
    return Case("bilstm", label, model, inputs, names, {"mask_token_id": PAD}, {**record, "audited": len(test.labels)})


def sst_minilm(args: argparse.Namespace, dataset: Dataset) -> Case:
    """The packaged MiniLM fine-tuned on SST (as the reproduction does); [CLS]/[SEP] special, [MASK] masks a token."""
    from benchmarks.reproduce.transformer import _encode, fine_tune, minilm_dir

    model, tokenizer, record = fine_tune(dataset, minilm_dir(), args.seed, 1, args.minilm_train)
    test = dataset.test.sample(args.minilm_sentences, args.seed)
    inputs = _encode(tokenizer, test.words)
    label = "MiniLM-L6 fine-tuned on SST"
    record = {**record, "audited": len(test.labels)}
    return Case("minilm", label, af.huggingface(model, tokenizer), inputs, tuple(args.minilm_explainers), {}, record)


def sst_smollm2(args: argparse.Namespace, dataset: Dataset) -> Case:
    """SmolLM2-135M-Instruct as a zero-shot classifier (``benchmarks/smollm2.py``): the output is the softmax over the
    label words' next-token logits; the prompt's template is special and stays (the explanations rank the review's
    tokens); its pad token ``<|im_end|>`` masks a token. No training: the accuracy is the audited sentences'."""
    from benchmarks.llm_page import accuracy

    model, tokenizer = smollm2.load()
    test = dataset.test.sample(args.smollm2_sentences, args.seed)
    texts = [" ".join(words) for words in test.words]
    explainers, inputs = tuple(args.smollm2_explainers), _prompts(tokenizer, texts)
    tokens = float((inputs["attention_mask"].bool() & ~inputs["special_tokens_mask"].bool()).sum(dim=1).double().mean())
    record = {
        "audited_accuracy": accuracy(model, tokenizer, texts, test.labels)["accuracy"],
        "audited": len(texts),
        "note": _smollm2_note(explainers, tokens),
    }
    adapter, label = af.huggingface(model, tokenizer=tokenizer), "SmolLM2-135M-Instruct, zero-shot"
    return Case("smollm2", label, adapter, inputs, explainers, {"targets": list(smollm2.TARGETS)}, record)


def _smollm2_note(explainers: tuple[str, ...], tokens: float) -> str:
    """What the SmolLM2 rows explain (``tokens``: the mean number of review tokens), and why ``shapley`` is missing."""
    note = (
        "The prompt's template (`Review:`, `\\nSentiment:`) is special: only the review's tokens are ranked and "
        f"removed ({tokens:.1f} per prompt on average); `<|im_end|>` (the pad token) masks a token."
    )
    if "shapley" not in explainers:
        note += (
            " No `shapley`: with its default 25 samples it runs 25 × (n − 1) passes per sentence and removal "
            f"({25 * (tokens - 1):.0f} here), against 100 for the random orderings every explainer's gain is "
            "measured on: over the run's budget."
        )
    return note


def _prompts(tokenizer: Any, texts: list[str]) -> dict[str, torch.Tensor]:
    """The zero-shot prompts of ``texts``, right-padded, with every token outside the review (the template
    ``Review:`` … ``\\nSentiment:``) marked special."""
    prompts = [smollm2.prompt(text) for text in texts]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, return_offsets_mapping=True)
    spans = encoded.pop("offset_mapping")  # (B, T, 2) characters; (0, 0) on padding
    begin = smollm2.prompt("").index("\n")  # where the text starts in every prompt
    ends = torch.tensor([begin + len(text) for text in texts])[:, None]
    review = (spans[..., 1] > begin) & (spans[..., 0] < ends)
    return {**encoded, "special_tokens_mask": (~review).long()}


MODELS: dict[str, Callable[[argparse.Namespace, Dataset], Case]] = {
    "bilstm": sst_bilstm,
    "minilm": sst_minilm,
    "smollm2": sst_smollm2,
}


def explain_model(case: Case, seed: int, batch_size: int, scale: str | None = None) -> dict[str, Any]:
    """Every explainer of ``case`` under both removal operators: per removal, the comparison and its seconds
    (``scale``: the option ``scale``, where given; None keeps the package's default)."""
    options = {**case.options, **({"scale": scale} if scale is not None else {})}
    out: dict[str, Any] = {"model": case.name, "label": case.label, **case.record, "scale": scale, "removals": {}}
    for removal in REMOVALS:
        print(f"[{case.name}] compare_explanations, removal={removal}", flush=True)
        started = time.perf_counter()
        comparison = af.compare_explanations(
            case.model, case.inputs, case.explainers, seed=seed, batch_size=batch_size, removal=removal, **options
        )
        out["removals"][removal] = {"seconds": time.perf_counter() - started, **comparison.to_dict()}
    return out


def explainer_costs(case: Case, batch_size: int) -> dict[str, Any]:
    """CPU seconds of each explainer of ``case`` through ``af.explain`` over its inputs, and as a multiple of one
    plain forward pass of the model over the same inputs (no gradients, ``batch_size`` rows per pass), both timed
    in this process; the least of two timings of the pass."""
    net = case.model.module
    plain = {key: value for key, value in case.inputs.items() if key != "special_tokens_mask"}
    count = int(plain["input_ids"].shape[0])

    def forward() -> None:
        with torch.no_grad():
            for start in range(0, count, batch_size):
                net(**{key: value[start : start + batch_size] for key, value in plain.items()})

    def cpu(run: Callable[[], Any]) -> float:
        started = time.process_time()
        run()
        return time.process_time() - started

    forward()  # warm-up
    base = min(cpu(forward) for _ in range(2))
    costs: dict[str, Any] = {"forward_cpu_seconds": base, "explainers": {}}
    for name in case.explainers:
        print(f"[{case.name}] cost of {name}", flush=True)
        seconds = cpu(lambda name=name: af.explain(case.model, case.inputs, name, batch_size=batch_size, **case.options))
        costs["explainers"][name] = {"cpu_seconds": seconds, "forward_passes": seconds / base}
    return costs


def markdown(result: dict[str, Any]) -> str:
    """The REPRODUCTION.md section: per model and removal operator, every explainer's two gains with intervals."""
    first = next(iter(result["models"][0]["removals"].values()))["reports"]
    options = next(iter(first.values()))["options"]
    title = result.get("title", "Which explanation clears the bar (ERASER against random orderings)")
    lines = [f"## {title}", ""]
    lines += [_run_line(run) for run in runs(result)]
    lines += [
        "",
        "Test sentences drawn at random with the seed. Each cell: the mean gain in p_ŷ over "
        f"{options['random_orderings']} random orderings of the same tokens (comprehensiveness: explainer − random; "
        "sufficiency: random − explainer), its 95% bootstrap interval, and the verdict against the margin "
        f"{options['comprehensiveness_threshold']:g} (bins {options['aopc_bins']}); in brackets the raw ERASER mean "
        "(comprehensiveness: higher is better; sufficiency: lower is better). Ranked as `compare_explanations` ranks.",
        "",
    ]
    for model in result["models"]:
        lines.append(f"### {model['label']} ({_accuracy(model)}; {model['audited']} test sentences)")
        lines.append("")
        if model.get("note"):
            lines += [model["note"], ""]
        lines.append("| removal | rank | explainer | comprehensiveness gain | sufficiency gain | verdict |")
        lines.append("|---|---|---|---|---|---|")
        for removal, comparison in model["removals"].items():
            for rank, name in enumerate(comparison["ranking"], start=1):
                report = comparison["reports"][name]
                cells = [_cell(report["checks"][check]) for check in ("comprehensiveness", "sufficiency")]
                verdict = "**passes**" if report["passed"] else "fails"
                lines.append(f"| {removal} | {rank} | {name} | {cells[0]} | {cells[1]} | {verdict} |")
        lines.append("")
        seconds = ", ".join(f"{removal} {c['seconds']:.0f} s" for removal, c in model["removals"].items())
        lines.append(f"Time per comparison (the explainers above, wall): {seconds}.")
        lines.append("")
        if model.get("costs"):
            lines.append(_cost_line(model["costs"]))
            lines.append("")
    return "\n".join(lines)


def _cost_line(costs: dict[str, Any]) -> str:
    """Each explainer's CPU time over the audited inputs as a multiple of one plain forward pass over them."""
    cells = ", ".join(f"`{name}` {cost['forward_passes']:.1f}×" for name, cost in costs["explainers"].items())
    base = costs["forward_cpu_seconds"]
    return f"Cost of each explainer (`af.explain`, CPU time) in forward passes over the same inputs ({base:.2f} s): {cells}."


def runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs behind the rows, each naming its models (a result of one run may have ``run`` alone)."""
    return result.get("runs") or [{**result["run"], "models": [model["model"] for model in result["models"]]}]


def _run_line(run: dict[str, Any]) -> str:
    cpu = f", {run['cpu_seconds'] / 60:.0f} CPU-min" if "cpu_seconds" in run else ""
    return (
        f"* Rows of {', '.join(run['models'])}: `{run['command']}` ({run['seconds'] / 60:.0f} min{cpu} on "
        f"{run['machine']}; torch {run['versions']['torch']}, transformers {run['versions']['transformers']}; "
        f"seed {run['seed']})."
    )


def _accuracy(model: dict[str, Any]) -> str:
    if "test_accuracy" in model:
        return f"test accuracy {model['test_accuracy']:.2f}"
    return f"accuracy {model['audited_accuracy']:.2f} on the audited sentences"


def _cell(check: dict[str, Any]) -> str:
    low, high = check["interval"]
    raw = check["details"]["mean"]
    interval = f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else "[no interval]"
    mark = {"passed": "✓", "failed": "✗"}.get(check["verdict"], "?")
    return f"{check['statistic']:.3f} {interval} {mark} ({raw:.3f})"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reproduce.explanations", description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding sst/ (default: %(default)s)")
    p.add_argument("--models", nargs="*", choices=tuple(MODELS), default=list(MODELS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N sentences of every split (smoke runs)")
    p.add_argument("--epochs", type=int, default=4, help="BiLSTM training epochs (as the reproduction)")
    p.add_argument("--bilstm-sentences", type=int, default=200, help="test sentences for the BiLSTM")
    p.add_argument("--minilm-sentences", type=int, default=100, help="test sentences for MiniLM")
    p.add_argument("--minilm-explainers", nargs="*", choices=af.EXPLAINER_NAMES, default=list(CLASSIC))
    p.add_argument("--minilm-train", type=int, default=2000, help="SST training sentences for fine-tuning MiniLM")
    p.add_argument("--smollm2-sentences", type=int, default=16, help="test sentences for SmolLM2 (zero-shot)")
    p.add_argument("--smollm2-explainers", nargs="*", choices=af.EXPLAINER_NAMES, default=list(SMOLLM2_EXPLAINERS))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--scale", default="probability", help="the option scale ('margin', 'probability'); default: 0.2's probabilities"
    )
    p.add_argument("--costs", action="store_true", help="also time each explainer against one forward pass")
    p.add_argument("--section", default="explanations", help="the section of --results to write")
    p.add_argument("--title", default=None, help="the section's heading (default: the reproduction's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=Path("reports/explanations.json"))
    p.add_argument("--html", type=Path, default=Path("reports/explanations.html"))
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "REPRODUCTION.md")
    p.add_argument("--from-json", type=Path, help="only rewrite the HTML and the Markdown section from this JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = json.loads(args.from_json.read_text(encoding="utf-8")) if args.from_json else run(args, argv)
    _write_html(args.html, result)
    write_section(args.results, args.section, markdown(result))
    print(markdown(result))
    return 0


def run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """Train and compare every model of ``args.models``; the JSON-ready result (written after every model)."""
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    started = (time.perf_counter(), time.process_time())
    dataset = load_sst(args.data).limited(args.limit)
    result: dict[str, Any] = {"models": [], **({"title": args.title} if args.title else {})}
    for name in args.models:
        case = MODELS[name](args, dataset)
        result["models"].append(explain_model(case, args.seed, args.batch_size, args.scale))
        if args.costs:
            result["models"][-1]["costs"] = explainer_costs(case, args.batch_size)
        result["runs"] = [_run_record(args, argv, [model["model"] for model in result["models"]], started)]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")  # after every model: a long run keeps it
    return result


def _run_record(
    args: argparse.Namespace, argv: list[str] | None, models: list[str], started: tuple[float, float]
) -> dict[str, Any]:
    """This run: its command, the models it compared, its wall and CPU seconds since ``started``, machine, versions."""
    return {
        "command": "python -m benchmarks.reproduce.explanations " + " ".join(sys.argv[1:] if argv is None else argv),
        "models": models,
        "seed": args.seed,
        "seconds": time.perf_counter() - started[0],
        "cpu_seconds": time.process_time() - started[1],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "versions": environment(),
    }


def _write_html(path: Path, result: dict[str, Any]) -> None:
    from pytest_attnfaith.report.html import render_html
    from pytest_attnfaith.report.schema import session_document

    tests = {
        f"SST::{model['model']}::removal={removal}": list(comparison["reports"].values())
        for model in result["models"]
        for removal, comparison in model["removals"].items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(session_document(tests)), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
