"""pipelines.tiles_bench builds its own input: the moving copies of the two Landsat crops must be
the crops' pixels under a geotransform moved by exactly the known offsets (real shared data),
and takes its throughput from the totals pipelines.tiles writes (the benchmark itself and
pipelines.tiles are not run here)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipelines import tiles_bench, tiles_output
from register.checks import InputError


@pytest.fixture(scope="module")
def crops():
    try:
        return tiles_bench.landsat_crops()
    except InputError as exc:
        pytest.skip(str(exc))


def test_build_input_shifts_by_known_offsets(crops, tmp_path):
    in_dir = tmp_path / "input"
    in_dir.mkdir()
    (in_dir / "stale.tif").write_bytes(b"left over")  # must not reach pipelines.tiles
    made = tiles_bench.build_input(in_dir)
    assert sorted(p.name for p in in_dir.iterdir()) == sorted(
        Path(m["moving"]).name for m in made)
    assert [(m["dx"], m["dy"]) for m in made] == [(2, -1), (-3, 2)]
    assert [m["source"] for m in made] == [str(c) for c in crops]
    for m in made:
        with rasterio.open(m["source"]) as o, rasterio.open(m["moving"]) as c:
            assert (c.crs, c.width, c.height, c.count, c.dtypes) == (o.crs, o.width, o.height,
                                                                     o.count, o.dtypes)
            # same pixel size and orientation; origin moved by exactly (dx, dy) source pixels
            assert (c.transform.a, c.transform.b, c.transform.d, c.transform.e) == (
                o.transform.a, o.transform.b, o.transform.d, o.transform.e)
            col, row = ~o.transform @ (c.transform.c, c.transform.f)
            np.testing.assert_allclose([col, row], [m["dx"], m["dy"]], atol=1e-9)
            np.testing.assert_array_equal(c.read(), o.read())
    # deterministic: a second build writes the same rasters
    before = [open(m["moving"], "rb").read() for m in made]
    tiles_bench.build_input(in_dir)
    assert [open(m["moving"], "rb").read() for m in made] == before


def test_run_tiles_reads_totals_of_this_run(tmp_path, monkeypatch):
    """run_tiles takes tiles/s from the totals.json the run writes; a file left by an earlier
    run is not taken for a run that wrote none (e.g. it crashed with exit status 1)."""
    out = tmp_path / "w1"
    totals = {k: 0 for k in tiles_output.TOTALS_KEYS}
    totals.update(tiles=44, done=21, failed=23, seconds=14.0, tiles_per_s=3.143,
                  steady_tiles_per_s=3.17)

    def finished(cmd, **kw):
        tiles_output.write_totals(out, totals)
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(tiles_bench.subprocess, "run", finished)
    rec = tiles_bench.run_tiles(["--out-dir", str(out)], out)
    assert rec["rc"] == 1 and {k: rec[k] for k in totals} == totals

    monkeypatch.setattr(tiles_bench.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(InputError, match="totals.json: not found"):
        tiles_bench.run_tiles(["--out-dir", str(out)], out)
    monkeypatch.setattr(tiles_bench.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 2))
    assert "tiles_per_s" not in tiles_bench.run_tiles(["--out-dir", str(out)], out)


def test_efficiency_against_one_local_worker():
    """Local and Dask runs with N > 1 workers are measured against one local worker."""
    import argparse

    from pipelines.tiles_bench import efficiency, run_modes

    args = argparse.Namespace(workers=[1, 2], dask=[2])
    assert run_modes(args) == [("1", 1, None), ("2", 2, None), ("Dask 2", 2, "local")]
    runs = [{"workers": "1", "n_workers": 1, "steady_tiles_per_s": 4.0},
            {"workers": "2", "n_workers": 2, "steady_tiles_per_s": 7.0},
            {"workers": "2", "n_workers": 2, "steady_tiles_per_s": 6.0},
            {"workers": "Dask 2", "n_workers": 2, "steady_tiles_per_s": 6.0}]
    assert efficiency(runs) == {"2": 6.5 / 8, "Dask 2": 0.75}
