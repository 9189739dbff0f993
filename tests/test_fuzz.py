"""Fuzzing the readers and the command line with random small rasters: whatever comes in, the
run ends with exit 0 / 1 (and a report) or 2 (one line on stderr, nothing written), never a
traceback, and leaves no half-written file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine, from_origin

from register.checks import InputError
from register.io import read_image, to_gray
from register.run import main

DTYPES = ("uint8", "uint16", "int16", "float32", "float64")


def _random_raster(path, rng: np.random.Generator, case: int) -> None:
    """A small GeoTIFF with something odd about it (chosen by ``case``)."""
    h, w = int(rng.integers(64, 140)), int(rng.integers(64, 140))
    bands = int(rng.integers(1, 6))
    dtype = DTYPES[case % len(DTYPES)]
    if case % 7 == 3:
        h = 1  # a one-pixel-high image
    if case % 7 == 4:
        w = 1
    data = (rng.random((bands, h, w)) * 200).astype(dtype)
    nodata = None
    if case % 5 == 1:  # nodata everywhere but one line
        nodata = 7
        data[:] = 7
        data[:, h // 2, :] = 50
    if case % 5 == 2 and np.dtype(dtype).kind == "f":
        data[:, :: 3, :] = np.nan
        data[:, :, :: 5] = np.inf
    if case % 5 == 3:
        data[:] = data.flat[0]  # constant
    profile = dict(driver="GTiff", height=h, width=w, count=bands, dtype=dtype, nodata=nodata)
    if case % 3 == 0:
        profile.update(crs="EPSG:32633", transform=from_origin(4e5, 5e6, 10, 10))
    elif case % 3 == 1:  # an absurd transform: a degenerate or huge pixel
        profile.update(crs="EPSG:4326", transform=Affine(1e9, 0, 0, 0, -1e-9, 0)
                       if case % 2 else Affine(0.0, 0, 10, 0, 0.0, 50))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


@pytest.mark.parametrize("case", range(14))
def test_main_fuzzed_rasters_end_cleanly(case, tmp_path, capsys):
    rng = np.random.default_rng(case)
    fixed, moving = tmp_path / "f.tif", tmp_path / "m.tif"
    _random_raster(fixed, rng, case)
    _random_raster(moving, rng, case + 7)
    out = tmp_path / "out"
    rc = main([str(fixed), str(moving), "--out-dir", str(out), "--quiet", "--device", "cpu",
               "--max-keypoints", "64"])
    err = capsys.readouterr().err
    assert rc in (0, 1, 2) and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if rc == 2:
        assert len(lines) == 1 and lines[0].startswith("error: ") and not out.exists()
    else:
        doc = json.loads((out / "report.json").read_text())
        assert doc["status"] == ("ok" if rc == 0 else "failed")
    # nothing half-written: no temporary files or folders beside the outputs
    assert not [p for p in tmp_path.rglob(".*") if p.name.startswith(".")]


@pytest.mark.parametrize("case", range(10))
def test_read_image_and_to_gray_fuzzed_rasters_raise_only_input_error(case, tmp_path):
    rng = np.random.default_rng(100 + case)
    path = tmp_path / "r.tif"
    _random_raster(path, rng, case)
    try:
        r = read_image(path)
        g = to_gray(r)
    except InputError:
        return
    assert g.image.dtype == np.float32 and np.isfinite(g.image).all()
    assert g.mask.shape == g.image.shape == r.shape
