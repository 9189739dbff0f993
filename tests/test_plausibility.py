"""pipelines.plausibility: evidence tables for the bend rule, from validation runs only."""
from __future__ import annotations

import csv
import json

import pytest

from pipelines.plausibility import accepted_rows, main, summary

FIELDS = ("set", "pair", "method", "status", "error_px", "verify_z", "confirmed_by",
          "affine_deviation_px", "keypoint_support")


def _run(tmp_path, name, rows, *, split="val", max_dev=0.0, kp=""):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(
        {"split": split, "include": None, "ours_config": {"max_affine_deviation": max_dev}}))
    with open(d / "pairs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for pair, status, err, z, bend in rows:
            w.writerow({"set": "opt-ir", "pair": f"val_srif/{pair}", "method": "ours",
                        "status": status, "error_px": err, "verify_z": z, "confirmed_by": "check",
                        "affine_deviation_px": bend, "keypoint_support": kp})
    return d


def test_summary_counts_bent_results_per_error_group(tmp_path):
    d = _run(tmp_path, "val", [("a", "ok", 1.0, 20.0, 5.0), ("b", "ok", 250.0, 9.9, 48.0),
                               ("c", "ok", 12.0, 16.0, 30.0), ("d", "failed", "inf", 3.0, 60.0)])
    rows = accepted_rows(d)
    assert [r["pair"] for r in rows] == ["val_srif/a", "val_srif/b", "val_srif/c"]  # ok only
    text = summary(rows, 24.0, 13.0)
    assert "| right (<= 10 px) | 1 | 5.0 | 0 | 0 |" in text
    assert "| off (10-20 px) | 1 | 30.0 | 1 | 1 |" in text
    assert "| wrong (> 20 px) | 1 | 48.0 | 1 | 0 |" in text
    assert "| val | val_srif/b | 250.0 | 48.0 | 9.9 | 0 | no (failed) |" in text
    # SIFT support keeps a bent result whatever its z
    kept = summary([dict(rows[1], kp=40)], 24.0, 13.0, min_keypoints=30)
    assert "| 40 | yes |" in kept


def test_accepted_rows_refuses_test_runs_and_runs_with_the_rule_on(tmp_path):
    test = _run(tmp_path, "test", [("a", "ok", 1.0, 20.0, 5.0)], split="test")
    with pytest.raises(ValueError, match="not a validation run"):
        accepted_rows(test)
    on = _run(tmp_path, "on", [("a", "ok", 1.0, 20.0, 5.0)], max_dev=24.0)
    with pytest.raises(ValueError, match="no_bend_check"):
        accepted_rows(on)
    assert main([str(test)]) == 2


def test_main_writes_results_section(tmp_path):
    d = _run(tmp_path, "val", [("a", "ok", 1.0, 20.0, 5.0)])
    md = tmp_path / "results.md"
    assert main([str(d), "--out", str(tmp_path / "out"), "--results", str(md)]) == 0
    text = md.read_text()
    assert "<!-- BEGIN evaluate:plausibility -->" in text and "python -m pipelines.plausibility" in text
    assert (tmp_path / "out" / "config.json").exists()
