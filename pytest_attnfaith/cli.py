"""The ``attnfaith`` command: audit a model's attention outside pytest.

    attnfaith audit MODEL INPUTS [--checks ...] [--epsilon E] [--seed N] [--option KEY=VALUE ...]
                                 [--json PATH] [--html PATH]

MODEL is a Hugging Face model folder (loaded offline) or ``module:factory``, a callable that
returns ``af.wrap(...)``, a ``transformers`` model, or a ``(model, tokenizer)`` pair. INPUTS is a
text file (one input per line; needs a tokenizer) or a ``.jsonl`` file with ``{"text": ...}`` or
``{"input_ids": [...]}`` per line. Exit status: 0 when the verdict passes, 1 when it fails (an
inconclusive required question fails unless ``--option inconclusive=pass``), 2 on bad input or a
model error: a factory or a loader that raises, ids outside the model's vocabulary, a device that does
not exist, an exception during the audit (one line, no traceback; ``--traceback`` shows it).
Hugging Face folders are loaded offline and with ``trust_remote_code=False``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.options import OPTION_NAMES, parse_option_text, validate_option

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TASKS = ("auto", "classification", "causal-lm")


class UsageError(AttnFaithError):
    """Bad input to the command: reported as one message with exit status 2."""


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnfaith", description="Audit whether a model's attention is faithful (Jain & Wallace 2019)."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    audit = commands.add_parser(
        "audit",
        help="audit a model on a file of inputs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audit.add_argument("model", metavar="MODEL", help="a Hugging Face model folder, or module:factory")
    audit.add_argument("inputs", metavar="INPUTS", type=Path, help="a text file (one input per line) or a .jsonl file")
    audit.add_argument("--checks", help="comma-separated checks (default: all six)")
    audit.add_argument("--require", help="comma-separated questions that must be answered yes (default: used,agrees,unique)")
    audit.add_argument("--epsilon", help="TVD bound on an output change that counts as no change (default 0.05)")
    audit.add_argument("--seed", help="seed of every random draw (default 0)")
    audit.add_argument(
        "--option", "-o", action="append", default=[], metavar="KEY=VALUE", help=f"any audit option: {', '.join(OPTION_NAMES)}"
    )
    audit.add_argument(
        "--task", choices=TASKS, default="auto", help="how to load a Hugging Face folder (default: from its config)"
    )
    audit.add_argument(
        "--max-length", type=positive, default=128, help="truncate tokenized text inputs to this many tokens (default 128)"
    )
    audit.add_argument("--limit", type=positive, help="audit only the first N inputs")
    audit.add_argument(
        "--estimate",
        action="store_true",
        help="print what the audit would cost (model passes, seconds, peak memory), before any counterfactual runs, and exit 0",
    )
    audit.add_argument("--json", type=Path, metavar="PATH", help="write the report as JSON")
    audit.add_argument("--html", type=Path, metavar="PATH", help="write the report as a self-contained HTML page")
    audit.add_argument("--verbose", "-v", action="store_true", help="show more worst instances and what was read and replaced")
    audit.add_argument("--traceback", action="store_true", help="on an error, show its traceback (the exit status stays 2)")
    audit.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress (default: when stderr is a terminal)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``attnfaith`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help(sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = print_warning
            return run_audit(args)
    except AttnFaithError as err:
        if args.traceback:
            traceback.print_exc()
        print(f"attnfaith: error: {first_line(err)}", file=sys.stderr)
        return 2


def print_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """A warning as one line of stderr in its own words: no file, line number or source line (Python's format is
    for programmers; an inconclusive check's warning already starts with ``attnfaith:``)."""
    text = " ".join(str(message).split())
    print(text if text.startswith("attnfaith:") else f"attnfaith: {category.__name__}: {text}", file=sys.stderr)


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (torch's and transformers' run to many lines)."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def raised(what: str, error: Exception) -> UsageError:
    """A ``UsageError`` for an exception from the user's code or model: its type and first line."""
    return UsageError(f"{what} raised {type(error).__name__}: {first_line(error)}")


def run_audit(args: argparse.Namespace) -> int:
    """Load the model and inputs, audit, print the table, write the reports; 0 pass, 1 fail."""
    options = collect_options(args)
    for path in (args.json, args.html):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    lines = read_lines(args.inputs, args.limit)
    model, tokenizer = load_model(args.model, args.task)
    inputs = parse_inputs(lines, args.inputs, tokenizer, args.max_length)
    import pytest_attnfaith as af
    from pytest_attnfaith.adapters import is_huggingface_model

    if tokenizer is not None and is_huggingface_model(model):
        model = af.huggingface(model, tokenizer=tokenizer)  # reports show the tokenizer's tokens
    check_vocabulary(inputs["input_ids"], vocabulary_size(model, tokenizer), args.inputs)
    if args.estimate:
        print(f"attnfaith estimate: {af.estimate(model, inputs, **options).describe()}")
        return 0
    try:
        report = af.audit(model, inputs, **options)
    except AttnFaithError:
        raise
    except Exception as err:
        raise raised("the audit", err) from err
    tests = session_tests(f"attnfaith audit {args.model} {args.inputs}", report)
    print(format_report(tests, args.verbose))
    write_reports(tests, args.json, args.html)
    return 0 if report.passed else 1


def collect_options(args: argparse.Namespace) -> dict[str, Any]:
    """Audit options from the dedicated flags and ``--option KEY=VALUE``, validated."""
    texts: dict[str, str] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option {item!r} is not valid: expected KEY=VALUE, e.g. --option permutations=50")
        texts[key.strip().replace("-", "_")] = value.strip()
    for name in ("checks", "require", "epsilon", "seed"):
        if getattr(args, name) is not None:
            texts[name] = getattr(args, name)
    options = {name: validate_option(name, parse_option_text(name, text)) for name, text in texts.items()}
    if args.progress is not None:
        options["progress"] = args.progress
    options.setdefault("progress", sys.stderr.isatty())
    return options


# -- the model --------------------------------------------------------------------------------


def load_model(spec: str, task: str = "auto") -> tuple[Any, Any]:
    """``(model, tokenizer or None)`` from a Hugging Face folder or a ``module:factory``."""
    if Path(spec).is_dir():
        return load_folder(Path(spec), task)
    if FACTORY.match(spec):
        return call_factory(spec)
    raise UsageError(
        f"MODEL {spec!r} is neither a folder nor module:factory; expected a Hugging Face model folder or e.g. mypkg.models:build"
    )


def call_factory(spec: str) -> tuple[Any, Any]:
    """Import ``module`` (the working directory first on the path) and call ``factory()``."""
    module_name, _, attribute = spec.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError(f"cannot import {module_name!r} for MODEL {spec!r}: {err}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}; expected a callable returning a model")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"{spec} is a {type(target).__name__}; expected a callable returning a model")
    try:
        built = target()
    except AttnFaithError:
        raise
    except Exception as err:
        raise raised(f"MODEL {spec}", err) from err
    model, tokenizer = built if isinstance(built, (tuple, list)) and len(built) == 2 else (built, None)
    _check_model(model, spec)
    return model, tokenizer


def _check_model(model: Any, spec: str) -> None:
    from pytest_attnfaith.adapters import AttentionModel, is_huggingface_model

    if not isinstance(model, AttentionModel) and not is_huggingface_model(model):
        raise UsageError(
            f"{spec} returned a {type(model).__name__}; expected af.wrap(net, attention=..., embeddings=...), "
            "a transformers PreTrainedModel, or a (model, tokenizer) pair"
        )


def load_folder(folder: Path, task: str) -> tuple[Any, Any]:
    """A sequence classifier or causal LM and its tokenizer from ``folder``, offline."""
    try:
        import transformers
    except ImportError:
        raise UsageError("a Hugging Face model folder needs transformers: pip install 'pytest-attnfaith[transformers]'") from None
    if not (folder / "config.json").is_file():
        raise UsageError(f"{folder} has no config.json; expected a folder written by save_pretrained()")
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as err:
        raise UsageError(f"cannot read the config in {folder}: {first_line(err)}") from err
    kind = folder_task(config) if task == "auto" else task
    loader = transformers.AutoModelForCausalLM if kind == "causal-lm" else transformers.AutoModelForSequenceClassification
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the load report; the note below says what matters
    try:
        model = loader.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as err:  # a refused weights-only load is a pickle.UnpicklingError, a missing file an OSError, ...
        raise UsageError(f"cannot load {folder} as a {kind} model: {type(err).__name__}: {first_line(err)}") from err
    finally:
        transformers.logging.set_verbosity(verbosity)
    if kind == "classification" and not _has_head(config):
        print(f"attnfaith: note: {folder} has no classification head; the audit uses a newly initialised one", file=sys.stderr)
    return model, _folder_tokenizer(transformers, folder)


def folder_task(config: Any) -> str:
    """``causal-lm`` when the folder's architecture is a causal LM, else ``classification``."""
    names = getattr(config, "architectures", None) or []
    return "causal-lm" if any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in names) else "classification"


def _has_head(config: Any) -> bool:
    return any(name.endswith("ForSequenceClassification") for name in getattr(config, "architectures", None) or [])


def _folder_tokenizer(transformers: Any, folder: Path) -> Any:
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError):
        return None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# -- the inputs -------------------------------------------------------------------------------


def read_lines(path: Path, limit: int | None = None) -> list[str]:
    """The non-empty lines of INPUTS (the first ``limit``), read before any model is loaded."""
    if not path.is_file():
        raise UsageError(f"INPUTS {path} does not exist; expected a text file (one input per line) or a .jsonl file")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit is not None:
        lines = lines[:limit]
    if not lines:
        raise UsageError(f"INPUTS {path} has no inputs; expected one input per line")
    return lines


def parse_inputs(lines: list[str], path: Path, tokenizer: Any, max_length: int = 128) -> dict[str, Any]:
    """A batch ``{"input_ids", "attention_mask", ...}`` from the lines of a text or JSONL file."""
    if path.suffix.lower() in JSONL_SUFFIXES:
        records = [_record(line, path, number) for number, line in enumerate(lines, 1)]
        if all("text" in record for record in records):
            return tokenize([record["text"] for record in records], tokenizer, max_length, path)
        return pad_ids(records, tokenizer, path)
    return tokenize([line.strip() for line in lines], tokenizer, max_length, path)


def _record(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}:{number} is not valid JSON ({err.msg}); expected one JSON object per line") from None
    if not isinstance(record, dict) or not ("text" in record or "input_ids" in record):
        raise UsageError(f'{path}:{number} has no "text" or "input_ids"; expected {{"text": "..."}} or {{"input_ids": [...]}}')
    if "text" in record and not isinstance(record["text"], str):
        raise UsageError(f'{path}:{number}: "text" is a {type(record["text"]).__name__}; expected a string')
    return record


def tokenize(texts: list[str], tokenizer: Any, max_length: int, path: Path) -> dict[str, Any]:
    if tokenizer is None:
        raise UsageError(
            f"{path} holds text but the model has no tokenizer; save one in the model folder, return (model, tokenizer) "
            'from the factory, or give a .jsonl file with {"input_ids": [...]} per line'
        )
    encoded = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt", return_special_tokens_mask=True
    )
    return dict(encoded)


def pad_ids(records: list[dict[str, Any]], tokenizer: Any, path: Path) -> dict[str, Any]:
    """Right-pad ``input_ids`` rows (with the tokenizer's pad id, else 0) and build the masks."""
    import torch

    rows = []
    for number, record in enumerate(records, 1):
        ids = record.get("input_ids")
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)
        ):
            raise UsageError(
                f'{path}:{number}: "input_ids" must be a non-empty list of non-negative integers (and every line needs it)'
            )
        special = record.get("special_tokens_mask", [0] * len(ids))
        if not isinstance(special, list) or len(special) != len(ids) or any(v not in (0, 1) for v in special):
            raise UsageError(f'{path}:{number}: "special_tokens_mask" must be a list of 0/1 as long as "input_ids"')
        rows.append((ids, special))
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    special_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for index, (ids, special) in enumerate(rows):
        input_ids[index, : len(ids)] = torch.tensor(ids)
        attention_mask[index, : len(ids)] = 1
        special_mask[index, : len(ids)] = torch.tensor(special)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "special_tokens_mask": special_mask}


def vocabulary_size(model: Any, tokenizer: Any) -> int | None:
    """How many token ids the model embeds: its input embedding table's rows (the first ``nn.Embedding`` of a
    wrapped model's embeddings module), else the tokenizer's length; None when neither is known."""
    from torch import nn

    from pytest_attnfaith.adapters import AttentionModel

    try:
        module = model.embeddings_module() if isinstance(model, AttentionModel) else model.get_input_embeddings()
    except AttnFaithError:  # the audit says why the embeddings cannot be found
        module = None
    modules = module.modules() if isinstance(module, nn.Module) else ()
    table = next((sub for sub in modules if isinstance(sub, nn.Embedding)), None)
    if table is not None:
        return int(table.num_embeddings)
    return len(tokenizer) if tokenizer is not None else None


def check_vocabulary(input_ids: Any, size: int | None, path: Path) -> None:
    """Raise ``UsageError`` naming the first input whose ids lie outside the model's vocabulary of ``size`` ids."""
    if size is None:
        return
    outside = (input_ids >= size).any(dim=1).nonzero()
    if len(outside):
        row = int(outside[0])
        token = int(input_ids[row].max())
        raise UsageError(
            f"{path}:{row + 1}: token id {token} is outside the model's vocabulary; expected ids 0..{size - 1} "
            "(were these ids made by another tokenizer?)"
        )


# -- the output -------------------------------------------------------------------------------


def session_tests(label: str, report: Any) -> dict[str, list[dict[str, Any]]]:
    """The report in the plugin's session form: one "test" named ``label`` with one audit."""
    return {label: [report.to_dict()]}


def format_report(tests: dict[str, list[dict[str, Any]]], verbose: bool = False) -> str:
    """The terminal table of the pytest summary: one row per check, the verdict, the worst instances."""
    from pytest_attnfaith.report.terminal import summary_lines

    return "\n".join(text for text, _ in summary_lines(tests, verbosity=1 if verbose else 0))


def write_reports(tests: dict[str, list[dict[str, Any]]], json_path: Path | None, html_path: Path | None) -> None:
    """The JSON and HTML reports, in the same schema as ``--attnfaith-json`` / ``--attnfaith-html``."""
    from pytest_attnfaith.report.schema import session_document, write_json

    document = session_document(tests)
    if json_path is not None:
        print(f"JSON report: {write_json(json_path, document)}")
    if html_path is not None:
        from pytest_attnfaith.report.html import write_html

        print(f"HTML report: {write_html(html_path, document)}")


if __name__ == "__main__":
    sys.exit(main())
