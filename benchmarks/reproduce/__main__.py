"""``python -m benchmarks.reproduce``: one command for the whole reproduction (see ``docs/reproducing.md``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.reproduce import report
from benchmarks.reproduce.data import load_agnews, load_sst
from benchmarks.reproduce.experiments import GAP_VARIANT, VARIANTS, Settings, run_variant
from pytest_attnfaith.audit import environment

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reproduce", description=__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding sst/ and agnews/ (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=4, help="training epochs of each BiLSTM / average model (J&W: 8)")
    p.add_argument("--datasets", nargs="*", choices=("sst", "agnews"), default=["sst", "agnews"])
    p.add_argument("--limit", type=int, default=None, help="use only the first N sentences of every split (smoke runs)")
    p.add_argument("--audit-limit", type=int, default=None, help="audit N random test sentences (seeded; default: all)")
    p.add_argument("--permutations", type=int, default=100, help="permutations per instance (J&W: 100)")
    p.add_argument("--batch-size", type=int, default=1024, help="audit batch size")
    p.add_argument("--track-dev", type=int, default=200, help="SST dev sentences audited after every epoch (0: off)")
    p.add_argument("--skip-gap", action="store_true", help="skip the BiLSTM with MiniLM-initialised embeddings")
    p.add_argument("--skip-transformer", action="store_true", help="skip fine-tuning and auditing MiniLM")
    p.add_argument("--only-transformer", action="store_true", help="only fine-tune and audit MiniLM (no BiLSTM models)")
    p.add_argument("--transformer-train-limit", type=int, default=2000, help="SST training sentences for MiniLM")
    p.add_argument("--transformer-epochs", type=int, default=1)
    p.add_argument("--transformer-audit-limit", type=int, default=24, help="test sentences audited per layer and head")
    p.add_argument("--transformer-adversarial-steps", type=int, default=30, help="adversarial search steps for MiniLM")
    p.add_argument("--head-permutations", type=int, default=20, help="permutations per instance in the MiniLM audits")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--json", type=Path, default=Path("reports/reproduce.json"))
    p.add_argument("--html", type=Path, default=Path("reports/reproduce.html"))
    p.add_argument("--markdown", type=Path, default=None, help="also write the tables as Markdown")
    args = p.parse_args(argv)
    if args.only_transformer:
        if args.skip_transformer:
            p.error("--only-transformer and --skip-transformer exclude each other")
        args.datasets, args.skip_gap = [], True
    return args


def _minilm(args: argparse.Namespace) -> str | None:
    if args.skip_gap and args.skip_transformer:
        return None
    from benchmarks.reproduce.transformer import minilm_dir

    return minilm_dir()


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # the conicity penalty drives some hidden units to denormal magnitudes: slow on CPU
    settings = Settings(
        args.seed, args.epochs, args.audit_limit, args.permutations, args.batch_size, _minilm(args), args.head_permutations
    )
    started = time.perf_counter()
    models: list[dict[str, Any]] = []
    result: dict[str, Any] = {"models": models, "transformer": None, "run": _run_record(args, 0.0)}
    for name in args.datasets:
        dataset = (load_sst(args.data) if name == "sst" else load_agnews(args.data, args.seed)).limited(args.limit)
        track = args.track_dev if name == "sst" else 0
        for variant in VARIANTS:
            tracked = variant.key in ("bilstm", "diversity")
            models.append(run_variant(variant, dataset, settings, track=track if tracked else 0))
            write_outputs(args, result, partial=True)
        if name == "sst" and not args.skip_gap:
            models.append(run_variant(GAP_VARIANT, dataset, settings, checks=("gradient", "loo"), track=track))
            write_outputs(args, result, partial=True)
    if not args.skip_transformer:
        result["transformer"] = _transformer(args, settings)
    result["run"] = _run_record(args, time.perf_counter() - started)
    return result


def _transformer(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from benchmarks.reproduce.transformer import audit_transformer, fine_tune

    assert settings.minilm_dir is not None
    dataset = load_sst(args.data).limited(args.limit)
    print("[MiniLM] fine-tuning on SST", flush=True)
    model, tokenizer, record = fine_tune(
        dataset, settings.minilm_dir, args.seed, args.transformer_epochs, args.transformer_train_limit
    )
    print(f"[MiniLM] {record}", flush=True)
    limit = min(args.transformer_audit_limit, len(dataset.test.words))
    return {**record, "audit": audit_transformer(model, tokenizer, dataset, settings, limit, args.transformer_adversarial_steps)}


def _run_record(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    return {
        "command": "python -m benchmarks.reproduce " + " ".join(sys.argv[1:]),
        "seed": args.seed,
        "epochs": args.epochs,
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "versions": environment(),
    }


def write_outputs(args: argparse.Namespace, result: dict[str, Any], partial: bool = False) -> None:
    """JSON (after every model, so a long run keeps what it finished), then at the end Markdown and HTML."""
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**result, "partial": partial}, indent=1), encoding="utf-8")
    if partial:
        return
    for path, text in (
        (args.html, report.html_page(result)),
        (args.markdown, report.markdown(result)),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    _write_audits_page(args.html.with_name(args.html.stem + "-audits.html"), result)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = run(args)
    write_outputs(args, result)
    print(report.markdown(result))
    return 0


def _write_audits_page(path: Path, result: dict[str, Any]) -> None:
    """Every audit through the plugin's own HTML report (one "test" per dataset and model)."""
    from pytest_attnfaith.report.html import render_html
    from pytest_attnfaith.report.schema import session_document

    tests = {f"{m['dataset']}::{m['model']}": [m["report"]] for m in result["models"]}
    if result.get("transformer"):
        tests.update(
            {f"MiniLM::{name}": [result["transformer"]["audit"][name]] for name in ("last_layer", "per_head", "rollout")}
        )
    path.write_text(render_html(session_document(tests)), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
