"""The ``attnfaith audit`` command: exit status 0 / 1 / 2, its reports, and both kinds of MODEL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pytest_attnfaith.cli import main
from pytest_attnfaith.zoo import VOCAB, ZooModel, sentiment_task

FACTORY_MODULE = "attnfaith_cli_models"
FAST = ["--checks", "permutation,uniform,erasure", "--option", "permutations=8"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a factory module (zoo models, known verdicts) and a JSONL file of token ids."""
    (tmp_path / f"{FACTORY_MODULE}.py").write_text(
        textwrap.dedent(
            """
            import torch
            import pytest_attnfaith as af
            from pytest_attnfaith.zoo import ZooModel

            def faithful():
                return af.wrap(ZooModel("faithful"), attention="attn", embeddings="embed")

            def unused():
                return af.wrap(ZooModel("unused"), attention="attn", embeddings="embed")

            def plain():
                return torch.nn.Linear(2, 2)

            def raises():
                raise RuntimeError("checkpoint missing: model.pt")

            def pickled():
                return torch.load("pickled.pt")  # weights_only=True (torch's default) refuses a pickled module

            class Broken(ZooModel):
                def forward(self, input_ids, attention_mask=None):
                    raise RuntimeError("shape mismatch in the head")

            def broken():
                return af.wrap(Broken("faithful"), attention="attn", embeddings="embed")

            NOT_CALLABLE = 3
            """
        )
    )
    task = sentiment_task(12, seed=5)
    rows = [
        [i for i, keep in zip(ids, mask, strict=True) if keep]
        for ids, mask in zip(task.input_ids.tolist(), task.attention_mask.tolist(), strict=True)
    ]
    (tmp_path / "inputs.jsonl").write_text("".join(json.dumps({"input_ids": ids, "label": 1}) + "\n" for ids in rows))
    rows[1][2] = VOCAB + 57
    (tmp_path / "foreign.jsonl").write_text("".join(json.dumps({"input_ids": ids}) + "\n" for ids in rows))
    torch.save(ZooModel("faithful"), tmp_path / "pickled.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, FACTORY_MODULE, raising=False)
    return tmp_path


def only_report(path: Path) -> dict:
    document = json.loads(path.read_text())
    (reports,) = document["tests"].values()
    (report,) = reports
    return report


def test_faithful_factory_model_exits_0_and_writes_the_session_json(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["audit", f"{FACTORY_MODULE}:faithful", "inputs.jsonl", "--json", "out.json", *FAST])
    assert status == 0
    report = only_report(workdir / "out.json")
    assert report["passed"] is True
    assert set(report["checks"]) == {"permutation", "uniform", "erasure"}
    assert report["instances"]["count"] == 12
    assert "passed" in capsys.readouterr().out


def test_decorative_factory_model_exits_1_naming_the_failed_question(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["audit", f"{FACTORY_MODULE}:unused", "inputs.jsonl", *FAST])
    assert status == 1
    assert "FAILED (used answered no)" in capsys.readouterr().out


def test_flags_and_generic_options_reach_the_audit(workdir: Path) -> None:
    argv = ["audit", f"{FACTORY_MODULE}:faithful", "inputs.jsonl", "--json", "out.json", "--seed", "3", "--epsilon", "0.1"]
    argv += ["--require", "used", "--checks", "uniform", "--option", "worst=1", "--limit", "6"]
    assert main(argv) == 0
    report = only_report(workdir / "out.json")
    assert report["options"]["seed"] == 3
    assert report["options"]["epsilon"] == 0.1
    assert report["options"]["worst"] == 1
    assert report["required"] == ["used"]
    assert report["instances"]["count"] == 6


def test_html_report_is_written(workdir: Path) -> None:
    status = main(["audit", f"{FACTORY_MODULE}:unused", "inputs.jsonl", "--html", "report.html", "--checks", "uniform"])
    assert status == 1
    page = (workdir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert f"{FACTORY_MODULE}:unused" in page


@pytest.mark.parametrize(
    ("model", "inputs", "extra", "message"),
    [
        ("{m}:faithful", "missing.jsonl", [], "missing.jsonl does not exist"),
        ("{m}:nope", "inputs.jsonl", [], "has no attribute 'nope'"),
        ("{m}:NOT_CALLABLE", "inputs.jsonl", [], "expected a callable"),
        ("{m}:plain", "inputs.jsonl", [], "returned a Linear"),
        ("no_such_module_xyz:build", "inputs.jsonl", [], "cannot import 'no_such_module_xyz'"),
        ("not a model", "inputs.jsonl", [], "neither a folder nor module:factory"),
        ("{m}:faithful", "inputs.jsonl", ["--option", "epsilo=0.1"], "did you mean 'epsilon'"),
        ("{m}:faithful", "inputs.jsonl", ["--option", "permutations"], "expected KEY=VALUE"),
        ("{m}:faithful", "inputs.jsonl", ["--epsilon", "2"], "option epsilon=2 is not valid"),
        ("{m}:faithful", "texts.txt", [], "holds text but the model has no tokenizer"),
        ("{m}:faithful", "broken.jsonl", [], "broken.jsonl:2 is not valid JSON"),
        ("{m}:faithful", "empty.txt", [], "has no inputs"),
        ("{m}:faithful", "inputs.jsonl", ["--json", "nowhere/out.json"], "folder nowhere does not exist"),
        ("{m}:raises", "inputs.jsonl", [], "MODEL attnfaith_cli_models:raises raised RuntimeError: checkpoint missing: model.pt"),
        (
            "{m}:pickled",
            "inputs.jsonl",
            [],
            "MODEL attnfaith_cli_models:pickled raised UnpicklingError: Weights only load failed",
        ),
        ("{m}:broken", "inputs.jsonl", [], "the audit raised RuntimeError: shape mismatch in the head"),
        (
            "{m}:faithful",
            "foreign.jsonl",
            [],
            f"foreign.jsonl:2: token id {VOCAB + 57} is outside the model's vocabulary; expected ids 0..{VOCAB - 1}",
        ),
        ("{m}:faithful", "inputs.jsonl", ["--option", "device=cuda"], "option device='cuda' is not available on this machine"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(
    workdir: Path, capsys: pytest.CaptureFixture[str], model: str, inputs: str, extra: list[str], message: str
) -> None:
    (workdir / "texts.txt").write_text("a fine film\n")
    (workdir / "broken.jsonl").write_text('{"input_ids": [3, 4]}\n{"input_ids": [3,\n')
    (workdir / "empty.txt").write_text("\n \n")
    if "device=cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    status = main(["audit", model.format(m=FACTORY_MODULE), inputs, *extra])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("attnfaith: error: ")
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_traceback_flag_shows_where_an_error_came_from(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", f"{FACTORY_MODULE}:raises", "inputs.jsonl", "--traceback"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and 'raise RuntimeError("checkpoint missing: model.pt")' in err
    assert err.strip().splitlines()[-1].startswith("attnfaith: error: MODEL")


@pytest.mark.parametrize(("extra", "status"), [([], 1), (["--option", "inconclusive=pass"], 0)])
def test_an_inconclusive_verdict_exits_as_the_inconclusive_option_says(
    workdir: Path, capsys: pytest.CaptureFixture[str], extra: list[str], status: int
) -> None:
    argv = ["audit", f"{FACTORY_MODULE}:faithful", "inputs.jsonl", "--limit", "2", "--checks", "uniform", "--json", "out.json"]
    assert main([*argv, *extra]) == status
    assert only_report(workdir / "out.json")["verdicts"]["used"] == "inconclusive"
    assert "inconclusive" in capsys.readouterr().out


def test_console_process_exits_2_on_bad_input_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest_attnfaith.cli", "audit", "pkg:factory", str(tmp_path / "none.txt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def tiny_bert_folder(folder: Path) -> Path:
    """A random 2-layer BERT sequence classifier and a word-level tokenizer, saved as a user would."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fine", "film", "awful", "plot", "the", "was", "great"]
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(words)})
    config = BertConfig(
        vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=2
    )
    config.architectures = ["BertForSequenceClassification"]
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_hugging_face_folder_with_text_inputs_shows_its_tokens(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    folder = tiny_bert_folder(tmp_path / "model")
    (tmp_path / "texts.txt").write_text("a fine film\nthe plot was awful\n\nthe film was great\n")
    status = main(["audit", str(folder), str(tmp_path / "texts.txt"), "--json", str(tmp_path / "out.json"), *FAST])
    assert status in (0, 1)
    report = only_report(tmp_path / "out.json")
    assert report["model"]["class"] == "BertForSequenceClassification"
    assert report["instances"]["count"] == 3
    assert report["instances"]["tokens"][1] == ["the", "plot", "was", "awful"]
    assert report["passed"] is (status == 0)


def test_every_from_pretrained_of_the_command_refuses_remote_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transformers = pytest.importorskip("transformers")
    folder = tiny_bert_folder(tmp_path / "model")
    (tmp_path / "texts.txt").write_text("a fine film\nthe plot was awful\n")
    calls: list[tuple[str, object]] = []
    for cls in (transformers.AutoConfig, transformers.AutoModelForSequenceClassification, transformers.AutoTokenizer):
        original = cls.from_pretrained

        def spy(*args, _original=original, _name=cls.__name__, **kwargs):  # the real loader, recording its arguments
            calls.append((_name, kwargs.get("trust_remote_code", "not given")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    assert main(["audit", str(folder), str(tmp_path / "texts.txt"), *FAST]) in (0, 1)
    assert {name for name, _ in calls} == {"AutoConfig", "AutoModelForSequenceClassification", "AutoTokenizer"}
    assert all(value is False for _, value in calls)


def test_a_folder_that_needs_remote_code_exits_2_without_running_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    folder = tmp_path / "custom"
    folder.mkdir()
    auto_map = {"AutoConfig": "configuration_custom.CustomConfig", "AutoModel": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "my-custom-model", "auto_map": auto_map}))
    (folder / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    (tmp_path / "texts.txt").write_text("a fine film\n")
    assert main(["audit", str(folder), str(tmp_path / "texts.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"attnfaith: error: cannot read the config in {folder}: The repository") and "custom code" in err
    assert "remote code ran" not in err and len(err.strip().splitlines()) == 1


def test_folder_without_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "texts.txt").write_text("a fine film\n")
    assert main(["audit", str(tmp_path), str(tmp_path / "texts.txt")]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_an_inconclusive_check_is_one_line_of_stderr_without_pythons_warning_format(workdir: Path) -> None:
    """0.2 printed ``…/cli.py:128: InconclusiveWarning: …`` and the source line for each inconclusive check."""
    command = ["audit", f"{FACTORY_MODULE}:faithful", "inputs.jsonl", "--limit", "2", "--checks", "uniform,erasure"]
    here = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest_attnfaith.cli", *command],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **here},
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    inconclusive = [line for line in lines if "INCONCLUSIVE" in line]
    assert len(inconclusive) == 2 and all(line.startswith("attnfaith: ") for line in inconclusive)
    assert not any("Warning:" in line or "cli.py" in line or "warnings.warn" in line for line in lines), result.stderr
