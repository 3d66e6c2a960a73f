"""Hugging Face models on degenerate inputs: a row of special tokens only (``tokenizer([""])``) and a row with one
real token never crash a check; through the ``attnfaith`` command too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pytest_attnfaith as af
from pytest_attnfaith import cli

FAST = {"permutations": 10, "adversarial_steps": 20}


def special_only(size: int = 3) -> dict[str, torch.Tensor]:
    """What a BERT tokenizer gives for empty strings: [CLS] [SEP], both special."""
    ids = torch.tensor([[101, 102]] * size)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "special_tokens_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("check", af.CHECK_NAMES)
def test_a_batch_of_special_tokens_only_is_undefined_everywhere(tiny, check: str) -> None:
    report = af.audit(tiny["bert"], special_only(), checks=[check], **FAST)
    result = report.checks[check]
    assert np.isnan(result.per_instance).all() and result.undefined == 3
    assert result.verdict == "inconclusive" and "no instance has two real tokens" in result.note


def test_one_real_token_among_special_tokens_is_counted_not_a_crash(tiny, batch) -> None:
    inputs = {**batch, "special_tokens_mask": torch.zeros_like(batch["input_ids"])}
    inputs["special_tokens_mask"][0, 1:] = 1  # row 0: one real token
    report = af.audit(tiny["llama"], inputs, **FAST)
    for result in report.checks.values():
        assert np.isnan(result.per_instance[0]) and not np.isnan(result.per_instance[1:]).any(), result.name


def test_the_command_reports_an_undecidable_batch_instead_of_crashing(tiny, tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    tiny["bert"].save_pretrained(folder)
    rows = tmp_path / "empty.jsonl"
    rows.write_text('{"input_ids": [101, 102], "special_tokens_mask": [1, 1]}\n' * 2, encoding="utf-8")
    out = tmp_path / "report.json"
    status = cli.main(["audit", str(folder), str(rows), "--json", str(out), "--option", "permutations=5"])
    assert status == 1  # inconclusive counts as a failure by default
    (report,) = next(iter(json.loads(out.read_text(encoding="utf-8"))["tests"].values()))
    assert set(report["verdicts"].values()) == {"inconclusive"}
