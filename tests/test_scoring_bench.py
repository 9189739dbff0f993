from __future__ import annotations

import json


def test_main_records_pairs_per_second_against_the_measured_peak(tmp_path):
    from pipelines.scoring_bench import main

    assert main(["--device", "cpu", "--preset", "lite", "--batch-sizes", "8", "--seconds",
                 "0.05", "--matmul-size", "128", "--variants", "library", "channels_last",
                 "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "scoring_bench.json").read_text())
    assert doc["peak"]["dtype"] == "float32" and doc["peak"]["tflops"] > 0
    assert [r["variant"] for r in doc["runs"]] == ["library", "channels_last"]
    for r in doc["runs"]:
        assert r["pairs_per_s"] > 0
        assert abs(r["fraction_of_peak"] - r["tflops"] / doc["peak"]["tflops"]) < 1e-12
    assert doc["config"]["preset"] == "lite"
