"""pipelines.benchmark: the whole command line timed as fresh processes."""
from __future__ import annotations

from pipelines.benchmark import COLD, cold_runs


def test_cold_runs_times_fresh_cli_processes(data_root):
    rows = cold_runs(data_root, 1, device="cpu", model="random")
    assert len(rows) == 1 and rows[0]["pair"] == COLD
    # a fresh process imports torch: a run cannot take less than a few tenths of a second,
    # and an error exit (bad arguments, a crash) is reported as such, not as a time
    assert rows[0]["status"] in ("ok", "failed") and rows[0]["seconds"] > 0.3


def test_cold_runs_none(data_root):
    assert cold_runs(data_root, 0, device="cpu", model="random") == []


def test_scoring_rate_against_the_measured_peak():
    from register.score import load_model
    from pipelines.benchmark import scoring_rate

    model = load_model("random-lite", "cpu", seed=0)
    r = scoring_rate(model, 16, 0.05)
    assert r["batch"] == 16 and r["pairs_per_s"] > 0 and r["peak_dtype"] == "float32"
    assert r["peak_tflops"] > 0
    assert abs(r["fraction_of_peak"] - r["tflops"] / r["peak_tflops"]) < 1e-12


def test_results_section_says_the_scoring_rate():
    import argparse

    from pipelines.benchmark import _results

    args = argparse.Namespace(threads=2, device="cuda")
    rows = [{"pair": "p", "seconds": 0.2, "status": "ok"}, {"pair": COLD, "seconds": 2.5,
                                                            "status": "ok"}]
    scoring = {"batch": 4096, "pairs_per_s": 21000.0, "tflops": 52.9, "peak_tflops": 675.8,
               "peak_dtype": "bfloat16", "fraction_of_peak": 0.0783}
    text = _results(args, rows, 0.2, {"name": "network"}, scoring)
    assert "**21000 pairs/s**" in text and "7.8 % of this run's measured bfloat16" in text
    assert "median **2.50 s**" in text
    assert "pairs/s" not in _results(args, rows, 0.2, {"name": "network"}, None)
