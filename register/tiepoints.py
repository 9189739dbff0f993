"""Tie points: the matches behind a transform, for GIS tools that want the points themselves.

:func:`tie_points` lists every selected match with its residual under the transform and its
inlier flag, in pixels (x = column, y = row, 0-based pixel centres) and, for georeferenced
rasters, in map coordinates. :func:`write_tie_points` writes them as ``tiepoints.csv`` and as a
QGIS georeferencer ``.points`` file (inliers only) that georeferences the moving image onto the
fixed one; GDAL can use the same points as ground control points (see the README).
"""
from __future__ import annotations

import csv
import os

import numpy as np

from .geometry import transfer
from .io import Raster, full_grid
from .write import atomic_path

#: columns of ``tiepoints.csv``; the ``*_map_*`` ones are empty without georeferencing
CSV_FIELDS = ("fixed_x", "fixed_y", "moving_x", "moving_y", "fixed_map_x", "fixed_map_y",
              "moving_map_x", "moving_map_y", "residual_px", "inlier")


def _map_xy(raster: Raster, xy: np.ndarray) -> np.ndarray | None:
    """Map coordinates (N, 2) float64 of pixel centres ``xy`` (0-based), or None without
    georeferencing (rasterio's affine maps pixel *corners*, hence the half pixel)."""
    t = full_grid(raster)[1]  # xy are full-resolution px, also for a raster read decimated
    if t is None:
        return None
    x, y = xy[:, 0] + 0.5, xy[:, 1] + 0.5
    return np.c_[t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f]


def tie_points(H: np.ndarray, xy_fixed: np.ndarray, xy_moving: np.ndarray,
               inliers: np.ndarray, fixed: Raster, moving: Raster) -> list[dict]:
    """One row per match (:data:`CSV_FIELDS`).

    Args:
        H: (3, 3) transform, moving px -> fixed px, full resolution.
        xy_fixed, xy_moving: (N, 2) float32 matched pixels (x = column, y = row, 0-based).
        inliers: (N,) bool, RANSAC's inliers.
        fixed, moving: the rasters, for their georeferencing.
    """
    xf, xm = np.asarray(xy_fixed, np.float64), np.asarray(xy_moving, np.float64)
    resid = np.linalg.norm(transfer(H, xm) - xf, axis=1) if len(xm) else np.zeros(0)
    mf, mm = _map_xy(fixed, xf), _map_xy(moving, xm)
    rows = []
    for i in range(len(xf)):
        rows.append({"fixed_x": f"{xf[i, 0]:.3f}", "fixed_y": f"{xf[i, 1]:.3f}",
                     "moving_x": f"{xm[i, 0]:.3f}", "moving_y": f"{xm[i, 1]:.3f}",
                     "fixed_map_x": "" if mf is None else f"{mf[i, 0]:.4f}",
                     "fixed_map_y": "" if mf is None else f"{mf[i, 1]:.4f}",
                     "moving_map_x": "" if mm is None else f"{mm[i, 0]:.4f}",
                     "moving_map_y": "" if mm is None else f"{mm[i, 1]:.4f}",
                     "residual_px": f"{resid[i]:.3f}", "inlier": int(bool(inliers[i]))})
    return rows


def write_tie_points(dest_csv: str | os.PathLike, dest_points: str | os.PathLike,
                     rows: list[dict], fixed: Raster) -> None:
    """Write ``tiepoints.csv`` (every row) and the QGIS ``.points`` file (inliers), atomically.

    The ``.points`` file georeferences the *moving* image: its source coordinates are moving
    pixels in QGIS's convention (pixel corners, rows negative), its map coordinates the fixed
    image's map coordinates (its CRS, named on the first line), or fixed pixels the same way
    when the fixed image is not georeferenced.
    """
    with atomic_path(dest_csv) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_FIELDS))
        w.writeheader()
        w.writerows(rows)
    with atomic_path(dest_points) as tmp, open(tmp, "w", newline="") as f:
        crs = full_grid(fixed)[0]
        if crs is not None:
            f.write(f"#CRS: {crs.to_wkt()}\n")
        f.write("mapX,mapY,sourceX,sourceY,enable,dX,dY,residual\n")
        for r in rows:
            if not r["inlier"]:
                continue
            if r["fixed_map_x"]:
                mx, my = r["fixed_map_x"], r["fixed_map_y"]
            else:
                mx = f"{float(r['fixed_x']) + 0.5:.3f}"
                my = f"{-(float(r['fixed_y']) + 0.5):.3f}"
            sx, sy = float(r["moving_x"]) + 0.5, -(float(r["moving_y"]) + 0.5)
            f.write(f"{mx},{my},{sx:.3f},{sy:.3f},1,0,0,{r['residual_px']}\n")
