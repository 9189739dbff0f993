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
