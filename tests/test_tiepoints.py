"""register.tiepoints: the matched points as CSV and as a QGIS georeferencer .points file."""
from __future__ import annotations

import csv

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_origin

from register.io import from_array
from register.tiepoints import CSV_FIELDS, tie_points, write_tie_points

H = np.array([[1.0, 0.0, 10.0], [0.0, 1.0, 4.0], [0.0, 0.0, 1.0]])  # moving -> fixed


def _rasters(georef: bool):
    kw = dict(crs=CRS.from_epsg(32618), transform=from_origin(500000.0, 4000000.0, 5.0, 5.0))
    fixed = from_array(np.ones((100, 120), np.uint8), **(kw if georef else {}))
    kw_m = dict(crs=kw["crs"], transform=from_origin(500050.0, 3999980.0, 5.0, 5.0))
    moving = from_array(np.ones((90, 110), np.uint8), **(kw_m if georef else {}))
    return fixed, moving


def _points():
    xm = np.array([[5.0, 7.0], [40.0, 30.0], [70.0, 60.0]], np.float32)
    xf = (xm + [10.0, 4.0]).astype(np.float32)
    xf[2] += [6.0, 0.0]  # an outlier 6 px off
    return xf, xm, np.array([True, True, False])


def test_tie_points_residuals_flags_and_map_coordinates():
    fixed, moving = _rasters(True)
    xf, xm, inl = _points()
    rows = tie_points(H, xf, xm, inl, fixed, moving)
    assert [r["inlier"] for r in rows] == [1, 1, 0]
    assert [float(r["residual_px"]) for r in rows] == [0.0, 0.0, 6.0]
    # pixel centre (15, 11) of the fixed image: x = 500000 + 15.5 * 5, y = 4000000 - 11.5 * 5
    assert (float(rows[0]["fixed_map_x"]), float(rows[0]["fixed_map_y"])) == (500077.5, 3999942.5)
    # the georeferencings agree with H (moving origin 10 px right, 4 px down of the fixed one)
    for r in rows[:2]:
        assert abs(float(r["fixed_map_x"]) - float(r["moving_map_x"])) < 1e-6
        assert abs(float(r["fixed_map_y"]) - float(r["moving_map_y"])) < 1e-6


def test_write_tie_points_csv_all_points_file_inliers(tmp_path):
    fixed, moving = _rasters(True)
    xf, xm, inl = _points()
    rows = tie_points(H, xf, xm, inl, fixed, moving)
    write_tie_points(tmp_path / "t.csv", tmp_path / "t.points", rows, fixed)
    with open(tmp_path / "t.csv", newline="") as f:
        back = list(csv.DictReader(f))
    assert len(back) == 3 and tuple(back[0]) == CSV_FIELDS
    lines = (tmp_path / "t.points").read_text().splitlines()
    assert lines[0].startswith("#CRS: ") and "32618" in lines[0]
    assert lines[1] == "mapX,mapY,sourceX,sourceY,enable,dX,dY,residual"
    pts = [list(map(float, ln.split(","))) for ln in lines[2:]]
    assert len(pts) == 2  # the outlier is left out
    # QGIS: source pixels are corner-based with negative rows
    assert pts[0][:4] == [500077.5, 3999942.5, 5.5, -7.5] and pts[0][4] == 1


def test_write_tie_points_without_georeferencing_uses_fixed_pixels(tmp_path):
    fixed, moving = _rasters(False)
    xf, xm, inl = _points()
    rows = tie_points(H, xf, xm, inl, fixed, moving)
    assert rows[0]["fixed_map_x"] == "" and rows[0]["moving_map_y"] == ""
    write_tie_points(tmp_path / "t.csv", tmp_path / "t.points", rows, fixed)
    lines = (tmp_path / "t.points").read_text().splitlines()
    assert lines[0] == "mapX,mapY,sourceX,sourceY,enable,dX,dY,residual"
    assert list(map(float, lines[1].split(",")))[:4] == [15.5, -11.5, 5.5, -7.5]
