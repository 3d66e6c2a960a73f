"""Benchmarks that share one results file each write their own section of it, between markers."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the section ``name`` of ``path`` (between ``<!-- begin name -->`` and ``<!-- end name -->``) with
    ``text``, or append it; the rest of the file is kept."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        updated = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        updated = (current.rstrip() + "\n\n" if current.strip() else "") + block
    path.write_text(updated, encoding="utf-8")
