"""Writing result tables into marked sections of markdown files (``docs/results.md``)."""
from __future__ import annotations

from pathlib import Path


def update_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) the block between ``<!-- BEGIN name -->`` and ``<!-- END name -->``.

    The file is replaced atomically; text outside the block is kept.
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    i, j = text.find(begin), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + block + text[j + len(end):]
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
