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


def test_main_compiled_variants_run_and_a_failure_is_recorded(tmp_path, monkeypatch):
    # the compiled variants' code path with the eager backend (no compiler needed); a variant
    # that raises becomes an error row and the others still run
    import pipelines.scoring_bench as sb

    real = sb._variant_fn

    def flaky(name, *args, **kwargs):
        if name == "compile_graphs":
            raise RuntimeError("no graphs here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(sb, "_variant_fn", flaky)
    assert sb.main(["--device", "cpu", "--preset", "lite", "--batch-sizes", "4", "--seconds",
                    "0.02", "--matmul-size", "64", "--variants", "compile", "compile_graphs",
                    "compile_bf16", "--compile-backend", "eager", "--out", str(tmp_path)]) == 0
    runs = json.loads((tmp_path / "scoring_bench.json").read_text())["runs"]
    assert [r["variant"] for r in runs] == ["compile", "compile_graphs", "compile_bf16"]
    assert runs[1]["error"] == "RuntimeError: no graphs here" and "pairs_per_s" not in runs[1]
    for r in (runs[0], runs[2]):
        assert r["pairs_per_s"] > 0 and r["prepare_s"] >= 0 and "error" not in r
