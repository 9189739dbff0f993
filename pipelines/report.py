"""Writing result tables into marked sections of markdown files (``docs/results.md``).

Every program that publishes a table (``pipelines.evaluate``, ``pipelines.search_sweep``,
``pipelines.keypoint_support``, ``pipelines.benchmark``, ``pipelines.tiles_bench``) writes its
section with :func:`write_section`, which puts the command line that made it and the date on top:

    <!-- BEGIN name -->

    Command: `python -m pipelines.evaluate registration ...`
    Date: 2026-11-22 05:10

    <body>
    <!-- END name -->
"""
from __future__ import annotations

import csv
import datetime as _dt
import shlex
import sys
from pathlib import Path
from typing import Sequence

#: ``Date:`` format of a section header (local time, to the minute)
DATE_FORMAT = "%Y-%m-%d %H:%M"


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """The shell command that reruns ``python -m <module>`` with ``argv`` (default
    ``sys.argv[1:]``), each argument quoted for a POSIX shell; no trailing space when there
    are no arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", module, shlex.join(args)]).rstrip()


def _header(command: str, date: str | None = None, *, title: str | None = None) -> str:
    """The header :func:`write_section` puts above a body: an optional ``title`` line (e.g. a
    ``## heading``), then ``Command: `...``` and ``Date: ...`` (two lines of one markdown
    paragraph). ``date`` defaults to now, formatted with :data:`DATE_FORMAT`."""
    if not command.strip():
        raise ValueError("expected the command line that produced the section (e.g. from "
                         "command_line(module, argv)); got an empty string")
    date = date or _dt.datetime.now().strftime(DATE_FORMAT)
    head = f"{title}\n\n" if title else ""
    return f"{head}Command: `{command}`  \nDate: {date}\n"


def write_section(path: str | Path, name: str, body: str, *, command: str,
                  date: str | None = None, title: str | None = None) -> None:
    """Write or replace section ``name`` of the markdown file ``path`` with the header of
    :func:`_header` (``title``, ``command``, ``date``) followed by ``body``.

    The section keeps its place in the file; text outside it is kept (see
    :func:`update_section`).
    """
    header = _header(command, date, title=title)
    body = body.lstrip("\n").rstrip()  # leading spaces kept: the body may open with code
    update_section(path, name, f"\n{header}\n{body}\n")


def update_section(path: str | Path, name: str, body: str) -> None:
    """Replace (or append) the block between ``<!-- BEGIN name -->`` and ``<!-- END name -->``
    with ``body`` as given (no header; programs use :func:`write_section`).

    The file is replaced atomically; text outside the block is kept; a missing file or
    section is created (the section at the end of the file).
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


def publish(body: str, *, out_dir: str | Path, title: str, command: str,
            results: str | Path | None = None, section: str | None = None) -> None:
    """How a program hands out a table: ``out_dir/results.md`` (``# title``, the command, the
    body), the body on stdout, and, with ``results``, section ``section`` of that markdown file
    rewritten by :func:`write_section`."""
    text = f"# {title}\n\nCommand: `{command}`\n\n{body.strip()}\n"
    Path(out_dir, "results.md").write_text(text)
    print(body)
    if results is not None:
        if not section:
            raise ValueError("expected the section name to write in --results; got none")
        write_section(results, section, body, command=command)


def write_csv(path: str | Path, rows: Sequence[dict], fields: Sequence[str] | None = None
              ) -> None:
    """``rows`` as a CSV file with a header: the columns ``fields`` (keys missing from a row
    are left empty, others ignored), or every key of the rows in first-seen order."""
    fields = list(fields) if fields is not None else list(
        dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
