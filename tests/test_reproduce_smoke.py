"""The reproduction command (``python -m benchmarks.reproduce``) on a tiny slice of the real data, so it cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.reproduce.__main__ import DEFAULT_DATA, main

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "sst" / "sst_dataset.csv").is_file(), reason=f"no data at {DEFAULT_DATA}")


@pytest.mark.slow
def test_reproduce_command_writes_tables_beside_the_paper_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    argv = [
        "--data", str(DEFAULT_DATA), "--limit", "12", "--epochs", "1", "--permutations", "3", "--track-dev", "4",
        "--skip-transformer", "--skip-gap", "--threads", "1",
        "--json", str(out / "r.json"), "--html", str(out / "r.html"), "--markdown", str(out / "r.md"),
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((out / "r.json").read_text())
    assert [(m["dataset"], m["model"]) for m in result["models"]] == [
        (dataset, model) for dataset in ("SST", "AG News") for model in ("bilstm", "average", "diversity")
    ]
    for record in result["models"]:
        report = record["report"]
        assert set(report["checks"]) == {"gradient", "loo", "permutation", "adversarial", "uniform", "erasure"}
        assert set(report["answers"]) == {"used", "agrees", "unique"}
        assert {"mean", "std", "fraction_significant"} <= set(report["checks"]["gradient"]["details"])
        assert record["audited"] == 12
    assert "dev_tau_gradient" in result["models"][0]["history"][0]
    tables = (out / "r.md").read_text()
    assert "0.35 ± 0.21 (0.49)" in tables and "0.37 ± 0.15 (0.80)" in tables
    page = (out / "r.html").read_text()
    assert page.count("<svg") == 6 and "median permutation TVD" in page


def test_reproduce_command_rejects_a_missing_data_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not found: pass --data"):
        main(["--data", str(tmp_path), "--skip-transformer", "--datasets", "sst"])


def test_transformer_training_sample_holds_both_sst_classes_although_the_file_is_sorted_by_label() -> None:
    from benchmarks.reproduce.data import load_sst

    train = load_sst(DEFAULT_DATA).train
    assert sum(train.head(500).labels) / 500 > 0.9  # the file's first sentences are nearly all positive
    assert 0.4 < sum(train.sample(500, seed=0).labels) / 500 < 0.6


def test_only_transformer_excludes_skip_transformer(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--only-transformer", "--skip-transformer"])
    assert "exclude each other" in capsys.readouterr().err


@pytest.mark.slow
def test_only_transformer_fine_tunes_minilm_and_audits_layers_heads_and_rollout(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    argv = [
        "--data", str(DEFAULT_DATA), "--only-transformer", "--limit", "40",
        "--transformer-train-limit", "8", "--transformer-audit-limit", "2",
        "--transformer-adversarial-steps", "2", "--head-permutations", "2", "--threads", "1",
        "--json", str(out / "r.json"), "--html", str(out / "r.html"), "--markdown", str(out / "r.md"),
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((out / "r.json").read_text())
    assert result["models"] == [] and result["transformer"]["trained_on"] == 8
    audit = result["transformer"]["audit"]
    heads = {(row["layer"], row["head"]) for row in audit["per_head"]["per_head"]}
    assert heads == {(layer, head) for layer in range(6) for head in (*range(12), "all")}
    assert audit["rollout"]["options"]["aggregation"] == "rollout"
    assert "MiniLM fine-tuned on SST" in (out / "r.md").read_text()


@pytest.mark.slow
def test_explanation_reproduction_compares_every_explainer_under_both_removals(tmp_path: Path) -> None:
    from benchmarks.reproduce import explanations

    out = tmp_path / "reports"
    argv = [
        "--data", str(DEFAULT_DATA), "--limit", "60", "--epochs", "1", "--models", "bilstm", "--bilstm-sentences", "6",
        "--threads", "1", "--json", str(out / "e.json"), "--html", str(out / "e.html"), "--results", str(out / "R.md"),
    ]  # fmt: skip
    assert explanations.main(argv) == 0
    result = json.loads((out / "e.json").read_text())
    (model,) = result["models"]
    assert model["audited"] == 6 and set(model["removals"]) == {"delete", "mask"}
    for comparison in model["removals"].values():
        assert sorted(comparison["ranking"]) == sorted(name for name in explanations.CLASSIC if name != "rollout")
    section = (out / "R.md").read_text()
    assert section.startswith("<!-- begin explanations -->") and "| mask | 1 |" in section
    assert 'class="leaderboard"' in (out / "e.html").read_text()
