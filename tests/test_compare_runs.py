"""pipelines.compare_runs: two evaluation runs, pair by pair."""
from __future__ import annotations

import csv
import json

from pipelines.compare_runs import compare, differences, main, read_runs

FIELDS = ["set", "pair", "method", "status", "reason", "error_px", "seconds", "H",
          "num_inliers", "transform"]


def _row(pair, err, H, inliers=50, status="ok", seconds=1.0):
    return {"set": "opt-sar", "pair": pair, "method": "ours", "status": status, "reason": "",
            "error_px": "" if err is None else str(err), "seconds": str(seconds),
            "H": json.dumps(H) if H else "", "num_inliers": str(inliers),
            "transform": "affine"}


def _write(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return str(path)


def test_compare_finds_moved_and_failed_pairs(tmp_path, capsys):
    eye = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    moved = [1.0, 0, 2.0, 0, 1.0, 0, 0, 0, 1.0]
    a = _write(tmp_path / "a.csv", [_row("1", 1.0, eye), _row("2", 4.0, eye),
                                    _row("3", 2.0, eye)])
    b = _write(tmp_path / "b.csv", [_row("1", 1.0, eye), _row("2", 6.0, moved, seconds=3.0),
                                    _row("3", None, None, status="failed")])
    ra, rb = read_runs(a, "ours"), read_runs(b, "ours")
    assert differences(ra[("opt-sar", "1")], rb[("opt-sar", "1")]) == []
    assert differences(ra[("opt-sar", "2")], rb[("opt-sar", "2")]) == ["H"]
    lines, summary = compare(ra, rb)
    assert len(lines) == 2
    s = summary["opt-sar"]
    assert s["identical"] == 1 and s["at5"] == [3, 1] and s["at10"] == [3, 2]
    assert s["mean_err_both"] == [2.5, 3.5] and s["sum_s"] == [3.0, 5.0]
    assert main([a, b]) == 0
    assert "1/3 pairs identical" in capsys.readouterr().out


def test_main_missing_file_says_what_to_pass(tmp_path, capsys):
    assert main([str(tmp_path / "none.csv"), str(tmp_path / "none.csv")]) == 2
    assert "pipelines.evaluate" in capsys.readouterr().err
