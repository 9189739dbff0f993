"""pipelines.tiles_bench builds its own input: the moving copies of the two Landsat crops must be
the crops' pixels under a geotransform moved by exactly the known offsets (real shared data;
the benchmark itself is not run here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipelines import tiles_bench
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


def test_summary_line_parsed():
    line = ("4 pair(s), 44 tile(s): done 21 / failed 23 / skipped 0 in 14.0s (3.143 tiles/s, "
            "3.170 after the first tile); 0 non-overlapping combination(s) left out -> x.csv")
    g = tiles_bench.SUMMARY_RE.search(line).groupdict()
    assert (g["tiles"], g["done"], g["failed"], g["tiles_per_s"], g["steady_tiles_per_s"]) == (
        "44", "21", "23", "3.143", "3.170")
