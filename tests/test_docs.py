"""The documentation site: every nav page exists, every option and check is documented with its default.

The site itself is built by ``mkdocs build --strict`` in ``make test``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from pytest_attnfaith.options import CHECK_NAMES, EXPLANATION_CHECK_NAMES, OPTION_NAMES, Options

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def nav_files(entries: list) -> list[str]:
    files = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        files.extend(nav_files(value) if isinstance(value, list) else [value])
    return files


def option_rows() -> dict[str, str]:
    """``name -> default cell`` of every table row in docs/options.md."""
    text = (DOCS / "options.md").read_text(encoding="utf-8")
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `(\w+)` \| ([^|]+) \|", text, flags=re.MULTILINE)}


def test_every_nav_entry_is_a_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs"
    assert [name for name in nav_files(config["nav"]) if not (DOCS / name).is_file()] == []


def test_every_check_has_a_page_in_the_nav() -> None:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for name in (*CHECK_NAMES, *EXPLANATION_CHECK_NAMES):
        assert f"checks/{name}.md" in text
        assert (DOCS / "checks" / f"{name}.md").read_text(encoding="utf-8").startswith(f"# `{name}`")


def test_every_option_is_documented() -> None:
    assert sorted(option_rows()) == sorted(OPTION_NAMES)


@pytest.mark.parametrize("name", [n for n in OPTION_NAMES if n not in ("checks", "require")])
def test_documented_default_is_the_code_default(name: str) -> None:
    default = getattr(Options(), name)
    cell = option_rows()[name].strip("`")
    if isinstance(default, tuple):
        assert ast.literal_eval(cell) == default
        return
    expected = f'"{default}"' if isinstance(default, str) else str(default)
    assert cell == expected
