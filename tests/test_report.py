"""pipelines.report: the one writer of result sections (command line and date on top)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.report import command_line, write_section

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def test_write_section_replaces_not_duplicates(tmp_path):
    md = tmp_path / "docs" / "results.md"  # folder and file created on first write
    write_section(md, "evaluate:registration", "table 1", command="cmd1", date="D1")
    md.write_text("# Results\n\nintro\n\n" + md.read_text() + "\ntail\n")
    write_section(md, "evaluate:registration", "table 2", command="cmd2", date="D2")
    text = md.read_text()
    assert text.count("<!-- BEGIN evaluate:registration -->") == 1
    assert text.count("<!-- END evaluate:registration -->") == 1
    assert "table 1" not in text and "cmd1" not in text and "D1" not in text
    assert "table 2" in text and "cmd2" in text and "D2" in text
    # text outside the section is kept, in place
    assert text.startswith("# Results\n\nintro\n\n<!-- BEGIN") and text.endswith("\ntail\n")


def test_write_section_appends_new_section_after_others(tmp_path):
    md = tmp_path / "results.md"
    write_section(md, "benchmark", "b", command="cmd b", date="D")
    write_section(md, "tiles", "t", command="cmd t", date="D")
    write_section(md, "benchmark", "b2", command="cmd b2", date="D")
    text = md.read_text()
    assert text.index("<!-- BEGIN benchmark -->") < text.index("<!-- BEGIN tiles -->")
    assert "\nb2\n" in text and "\nt\n" in text and "\nb\n" not in text


def test_write_section_header_contains_command_and_date(tmp_path):
    md = tmp_path / "results.md"
    write_section(md, "evaluate:patches", "\n| a |\n|---|\n\n", command="python -m x --y 1",
                  date="2026-11-22 05:10")
    assert md.read_text() == (
        "<!-- BEGIN evaluate:patches -->\n\n"
        "Command: `python -m x --y 1`  \nDate: 2026-11-22 05:10\n\n"
        "| a |\n|---|\n"
        "<!-- END evaluate:patches -->\n")


def test_write_section_default_date_is_now_to_the_minute(tmp_path):
    md = tmp_path / "results.md"
    write_section(md, "s", "body", command="cmd")
    assert re.search(r"\nDate: \d{4}-\d\d-\d\d \d\d:\d\d\n", md.read_text())


def test_write_section_title_above_header_and_indented_body_kept(tmp_path):
    md = tmp_path / "results.md"
    write_section(md, "tiles", "    python -m code\n\ntext", command="cmd", date="D",
                  title="## Batch tiles")
    body = md.read_text().split("<!-- BEGIN tiles -->\n", 1)[1]
    assert body.startswith("\n## Batch tiles\n\nCommand: `cmd`  \nDate: D\n\n    python -m code\n")


def test_write_section_rejects_empty_command(tmp_path):
    with pytest.raises(ValueError, match="expected the command line"):
        write_section(tmp_path / "results.md", "s", "body", command=" ")
    assert not (tmp_path / "results.md").exists()


def test_command_line_quotes_arguments_and_has_no_trailing_space():
    assert command_line("pipelines.search_sweep", []) == "python -m pipelines.search_sweep"
    assert command_line("pipelines.evaluate", ["registration", "--label", "ours (fused p>=0.3)"]) \
        == "python -m pipelines.evaluate registration --label 'ours (fused p>=0.3)'"


def test_write_section_reproduces_evaluate_sections_of_results_md(tmp_path):
    """The ``evaluate:*`` sections of docs/results.md, rewritten from their own command,
    date and table, come out byte for byte as they are (the header format did not change)."""
    text = RESULTS.read_text()
    found = re.findall(r"<!-- BEGIN (evaluate:[\w:]+) -->\n\nCommand: `(.*)`  \nDate: (.*)\n\n"
                       r"(.*?)\n<!-- END \1 -->", text, flags=re.S)
    assert len(found) >= 6
    copy = tmp_path / "results.md"
    copy.write_text(text)
    for name, command, date, body in found:
        write_section(copy, name, body, command=command, date=date)
    assert copy.read_text() == text


def test_publish_writes_results_md_prints_and_rewrites_section(tmp_path, capsys):
    from pipelines.report import publish

    md = tmp_path / "docs.md"
    publish("| a |\n|---|", out_dir=tmp_path, title="demo", command="python -m x --y",
            results=md, section="evaluate:demo")
    own = (tmp_path / "results.md").read_text()
    assert own.startswith("# demo\n\nCommand: `python -m x --y`\n\n| a |")
    assert "| a |" in capsys.readouterr().out
    assert "<!-- BEGIN evaluate:demo -->" in md.read_text()
    with pytest.raises(ValueError, match="section"):
        publish("x", out_dir=tmp_path, title="t", command="c", results=md)
