"""Georeferenced pixel geometry and the outputs of :mod:`pipelines.tiles`.

Pixel helpers shared by tile planning and output (:class:`Meta` and :func:`read_meta`,
:func:`px_map`, windows, :func:`shift_at`), and what is written once the tiles are registered:
the homography of a pair combined from its tiles (:func:`combine_tiles`), the aligned GeoTIFF
written block by block (:func:`write_aligned_windowed`), ``aligned/<pair>.json``
(:func:`finish_pair`), ``summary.csv`` / ``summary.geojson`` (:func:`write_summary`) and the
run's totals ``totals.json`` (:func:`write_totals`, read back by :func:`read_totals`).
Conventions (H, shift, the combination rule) are in the :mod:`pipelines.tiles` module doc.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from register.checks import InputError
from register.geometry import transfer, translation
from register.write import atomic_path, write_json

if TYPE_CHECKING:
    from pipelines.tiles import Pair

MIN_SIDE = 64  # windows smaller than this cannot be registered (read_image refuses them)
BLOCK = 512  # output block side written at a time by write_aligned_windowed
H_KEYS = [f"h{i}{j}" for i in range(3) for j in range(3)]
COLUMNS = (["level", "pair", "tile", "status", "reason", "fixed", "moving", "col_off", "row_off",
            "width", "height", "shift_x_px", "shift_y_px", "shift_east_m", "shift_north_m",
            "num_inliers", "num_matches", "rmse_px", "hypothesis", "seconds"] + H_KEYS
           + ["aligned"])

TOTALS_FILE = "totals.json"
#: Keys of ``totals.json``: the counts and timing :func:`pipelines.tiles.run_batch` returns.
TOTALS_KEYS = ("tiles", "done", "failed", "skipped", "pairs", "disjoint", "failed_total",
               "seconds", "tiles_per_s", "steady_tiles_per_s", "peak_worker_rss_mb")


#: Georeferencing of a raster on disk (none of its pixels is read).
Meta = NamedTuple("Meta", [("path", str), ("crs", Any), ("transform", Any), ("width", int),
                           ("height", int), ("count", int), ("dtype", str), ("nodata", Any)])


def read_meta(path: str | Path) -> Meta:
    """Open ``path`` and return its :class:`Meta`; InputError when unreadable or not
    georeferenced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                m = Meta(str(path), src.crs, src.transform, src.width, src.height, src.count,
                         src.dtypes[0], src.nodata)
    except RasterioIOError as exc:
        raise InputError(f"{path}: not a readable raster ({str(exc).splitlines()[0]})") from None
    if m.crs is None or m.transform.is_identity:
        raise InputError(f"{path}: has no CRS / geotransform; batch tile registration needs "
                         "georeferenced rasters (use python -m register.run for a plain pair)")
    return m


def px_map(xy: np.ndarray, src: Meta, dst: Meta) -> np.ndarray:
    """(N, 2) pixels of ``src`` (0-based centres) -> (N, 2) pixels of ``dst`` through the
    georeferencing, reprojecting when the CRSs differ."""
    from rasterio.warp import transform as crs_transform

    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    X, Y = src.transform @ (xy[:, 0] + 0.5, xy[:, 1] + 0.5)
    if src.crs != dst.crs:
        X, Y = crs_transform(src.crs, dst.crs, np.asarray(X), np.asarray(Y))
    u, v = ~dst.transform @ (np.asarray(X, np.float64), np.asarray(Y, np.float64))
    return np.c_[np.asarray(u) - 0.5, np.asarray(v) - 0.5]


def boundary(win: Window, n: int = 9) -> np.ndarray:
    """(4n, 2) points along the outer pixel edges of ``win`` (centre convention); the ring goes
    down the left edge first, i.e. counter-clockwise on a north-up map."""
    c0, r0 = win.col_off - 0.5, win.row_off - 0.5
    c1, r1 = c0 + win.width, r0 + win.height
    t = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
    corners = np.array([[c0, r0], [c0, r1], [c1, r1], [c1, r0], [c0, r0]])
    return np.concatenate([a + t * (b - a) for a, b in zip(corners[:-1], corners[1:])])


def bbox_window(xy: np.ndarray, width: int, height: int, pad: int = 0) -> Window | None:
    """Smallest pixel window covering points ``xy`` (centre convention), padded by ``pad`` and
    clipped to ``width`` x ``height``; None when nothing is left."""
    if not np.isfinite(xy).all():
        return None
    lo, hi = xy.min(0) + 0.5, xy.max(0) + 0.5  # corner convention
    c0, r0 = (max(0, int(math.floor(v + 1e-6)) - pad) for v in lo)
    c1, r1 = (min(n, int(math.ceil(v - 1e-6)) + pad) for v, n in zip(hi, (width, height)))
    return Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None


def grow(win: Window, width: int, height: int, n: int = MIN_SIDE) -> Window:
    """``win`` enlarged inside the raster to at least ``n`` px a side where the raster allows."""
    def side(a0, length, size):
        a0 = a0 if length >= n else max(0, min(a0, size - n))
        return a0, max(length, min(size, a0 + n) - a0)
    (c0, w), (r0, h) = (side(int(win.col_off), int(win.width), width),
                        side(int(win.row_off), int(win.height), height))
    return Window(c0, r0, w, h)


def shift_at(H: np.ndarray, c: np.ndarray, fixed: Meta, moving: Meta) -> dict:
    """Correction of the moving georeferencing at fixed pixel ``c`` (see the
    :mod:`pipelines.tiles` module doc)."""
    q = transfer(H, px_map(np.asarray(c, np.float64)[None], fixed, moving))[0]
    dx, dy = q - np.asarray(c, np.float64)
    X, Y = fixed.transform @ (np.array([q[0], c[0]]) + 0.5, np.array([q[1], c[1]]) + 0.5)
    de, dn = X[0] - X[1], Y[0] - Y[1]
    if fixed.crs.is_geographic:  # degrees -> metres, local approximation
        de, dn = de * 111_320.0 * math.cos(math.radians(Y[1])), dn * 110_574.0
    elif fixed.crs.linear_units not in ("metre", "meter", "m"):
        f = float(fixed.crs.linear_units_factor[1])
        de, dn = de * f, dn * f
    return {"shift_x_px": float(dx), "shift_y_px": float(dy), "shift_east_m": float(de),
            "shift_north_m": float(dn)}


def window_centre(win: Window) -> np.ndarray:
    return np.array([win.col_off + (win.width - 1) / 2, win.row_off + (win.height - 1) / 2])


def window_list(win: Window) -> list[int]:  # [col_off, row_off, width, height], JSON-friendly
    return [int(win.col_off), int(win.row_off), int(win.width), int(win.height)]


def digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def combine_tiles(records: list[dict], *, tol_px: float = 2.0
                  ) -> tuple[np.ndarray | None, list[str]]:
    """One homography for a pair from its registered tiles (rule in the :mod:`pipelines.tiles`
    module doc).

    Returns ``(H or None, names of the tiles used)``.
    """
    ok = [r for r in records if r["status"] == "ok" and r.get("H") is not None]
    if not ok:
        return None, []
    s = np.array([[r["shift_x_px"], r["shift_y_px"]] for r in ok])
    dev = np.hypot(*(s - np.median(s, 0)).T)
    keep = dev <= max(tol_px, 3 * 1.4826 * float(np.median(dev)))
    src, dst, used = [], [], []
    for r in (r for r, k in zip(ok, keep) if k):
        c, ro, w, h = r["fixed_window"]
        gx, gy = np.meshgrid(np.linspace(c, c + w - 1, 3), np.linspace(ro, ro + h - 1, 3))
        fp = np.c_[gx.ravel(), gy.ravel()]
        src.append(transfer(np.linalg.inv(np.asarray(r["H"])), fp))
        dst.append(fp)
        used.append(r["tile"])
    H, _ = cv2.findHomography(np.vstack(src), np.vstack(dst), 0)
    if H is None or not np.isfinite(H).all():
        return None, []
    return H / H[2, 2], used


def write_aligned_windowed(dest: Path, fixed: Meta, moving: Meta, H: np.ndarray,
                           window: Window, *, block: int = BLOCK) -> None:
    """Resample ``moving`` with ``H`` (moving px -> fixed px, whole rasters) onto the fixed grid
    over ``window`` and write it atomically, block by block so memory does not grow with the
    scene: :func:`register.warp.write_aligned_blocks`, as the command line's ``aligned.tif``
    (all bands, dtype and band metadata of ``moving``; its nodata value, or an internal mask
    band when it declares none)."""
    from register.warp import write_aligned_blocks

    write_aligned_blocks(dest, moving.path, translation(-window.col_off, -window.row_off) @ H,
                         shape=(int(window.height), int(window.width)), crs=fixed.crs,
                         transform=rasterio.windows.transform(window, fixed.transform),
                         block=block)


def polygon(win: Window, fixed: Meta) -> list:
    """Closed counter-clockwise lon/lat ring (EPSG:4326) of a fixed-grid window."""
    from rasterio.warp import transform as crs_transform

    xy = boundary(win, 3) + 0.5
    X, Y = fixed.transform @ (xy[:, 0], xy[:, 1])
    lon, lat = crs_transform(fixed.crs, "EPSG:4326", np.asarray(X), np.asarray(Y))
    ring = [[round(a, 8), round(b, 8)] for a, b in zip(lon, lat)]
    return ring + ring[:1]


def summary_row(level: str, pair: Pair, rec: dict, win: Window, aligned: str = "") -> dict:
    """A summary row (COLUMNS) of a tile or pair record."""
    row = {k: rec.get(k) for k in COLUMNS}
    row.update(level=level, pair=pair.name, fixed=pair.fixed.path, moving=pair.moving.path,
               aligned=aligned, **dict(zip(["col_off", "row_off", "width", "height"],
                                           window_list(win))))
    if rec.get("H") is not None:
        row.update(zip(H_KEYS, np.ravel(rec["H"]).tolist()))
    return {k: ("" if v is None else v) for k, v in row.items()}


def write_summary(out: Path, rows: list[tuple[dict, list]]) -> None:
    """``summary.csv`` (COLUMNS) and ``summary.geojson`` (the same rows as polygon features)."""
    with atomic_path(out / "summary.csv") as tmp, open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=COLUMNS)
        wr.writeheader()
        wr.writerows(r for r, _ in rows)
    feats = [{"type": "Feature", "properties": r,
              "geometry": {"type": "Polygon", "coordinates": [ring]}} for r, ring in rows]
    write_json(out / "summary.geojson", {"type": "FeatureCollection", "features": feats})


def write_totals(out: Path, totals: dict) -> None:
    """``out/totals.json``: the run's totals (:data:`TOTALS_KEYS`, as returned by
    :func:`pipelines.tiles.run_batch`; the final stderr line of ``pipelines.tiles`` prints the
    same numbers), written atomically."""
    missing = [k for k in TOTALS_KEYS if k not in totals]
    if missing:
        raise ValueError(f"run totals lack {missing}; expected the keys {list(TOTALS_KEYS)}")
    write_json(Path(out) / TOTALS_FILE, {k: totals[k] for k in TOTALS_KEYS})


def read_totals(out: str | Path) -> dict:
    """The totals of the last finished run of ``pipelines.tiles`` into ``out`` (``totals.json``:
    ``tiles`` / ``done`` / ``failed`` / ``skipped`` / ``pairs`` / ``disjoint`` /
    ``failed_total`` counts, ``seconds`` of the tile stage, ``tiles_per_s``,
    ``steady_tiles_per_s`` and ``peak_worker_rss_mb``, the largest peak resident memory of a
    process that registered a tile in that run); InputError when it is missing or incomplete."""
    path = Path(out) / TOTALS_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: not found; expected the totals pipelines.tiles writes when a "
                         "run finishes (exit 0 or 1); run pipelines.tiles into that folder "
                         "first") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc}); expected a JSON object; rerun "
                         "pipelines.tiles into that folder") from None
    missing = [k for k in TOTALS_KEYS if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise InputError(f"{path}: lacks {missing}; expected the keys {list(TOTALS_KEYS)}; "
                         "rerun pipelines.tiles into that folder")
    return doc


def finish_pair(pair: Pair, records: list[dict], out: Path, *, fresh: bool) -> dict:
    """Combine the tiles of ``pair``; write its aligned output unless an identical complete one
    exists (and ``fresh`` is False), then ``aligned/<pair>.json``; return its summary row."""
    H, used = combine_tiles(records)
    tif, doc = out / "aligned" / f"{pair.name}.tif", out / "aligned" / f"{pair.name}.json"
    tiles_digest = digest([[r["key"], r["status"], r.get("H")] for r in records])
    nok = sum(r["status"] == "ok" for r in records)
    rms = [r["rmse_px"] for r in records if r["tile"] in used]
    rec = {"pair": pair.name, "fixed": pair.fixed.path, "moving": pair.moving.path,
           "status": "ok" if H is not None else "failed",
           "reason": "" if H is not None else f"none of the {len(records)} tiles registered",
           "H": None if H is None else H.tolist(), "tiles_used": used,
           "tiles_digest": tiles_digest,
           "num_inliers": sum(r["num_inliers"] for r in records if r["tile"] in used),
           "num_matches": sum(r["num_matches"] for r in records if r["tile"] in used),
           "rmse_px": float(np.median(rms)) if rms else None,
           "hypothesis": f"combined from {len(used)} of {nok} registered tiles "
                         f"({len(records)} in all)",
           "seconds": round(sum(r.get("seconds", 0) for r in records), 3)}
    if H is None:
        tif.unlink(missing_ok=True)
    else:
        rec.update(shift_at(H, window_centre(pair.overlap), pair.fixed, pair.moving))
        try:
            with rasterio.open(tif) as src:
                same = (json.loads(doc.read_text()).get("tiles_digest") == tiles_digest
                        and (src.width, src.height) == (pair.overlap.width, pair.overlap.height))
        except (OSError, ValueError, RasterioIOError):
            same = False
        if fresh or not same:
            write_aligned_windowed(tif, pair.fixed, pair.moving, H, pair.overlap)
    write_json(doc, rec)
    return summary_row("pair", pair, rec, pair.overlap, str(tif) if H is not None else "")
