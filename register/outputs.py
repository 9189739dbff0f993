"""Writing a registration's outputs: ``aligned.tif``, ``matches.png``, ``overlay.png`` and
``report.json``, atomically (everything goes to a temporary folder first)."""
from __future__ import annotations

import math
import platform
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from . import __version__
from .api import Result, as_raster
from .checks import InputError, check_output_dir
from .config import Config, config_to_dict
from .frames import is_sar
from .geometry import transfer
from .io import Raster, source_map, to_gray
from .write import write_json
from .tiepoints import tie_points, write_tie_points


def report(result: Result, fixed: str, moving: str, cfg: Config) -> dict:
    """The ``report.json`` document of a result."""
    import kornia
    import rasterio
    import torch

    doc = {"status": result.status}
    if not result.ok:
        doc["reason"] = result.reason
    doc.update({
        "fixed": str(fixed), "moving": str(moving),
        "homography_moving_to_fixed": None if result.H is None else result.H.tolist(),
        "closest_homography": None if result.closest_H is None else result.closest_H.tolist(),
        "num_keypoints": result.counts.get("num_keypoints", 0),
        "num_candidates": result.counts.get("num_candidates", 0),
        "num_matches": result.counts.get("num_matches", 0),
        "num_inliers": result.counts.get("num_inliers", 0),
        "inlier_rmse_px": None if not math.isfinite(result.rmse_px) else result.rmse_px,
        "hypothesis": result.hypothesis,
        "verification": result.verification,
        "candidates": result.candidates,
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "scorer": result.scorer, "device": result.scorer.get("device", "cpu"),
        "versions": {"register": __version__, "python": platform.python_version(),
                     "torch": torch.__version__, "kornia": kornia.__version__,
                     "opencv": cv2.__version__, "numpy": np.__version__,
                     "rasterio": rasterio.__version__},
        "config": config_to_dict(cfg),
    })
    return doc


OUTPUTS = ("aligned.tif", "matches.png", "overlay.png", "tiepoints.csv", "tiepoints.points",
           "report.json")


def figure_title(result: Result, fixed: Raster, moving: Raster) -> str:
    """A figure's title: which pair, the status, and the numbers that back it (or the reason
    it failed)."""
    names = f"{Path(moving.path).name or 'moving'} onto {Path(fixed.path).name or 'fixed'}"
    v = result.verification or {}
    if result.ok:
        return (f"OK — {names}: {result.counts.get('num_inliers', 0)} inliers, RMSE "
                f"{result.rmse_px:.2f} px, check z {v.get('z_at_zero_shift', float('nan')):.1f} "
                f"(confirmed by {v.get('confirmed_by', '?')})")
    closest = " Closest attempt shown." if result.closest_H is not None else ""
    return f"FAILED — {names}: {result.reason}.{closest}"


def write_figures(folder: Path, result: Result, fixed: Raster, moving: Raster,
                  cfg: Config) -> None:
    """``matches.png`` and ``overlay.png`` of a result, ok or failed (then with the closest
    attempt's matches and transform, when there is one), titled with the status."""
    from .frames import georef_homography
    from .plot import plot_matches, plot_overlay

    fg = to_gray(fixed, band=cfg.band_fixed)
    mg = to_gray(moving, band=cfg.band_moving, sar=is_sar(moving, cfg.modality),
                 sar_db=cfg.sar_db)
    title = figure_title(result, fixed, moving)
    # results are in full-resolution px; rasters read decimated show their decimated pixels
    Df, Dm = source_map(fixed), source_map(moving)

    def shown(H):
        return None if H is None else Df @ H @ np.linalg.inv(Dm)

    m = result.matches
    if m is not None:
        plot_matches(folder / "matches.png", fg.image, mg.image, transfer(Df, m.xy_fixed),
                     transfer(Dm, m.xy_moving), result.inliers, title=title)
    H_before = (georef_homography(fixed, moving)
                if fixed.georeferenced and moving.georeferenced else None)
    plot_overlay(folder / "overlay.png", fg.image, mg.image,
                 shown(result.H if result.ok else result.closest_H), title=title,
                 H_before=shown(H_before))


def write_outputs(result: Result, fixed: str | Path | Raster, moving: str | Path | Raster,
                  out_dir: str | Path, cfg: Config | None = None, *,
                  overwrite: bool = False, georef_fallback: bool = False,
                  progress=None) -> list[Path]:
    """Write ``aligned.tif``, ``matches.png``, ``overlay.png`` (when ok) and ``report.json`` into
    ``out_dir``, as the command line does.

    Args:
        result: what :func:`register.register_pair` returned for these inputs.
        fixed, moving: the same inputs (paths or rasters).
        out_dir: the output folder (created when missing).
        cfg: the config the result was made with (default ``Config()``), for the report and
            the figures' bands.
        overwrite: replace outputs an earlier run left in ``out_dir``; without it such a
            folder is refused, as by the command line.
        georef_fallback: when the result failed and both inputs are georeferenced, still
            write ``aligned.tif``, resampled by the georeferencing alone (the report's
            ``aligned_by`` says so; the status stays "failed").
        progress: called with a short message while a large ``aligned.tif`` is written.

    A failed result writes ``report.json`` and, unless ``cfg.make_figures`` is False, the
    figures of its closest attempt, titled FAILED with the reason.

    Returns:
        The files written. Everything is written into a temporary folder beside ``out_dir`` and
        moved into place at the end, so an interrupted run leaves no half-written output; a
        file an earlier run wrote that this result has no counterpart for is removed.

    Raises:
        InputError: ``out_dir`` cannot be written, or holds outputs and ``overwrite`` is False.
    """
    cfg = cfg or Config()
    existing = [n for n in OUTPUTS if (Path(out_dir) / n).exists()]
    if existing and not overwrite:
        raise InputError(f"{out_dir} already holds {', '.join(existing)}; pass overwrite=True "
                         "or choose another folder")
    check_output_dir(out_dir, "out_dir")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    fr, mr = as_raster(fixed), as_raster(moving)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_all(tmp, result, fr, mr, cfg, georef_fallback=georef_fallback, progress=progress)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            src = tmp / name
            if src.exists():
                src.replace(out / name)
                written.append(out / name)
            elif (out / name).exists():
                (out / name).unlink()  # stale output of an earlier run
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_all(folder: Path, result: Result, fr: Raster, mr: Raster, cfg: Config, *,
               georef_fallback: bool, progress=None) -> None:
    """Every output of :func:`write_outputs` into ``folder`` (a temporary one)."""
    from .warp import write_aligned

    said = [-1]

    def blocks(frac: float) -> None:  # a line every 10 % of a block-wise aligned.tif
        if progress is not None and int(frac * 10) > said[0]:
            said[0] = int(frac * 10)
            progress(f"writing aligned.tif: {100 * frac:.0f} %")

    if result.ok:
        write_aligned(folder / "aligned.tif", mr, result.H, fr, progress=blocks)
        m = result.matches
        write_tie_points(folder / "tiepoints.csv", folder / "tiepoints.points",
                         tie_points(result.H, m.xy_fixed, m.xy_moving, result.inliers, fr, mr),
                         fr)
    elif georef_fallback and fr.georeferenced and mr.georeferenced:
        from .frames import georef_homography

        write_aligned(folder / "aligned.tif", mr, georef_homography(fr, mr), fr, progress=blocks)
    if cfg.make_figures:
        write_figures(folder, result, fr, mr, cfg)
    doc = report(result, fr.path, mr.path, cfg)
    doc["aligned_by"] = ("registration" if result.ok else
                         "georeferencing (no correction confirmed)"
                         if (folder / "aligned.tif").exists() else None)
    write_json(folder / "report.json", doc)
