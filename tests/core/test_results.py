"""Reports: per-token values per instance are stored compactly and written as plain lists."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith.results import RaggedRows
from pytest_attnfaith.zoo import ZooModel, sentiment_task


def test_ragged_rows_index_like_a_list_of_lists() -> None:
    rows = RaggedRows(np.array([0.5, 0.25, 0.25, 1.0]), np.array([3, 0, 1]))
    assert len(rows) == 3
    assert rows[0] == [0.5, 0.25, 0.25] and rows[1] == [] and rows[-1] == [1.0]
    assert rows[1:] == [[], [1.0]]
    assert rows == [[0.5, 0.25, 0.25], [], [1.0]] and rows != [[0.5], [], [1.0]]
    with pytest.raises(IndexError):
        rows[3]


def test_report_keeps_attention_and_importance_compact_and_writes_lists() -> None:
    inputs = sentiment_task(8, seed=3).inputs()
    report = af.audit(af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed"), inputs, checks=["gradient"])
    attention, importance = report.instances["attention"], report.checks["gradient"].details["importance"]
    real = torch.as_tensor(inputs["attention_mask"]).bool()
    assert isinstance(attention, RaggedRows) and attention.values.dtype == np.float32
    assert [len(row) for row in attention] == real.sum(dim=1).tolist()
    assert all(abs(sum(row) - 1.0) < 1e-5 for row in attention)
    written = json.loads(report.to_json())
    assert written["instances"]["attention"] == attention.tolist()
    assert written["checks"]["gradient"]["details"]["importance"] == importance.tolist()


def test_a_check_result_and_a_report_print_one_line_as_scipys_results_do() -> None:
    report = af.audit(af.wrap(ZooModel("unused"), attention="attn", embeddings="embed"), sentiment_task(24, seed=1).inputs())
    uniform = report.checks["uniform"]
    low, high = uniform.interval
    assert repr(uniform) == (
        f"CheckResult(name='uniform', statistic={uniform.statistic:.4g}, interval=({low:.4g}, {high:.4g}), "
        f"verdict='{uniform.verdict}')"
    )
    assert repr(report) == (f"Report(passed=False, verdicts={report.verdicts!r}, checks={list(report.checks)!r}, instances=24)")
    assert str(report) == report.summary() and str(report).startswith("attention faithfulness: FAILED")
