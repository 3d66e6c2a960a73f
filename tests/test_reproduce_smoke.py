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
