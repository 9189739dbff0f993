"""pipelines.bigscene: the memory measurement runs end to end (at a small side here)."""
from __future__ import annotations

import json

import rasterio

from pipelines import bigscene


def test_main_small_pair_reports_peak_memory(data_root, tmp_path):
    fixed, moving = bigscene.make_pair(tmp_path, 300)
    with rasterio.open(fixed) as f:
        assert (f.width, f.height) == (300, 300)
    assert bigscene.main(["--side", "300", "--work", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["exit_status"] in (0, 1) and doc["peak_rss_mb"] > 0
    assert (tmp_path / "out" / "report.json").exists()
