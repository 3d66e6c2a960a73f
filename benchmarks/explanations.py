"""Speed of the explanation checks and explainers against the plain passes they consist of.

One command, one process, one torch thread (writes its section of ``benchmarks/RESULTS.md``):

    nice -n 10 .venv/bin/python -m benchmarks.explanations

(e) ``comprehensiveness`` + ``sufficiency`` (5 bins, 10 random orderings, deletion and masking) through
    ``af.audit_explanation`` — session, reference pass, ranking, every edited row, intervals, report — vs
    plain forward passes of the same edited rows (recorded from the audit, built into tensors before the
    clock starts, run ``batch_size`` per pass in the same length groups);
(f) ``integrated_gradients`` (50 fixed steps, ``ig_tolerance=None``; the cost of convergence is
    ``benchmarks.ig_convergence``'s) through ``af.explain`` vs 50 batched gradient passes (forward with a
    leaf at the embeddings, backward, ``batch_size // 4`` rows per pass, as the explainer runs them), and vs
    Captum's ``LayerIntegratedGradients`` on the same model, inputs, baseline and method (values compared);
(g) ``suggest_explainers``: the cost of naming the explainers that pass in a failing ``assert_attention_faithful``.

Models: the trained J&W BiLSTM of ``benchmarks.speed`` (100 held-out sentences of 10–24 tokens) and the packaged
MiniLM (16 sentences of 14 tokens; (f) only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pytest_attnfaith as af
from benchmarks.sections import write_section
from benchmarks.speed import held_out, machine, minilm, row, timed, trained_bilstm, wrapped
from pytest_attnfaith.adapters import Batch, as_attention_model
from pytest_attnfaith.metrics import output_distribution
from pytest_attnfaith.session import Context
from pytest_attnfaith.zoo import BiLSTMClassifier, sentiment_task, train_classifier

COMMAND = "nice -n 10 .venv/bin/python -m benchmarks.explanations"
TARGETS = {"eraser": 1.2, "ig": 1.2}
REPEATS = 5
MINILM_MASK = 103  # [MASK] of the packaged MiniLM's tokenizer
SUGGESTED = ("gradient_x_input", "integrated_gradients", "leave_one_out")


# -- (e) ERASER ------------------------------------------------------------------------------------
@contextlib.contextmanager
def recorded_removals() -> Iterator[list[tuple[Context, torch.Tensor, torch.Tensor, str]]]:
    """Every ``Context.run_removed`` call of the audits inside the block: (context, instances, removed, how)."""
    calls: list[tuple[Context, torch.Tensor, torch.Tensor, str]] = []
    original = Context.run_removed

    def recording(self: Context, instances: torch.Tensor, removed: torch.Tensor, how: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((self, instances.clone(), removed.clone(), how))
        return original(self, instances, removed, how, *args, **kwargs)

    Context.run_removed = recording  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        Context.run_removed = original  # type: ignore[method-assign]


def plain_batches(calls: list[tuple[Context, torch.Tensor, torch.Tensor, str]], size: int) -> list[Batch]:
    """The edited rows of the recorded calls as model inputs, ``size`` rows per batch, deleted rows grouped by length
    (as the audit runs them)."""
    batches = []
    for context, instances, removed, how in calls:
        batch = context.batch
        if how == "mask":
            groups = [torch.arange(len(instances))]
        else:
            lengths = batch.length - removed.sum(dim=1)
            groups = [(lengths == length).nonzero().squeeze(1) for length in lengths.unique().tolist()]
        for group in groups:
            for start in range(0, len(group), size):
                rows = group[start : start + size]
                edited = (
                    batch.replaced(instances[rows], removed[rows], context.removal_token("removal"))
                    if how == "mask"
                    else batch.without(instances[rows], removed[rows])
                )
                batches.append(edited)
    return batches


def per_pass(model: Any, net: torch.nn.Module, batch: Batch, loops: int = 30) -> dict[str, float]:
    """CPU ms of one pass over ``batch``: the adapter's ``forward`` in a session (hooks installed, attention read,
    float64 outputs) and the plain model; the least of ``REPEATS`` timings of ``loops`` passes each."""
    kwargs, adapter_model = batch.model_kwargs(), as_attention_model(model)

    def least(run: Callable[[], Any]) -> float:
        return min(timed(lambda: [run() for _ in range(loops)])[1] for _ in range(REPEATS)) / loops * 1000

    with adapter_model.session(af.Options()):
        adapter_model.forward(batch)
        adapter = least(lambda: adapter_model.forward(batch))
    with torch.no_grad():
        plain = least(lambda: net(**kwargs))
    return {"adapter_ms": adapter, "plain_ms": plain, "rows": batch.size}


def bench_eraser(name: str, net: torch.nn.Module, model: Any, inputs: dict[str, torch.Tensor], mask: int) -> dict[str, Any]:
    """Per removal operator, the least CPU time over ``REPEATS`` runs of the audit and of the plain forwards of its rows
    (the least disturbed run of each, on a shared machine)."""
    results: dict[str, Any] = {"model": name, "instances": int(inputs["input_ids"].shape[0])}
    for removal in ("delete", "mask"):
        options = {"removal": removal, "mask_token_id": mask}
        runs, bases = [], []
        for _ in range(REPEATS):
            with recorded_removals() as calls:
                report, cpu, wall = timed(lambda options=options: af.audit_explanation(model, inputs, "attention", **options))
            batches = plain_batches(calls, af.Options().batch_size)
            inputs_of_passes = [batch.model_kwargs() for batch in batches]

            def forwards(passes: list[dict[str, torch.Tensor]] = inputs_of_passes) -> None:
                with torch.no_grad():
                    for kwargs in passes:
                        net(**kwargs)

            _, base_cpu, base_wall = timed(forwards)
            runs.append((cpu, wall))
            bases.append((base_cpu, base_wall))
        orderings = 1 + af.Options().random_orderings
        results[removal] = {
            "check": {"cpu": min(r[0] for r in runs), "wall": min(r[1] for r in runs)},
            "forwards": {
                "cpu": min(b[0] for b in bases),
                "wall": min(b[1] for b in bases),
                "passes": len(batches),
            },
            "distinct_rows": sum(batch.size for batch in batches),
            "pass": per_pass(model, net, max(batches, key=lambda batch: batch.size)),
            "all_rows": 2 * orderings * len(af.Options().aopc_bins) * results["instances"],
            "verdicts": {check: result.verdict for check, result in report.checks.items()},
        }
    return results


# -- (f) integrated gradients ----------------------------------------------------------------------
def gradient_passes(net: torch.nn.Module, embeddings: torch.nn.Module, inputs: dict[str, Any], repeats: int, size: int) -> None:
    """``repeats`` gradient passes over the inputs, ``size`` rows per pass: p_ŷ (float64) differentiated at a leaf
    that replaces the embeddings' output."""
    leaf: dict[str, torch.Tensor] = {}

    def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        leaf["value"] = output.detach().requires_grad_(True)
        return leaf["value"]

    handle = embeddings.register_forward_hook(hook)
    try:
        count = int(inputs["input_ids"].shape[0])
        for _ in range(repeats):
            for start in range(0, count, size):
                part = {key: value[start : start + size] for key, value in inputs.items()}
                probs = output_distribution(_logits(net(**part)))
                torch.autograd.grad(probs.max(dim=1).values.sum(), leaf["value"])
    finally:
        handle.remove()


def _logits(output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


def bench_ig(
    name: str, net: torch.nn.Module, model: Any, inputs: dict[str, Any], embeddings: torch.nn.Module, mask: int
) -> dict[str, Any]:
    """IG with the mask baseline (``mask`` at every real position: Captum's baseline ids) against the two references."""
    from captum.attr import LayerIntegratedGradients

    plain = {key: value for key, value in inputs.items() if key != "special_tokens_mask"}
    size = max(af.Options().batch_size // 4, 1)
    fixed = {
        "ig_baseline": "mask",
        "mask_token_id": mask,
        "ig_tolerance": None,
    }  # 50 nodes, as Captum's (the adaptive cost: ig_convergence)
    ours, cpu, wall = timed(lambda: af.explain(model, inputs, "integrated_gradients", **fixed))
    _, base_cpu, base_wall = timed(lambda: gradient_passes(net, embeddings, plain, 50, size))

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return output_distribution(_logits(net(input_ids=input_ids, attention_mask=attention_mask)))

    with torch.no_grad():
        label = forward(plain["input_ids"], plain["attention_mask"]).argmax(dim=1)
    real = plain["attention_mask"].bool()
    if "special_tokens_mask" in inputs:
        real &= ~inputs["special_tokens_mask"].bool()
    baseline_ids = torch.where(real, mask, plain["input_ids"])
    lig = LayerIntegratedGradients(forward, embeddings)
    captum: dict[str, Any] = {}
    net.eval()
    count = int(plain["input_ids"].shape[0])
    for batch, internal in (("50 passes of every instance", count), ("default: every step in one pass", None)):
        theirs, c_cpu, c_wall = timed(
            lambda internal=internal: lig.attribute(
                plain["input_ids"],
                baselines=baseline_ids,
                additional_forward_args=(plain["attention_mask"],),
                target=label,
                n_steps=50,
                internal_batch_size=internal,
            )
        )
        difference = float(np.abs(ours - theirs.sum(dim=-1).detach().double().numpy()).max())
        captum[batch] = {"cpu": c_cpu, "wall": c_wall, "max_abs_difference": difference}
    return {
        "model": name,
        "instances": int(plain["input_ids"].shape[0]),
        "tokens": int(plain["input_ids"].shape[1]),
        "rows_per_pass": size,
        "explain": {"cpu": cpu, "wall": wall},
        "gradient_passes": {"cpu": base_cpu, "wall": base_wall},
        "captum": captum,
    }


# -- (g) suggest_explainers ------------------------------------------------------------------------
def bench_suggestions() -> dict[str, Any]:
    train = sentiment_task(2000, length=24, min_length=10, seed=1)
    twin = train_classifier(BiLSTMClassifier(embedding=64, hidden=64, readout="mean"), train, epochs=3)
    inputs = held_out(100)

    def assertion(**options: Any) -> Callable[[], str]:
        def run() -> str:
            try:
                af.assert_attention_faithful(wrapped(twin), inputs, **options)
            except af.AttentionNotFaithful as failure:
                return str(failure).splitlines()[-1]
            return "passed"

        return run

    plain_message, plain_cpu, plain_wall = timed(assertion())
    message, cpu, wall = timed(assertion(suggest_explainers=SUGGESTED))
    return {
        "model": "BiLSTM with mean-pooled readout (attention computed, unused)",
        "assertion": {"cpu": plain_cpu, "wall": plain_wall},
        "with_suggestions": {"cpu": cpu, "wall": wall},
        "suggested": list(SUGGESTED),
        "message": message,
        "plain_message": plain_message,
    }


# -- the section -------------------------------------------------------------------------------------
def _eraser_rows(model: str, removal: str, e: dict[str, Any]) -> list[str]:
    ratio = e["check"]["cpu"] / e["forwards"]["cpu"]
    one = e["pass"]
    cost = row(
        "(e)",
        f'{model}, `removal="{removal}"`: one pass of {one["rows"]} edited rows through the adapter / the plain model',
        f"{one['adapter_ms'] / one['plain_ms']:.2f}× ({one['adapter_ms']:.2f} ms / {one['plain_ms']:.2f} ms)",
    )
    return [
        row(
            "(e)",
            f'{model}: comprehensiveness + sufficiency (`removal="{removal}"`) / plain forwards of the same rows, CPU time',
            f"{ratio:.2f}× ({e['check']['cpu']:.2f} s / {e['forwards']['cpu']:.2f} s; {e['distinct_rows']:,} distinct "
            f"edited rows of {e['all_rows']:,} (instance, bin, ordering) rows, {e['forwards']['passes']} passes)",
            f"≤ {TARGETS['eraser']}×",
            ratio <= TARGETS["eraser"],
        ),
        cost,
    ]


def table(results: dict[str, Any]) -> list[str]:
    lines = ["| | measure | value | target | |", "|---|---|---|---|---|"]
    for model in results["eraser"]:
        for removal in ("delete", "mask"):
            lines.extend(_eraser_rows(model["model"], removal, model[removal]))
    for f in results["ig"]:
        ratio = f["explain"]["cpu"] / f["gradient_passes"]["cpu"]
        lines.append(
            row(
                "(f)",
                f"{f['model']}: integrated gradients (50 steps) / 50 batched gradient passes, CPU time",
                f"{ratio:.2f}× ({f['explain']['cpu']:.2f} s / {f['gradient_passes']['cpu']:.2f} s; "
                f"{f['rows_per_pass']} rows per pass)",
                f"≤ {TARGETS['ig']}×",
                ratio <= TARGETS["ig"],
            )
        )
        for batch, captum in f["captum"].items():
            lines.append(
                row(
                    "(f)",
                    f"{f['model']}: integrated gradients / Captum `LayerIntegratedGradients`, {batch}, CPU time",
                    f"{f['explain']['cpu'] / captum['cpu']:.2f}× ({f['explain']['cpu']:.2f} s / {captum['cpu']:.2f} s; "
                    f"values agree to {captum['max_abs_difference']:.0e})",
                )
            )
    g = results["suggestions"]
    lines.append(
        row(
            "(g)",
            f"failing `assert_attention_faithful` with / without `suggest_explainers={tuple(g['suggested'])}`, CPU time",
            f"{g['with_suggestions']['cpu'] / g['assertion']['cpu']:.2f}× ({g['with_suggestions']['cpu']:.2f} s / "
            f"{g['assertion']['cpu']:.2f} s)",
        )
    )
    return lines


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    load = ", ".join(f"{x:.1f}" for x in info["load_average"])
    e = results["eraser"][0]["delete"]
    return "\n".join(
        [
            "## Explanations: ERASER checks and explainers",
            "",
            f"Command: `{COMMAND}` — one process, torch threads {info['torch_threads']}.",
            "",
            *table(results),
            "",
            f"Machine: {info['nproc']} CPUs ({info['cpu']}), shared, load average {load} at the start. Python "
            f"{info['python']}, torch {info['torch']}, transformers {info['transformers']}.",
            "",
            "Models and inputs: J&W's BiLSTM (`zoo.BiLSTMClassifier`, embedding 64, hidden 64, trained as in (a)–(d); (g) "
            "its mean-pooled twin) on 100 held-out sentences of 10–24 tokens, and the packaged all-MiniLM-L6-v2 with a "
            "seeded binary head on 16 sentences of 14 tokens. (e) the `attention` explainer with the default options "
            f"(bins {list(af.Options().aopc_bins)}, {af.Options().random_orderings} random orderings, batch_size "
            f"{af.Options().batch_size}), the least CPU time of {REPEATS} runs of each side; masking with the pad id "
            "(BiLSTM) and [MASK] (MiniLM); "
            f"BiLSTM verdicts with deletion: {e['verdicts']}. (f) 50 Gauss–Legendre steps, the mask baseline (the "
            "same ids as Captum's `baselines`: pad for the BiLSTM, whose pad embedding is zero, [MASK] for MiniLM).",
            "",
            "Notes. (e) counts the whole audit (reference pass, ranking, random orderings, the bootstrap intervals, the "
            "report) against only the forward passes of the rows it ran; rows that coincide (two bins with the same "
            "⌈q·n⌉ on short sentences) run once, so fewer rows run than (instance, bin, ordering) triples. Deleted rows "
            "run in groups of equal length (each row is exactly T − r long), hence more passes than rows / batch_size. "
            "The row under each ratio times one pass through the adapter (its hooks, the attention row it reads, the "
            "float64 output distribution) against the plain model. What is left of a ratio above it is fixed per "
            "audit (session and reference pass, ranking, the edits, four bootstrap intervals of 9,999 resamples), "
            "which weighs on the BiLSTM, whose 9,262 rows take half a second. The adapter runs Hugging Face models on "
            "their eager attention (to read the weights); on this CPU that was faster than MiniLM's default sdpa "
            "attention, which the plain passes use. "
            "(f) the explainer and the gradient passes run the same number of rows per pass (`batch_size // 4`); the "
            "explainer's rows are (instance, step) pairs, so its passes hold one instance's steps (equal lengths) and "
            "are all full, where the baseline's last pass of each repeat is not. Captum's `internal_batch_size` cannot "
            "go below the number of instances, so it is compared at that size and at its default. (g) the message's "
            "last line: `" + results["suggestions"]["message"].strip() + "`.",
            "",
            "```json",
            json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1, default=float),
            "```",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(Path(__file__).with_name("RESULTS.md")), help="the results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results: dict[str, Any] = {"machine": machine()}
    net, _, _ = trained_bilstm()
    inputs = held_out(100)
    print("running eraser ...", file=sys.stderr, flush=True)
    transformer, encoded = minilm()
    results["eraser"] = [
        bench_eraser("BiLSTM", net, wrapped(net), inputs, 0),
        bench_eraser("MiniLM", transformer, transformer, encoded, MINILM_MASK),
    ]
    print("running integrated gradients ...", file=sys.stderr, flush=True)
    results["ig"] = [
        bench_ig("BiLSTM", net, wrapped(net), inputs, net.embed, 0),
        bench_ig("MiniLM", transformer, transformer, encoded, transformer.get_input_embeddings(), MINILM_MASK),
    ]
    print("running suggestions ...", file=sys.stderr, flush=True)
    results["suggestions"] = bench_suggestions()
    write_section(Path(args.output), "explanations", markdown(results))
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
