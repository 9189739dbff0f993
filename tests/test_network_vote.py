"""pipelines.network_vote: the evidence behind Policy.network_confirm_z, at tiny scale."""
from __future__ import annotations

import csv

from pipelines.network_vote import main, summary_table


def test_main_votes_on_pipeline_transforms_and_moved_truths(tmp_path, capsys):
    out = tmp_path / "nv"
    assert main(["--runs", "val:opt-ir:0.6:1.6:0", "--moved", "opt-ir", "--limit", "1",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "votes.csv")))
    assert [r["kind"] for r in rows] == ["pipeline"] + ["moved"] * 4
    assert [r["label"] for r in rows[1:]] == ["truth", "near", "off", "far"]
    truth, moved = rows[1], rows[2:]
    assert float(truth["error_px"]) == 0.0
    # the truth wins the vote well above chance (z 7.5 here); transforms moved 8 px and more
    # stay near chance
    assert float(truth["vote_z"]) > 5
    assert all(float(r["error_px"]) > 8 and float(r["vote_z"]) < 3 for r in moved)
    assert "| moved truth | opt-ir |" in (out / "results.md").read_text()
    assert (out / "config.json").is_file()


def test_summary_table_counts_what_the_gate_confirms():
    rows = [{"kind": "moved", "label": "truth", "set": "vis-nir", "pair": "a",
             "error_px": "0.0", "vote_z": "12.0"},
            {"kind": "moved", "label": "near", "set": "vis-nir", "pair": "a",
             "error_px": "20.0", "vote_z": "9.5"},
            {"kind": "moved", "label": "far", "set": "vis-nir", "pair": "a",
             "error_px": "80.0", "vote_z": "1.0"}]
    table = summary_table(rows, 9.0)
    assert "| truth | vis-nir | 1 | 12.0 – 12.0 | 1 | 0 | – | 0 |" in table
    assert "| moved truth | vis-nir | 0 | – | 0 | 2 | 1.0 – 9.5 | 1 |" in table
    assert table.rstrip().endswith("9.5 (vis-nir near `a`, 20.0 px); 1.0 (vis-nir far `a`, "
                                   "80.0 px).")
