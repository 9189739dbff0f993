"""Batch registration of georeferenced rasters, tile by tile, locally or on a Dask cluster.

    python -m pipelines.tiles --fixed FIXED --moving MOVING --out-dir DIR [--workers N]
        [--threads N] [--scheduler ADDRESS] [--tile-size PX] [--margin PX] [--modality ...]
        [--device ...] [--model auto|random|PATH] [--max-keypoints N] [--config JSON]
        [--figures] [--retry-failed] [--overwrite] [--quiet]

FIXED / MOVING: a raster, a directory (searched recursively for .tif/.tiff/.vrt/.jp2/.img) or a
glob. Every (fixed, moving) pair whose georeferenced footprints overlap (reprojected into the
fixed CRS when the CRSs differ) is registered on its overlap window, split into near-equal tiles
of at most ``--tile-size`` fixed px. Per tile, the fixed window and the moving window covering it
(plus ``--margin`` moving px) are read with rasterio windows and passed to
:func:`register.register_pair`: memory is bounded by the tile size, not the scene size. Tiles
run in local worker processes (``--workers 1``: in-process) or, with ``--scheduler``, as one Dask
task per tile (each worker loads the network once; ``--device auto`` uses CUDA on GPU workers,
which score patches in batches of ``MatchConfig.batch_size``).

Outputs in DIR, each written atomically; a rerun skips tiles whose result is complete:
``config.json`` (resolved options), ``tiles/<pair>/<tile>.json`` (status, reason, H, shift,
inliers, residual; ``<tile>_matches.png`` with --figures), ``aligned/<pair>.tif`` (moving raster
resampled onto the fixed grid over the overlap window: tiled deflate GeoTIFF, all bands, moving
dtype) with ``aligned/<pair>.json`` (its H and tiles), ``summary.csv`` and ``summary.geojson``
(one row / EPSG:4326 polygon per pair and per tile), and ``totals.json`` (the run's tile counts,
tile-stage seconds and tiles/s: the numbers of the final stderr line, for programs to read).

H is moving full-raster px -> fixed full-raster px (x = column, y = row, 0-based). Shift: at a
tile centre ``c`` (fixed px) the georeferencing puts moving pixel ``p``; the registration puts
``p`` at ``H p``; ``shift_x_px, shift_y_px = H p - c`` is the correction to apply to the moving
georeferencing (``shift_east_m, shift_north_m``: the same in metres).

Aligned output, one H per pair: each registered tile's H is sampled at 3 x 3 points of its
window; tiles whose shift is over max(2 px, 3 robust sigma) from the median tile shift are
dropped; a least-squares homography is fitted to the rest (one tile gives its own H back).

Exit status: 0 all tiles registered, 1 some tile failed (recorded with its reason; outputs are
still written), 2 bad input or usage, or interrupted (finished tiles are kept: rerun to resume).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from pipelines.tiles_exec import Progress, execute
from pipelines.tiles_output import (MIN_SIDE, Meta, bbox_window, boundary, digest, finish_pair,
                                    grow, polygon, px_map, read_meta, shift_at, summary_row,
                                    window_centre, window_list, write_summary, write_totals)
from register.checks import InputError, check_output_dir
from register.config import DEVICES, MODALITIES, Config, config_from_dict, config_to_dict
from register.scorers import needs_network
from register.write import write_json

RASTER_EXTS = (".tif", ".tiff", ".vrt", ".jp2", ".img")
MIN_TILE = 128  # smallest --tile-size: tiles are then at least 64 px a side


def expand_inputs(spec: str, *, exclude: Path | None = None) -> list[Path]:
    """Rasters named by ``spec`` (a file, a directory searched recursively, or a glob), sorted,
    leaving out files under ``exclude`` (the output folder); InputError when none match."""
    p = Path(spec)
    if p.is_file():
        found = [p]
    else:
        names = p.rglob("*") if p.is_dir() else map(Path, glob.glob(spec, recursive=True))
        found = [f for f in names if f.is_file() and f.suffix.lower() in RASTER_EXTS]
    if exclude is not None:
        found = [f for f in found if exclude.resolve() not in f.resolve().parents]
    if not found:
        raise InputError(f"{spec!r} names no raster: expected a file, a directory or a glob "
                         f"matching {'/'.join(RASTER_EXTS)} files; check the path")
    return sorted(set(found))


def overlap_window(fixed: Meta, moving: Meta) -> Window | None:
    """Window of the fixed grid covered by the moving footprint (None when disjoint)."""
    try:
        xy = px_map(boundary(Window(0, 0, moving.width, moving.height)), moving, fixed)
    except Exception:  # noqa: BLE001 - e.g. points outside the CRS's domain
        return None
    return bbox_window(xy, fixed.width, fixed.height)


def split_tiles(win: Window, tile_size: int) -> list[Window]:
    """Split ``win`` into ceil(side / tile_size) near-equal tiles per axis (row-major)."""
    def cuts(off, length):
        n = max(1, math.ceil(length / tile_size))
        edges = [off + round(i * length / n) for i in range(n + 1)]
        return list(zip(edges[:-1], edges[1:]))
    return [Window(c0, r0, c1 - c0, r1 - r0)
            for r0, r1 in cuts(int(win.row_off), int(win.height))
            for c0, c1 in cuts(int(win.col_off), int(win.width))]


def moving_window(tile: Window, fixed: Meta, moving: Meta, margin: int) -> Window | None:
    """Moving-grid window covering the fixed ``tile`` plus ``margin`` moving pixels, or None
    when the moving raster covers less than 64 px a side of it."""
    win = bbox_window(px_map(boundary(tile), fixed, moving), moving.width, moving.height,
                       pad=margin)
    win = None if win is None else grow(win, moving.width, moving.height)
    return None if win is None or min(win.width, win.height) < MIN_SIDE else win


@dataclass
class Pair:
    """An overlapping (fixed, moving) pair: name, rasters, overlap on the fixed grid, tiles."""

    name: str
    fixed: Meta
    moving: Meta
    overlap: Window
    jobs: list


def find_pairs(fixed: list[Meta], moving: list[Meta]) -> tuple[list[Pair], int]:
    """Pairs whose overlap is at least 64 px a side, and the number of combinations left out
    because they do not overlap (a raster is never paired with itself)."""
    pairs, disjoint = [], 0
    for f in fixed:
        for m in moving:
            if Path(f.path).resolve() == Path(m.path).resolve():
                continue
            win = overlap_window(f, m)
            if win is None or min(win.width, win.height) < MIN_SIDE:
                disjoint += 1
            else:
                pairs.append(Pair(f"{Path(m.path).stem}__on__{Path(f.path).stem}", f, m, win, []))
    names = [p.name for p in pairs]
    for p in pairs:
        if names.count(p.name) > 1:
            p.name += "-" + digest([p.fixed.path, p.moving.path])[:8]
    return pairs, disjoint


def plan_jobs(pair: Pair, out: Path, cfg: Config, *, tile_size: int, margin: int, device: str,
              figures: bool) -> list[dict]:
    """One job dict per tile of ``pair`` (plain data, picklable for any executor). Its ``key``
    hashes both inputs (path, size, mtime), both windows and the config: a stored tile result
    with another key is stale."""
    cdict = config_to_dict(cfg)
    stamps = [[str(Path(p).resolve()), os.stat(p).st_size, os.stat(p).st_mtime_ns]
              for p in (pair.fixed.path, pair.moving.path)]
    keyed = {k: v for k, v in cdict.items() if k != "make_figures"}
    jobs = []
    for t in split_tiles(pair.overlap, tile_size):
        mw = moving_window(t, pair.fixed, pair.moving, margin)
        tile, folder = f"r{int(t.row_off)}_c{int(t.col_off)}", out / "tiles" / pair.name
        job = {"pair": pair.name, "tile": tile, "fixed": pair.fixed.path,
               "moving": pair.moving.path, "fixed_window": window_list(t),
               "moving_window": None if mw is None else window_list(mw), "config": cdict,
               "device": device, "json": str(folder / f"{tile}.json"),
               "figure": str(folder / f"{tile}_matches.png") if figures else ""}
        job["key"] = digest([stamps, job["fixed_window"], job["moving_window"], keyed])
        jobs.append(job)
    return jobs


def load_done(job: dict, *, retry_failed: bool) -> dict | None:
    """The stored record of ``job`` when complete and made from the same inputs and config,
    else None (the tile is registered again)."""
    try:
        rec = json.loads(Path(job["json"]).read_text())
    except (OSError, ValueError):
        return None
    if rec.get("key") != job["key"] or rec.get("status") not in ("ok", "failed"):
        return None
    if rec["status"] == "failed":
        return None if retry_failed else rec
    ok = rec.get("H") is not None and (not job["figure"] or Path(job["figure"]).exists())
    return rec if ok else None


def run_batch(fixed: str, moving: str, out_dir: str | Path, cfg: Config, *, tile_size: int = 512,
              margin: int = 32, workers: int = 1, threads: int | None = None,
              scheduler: str | None = None, device: str = "auto", figures: bool = False,
              retry_failed: bool = False, overwrite: bool = False, progress: bool = True,
              command: str = "") -> dict:
    """Register every overlapping (fixed, moving) pair tile by tile and write all outputs.

    ``threads``: threads per local worker for torch, OpenCV and the search's pool
    (:func:`register.threads.limit_threads`; default: CPU cores // workers). Returns counts:
    ``tiles``; ``done`` / ``failed`` (registered in this run); ``skipped`` (complete from an
    earlier run); ``failed_total`` (failed tiles in the final results); ``pairs``; ``disjoint``;
    ``seconds`` (wall time of the tile stage, worker start-up included); ``tiles_per_s`` (tiles
    registered per second of it); ``steady_tiles_per_s`` (from the first finished tile to the
    last, i.e. without start-up); ``peak_worker_rss_mb`` (the largest peak resident memory of
    a process that registered a tile in this run: with one local worker, the driver's). The
    same dict is written to ``<out_dir>/totals.json``
    (:func:`pipelines.tiles_output.read_totals` reads it back).

    Raises:
        InputError: no raster, non-georeferenced input, no overlapping pair, bad options.
    """
    if tile_size < MIN_TILE or margin < 0 or workers < 1 or (threads or 1) < 1:
        raise InputError(f"expected --tile-size >= {MIN_TILE}, --margin >= 0, --workers >= 1 "
                         f"and --threads >= 1; got {tile_size}, {margin}, {workers}, {threads}")
    out = check_output_dir(out_dir)  # before any work
    pairs, disjoint = _overlapping_pairs(fixed, moving, out)
    from register.score import load_model, resolve_device, resolve_precision

    if not scheduler:  # Dask workers resolve "auto" themselves
        device = str(resolve_device(device))
    net = needs_network(cfg.match)
    if net:  # fail early when the weights are missing; the structural scorer loads none
        load_model(cfg.model, "cpu", seed=cfg.seed)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    for p in pairs:
        p.jobs = plan_jobs(p, out, cfg, tile_size=tile_size, margin=margin, device=device,
                           figures=figures)
    jobs = [j for p in pairs for j in p.jobs]
    write_json(out / "config.json", {
        "command": command, "fixed": fixed, "moving": moving, "out_dir": str(out),
        "tile_size": tile_size, "margin": margin, "workers": workers, "threads": threads,
        "scheduler": scheduler, "device": device, "figures": figures,
        "retry_failed": retry_failed, "overwrite": overwrite,
        "pairs": [{"pair": p.name, "fixed": p.fixed.path, "moving": p.moving.path,
                   "overlap_window": window_list(p.overlap), "tiles": len(p.jobs)}
                  for p in pairs],
        "config": config_to_dict(cfg),
        # what precision "auto" means here; workers on other machines resolve their own
        "network_precision": resolve_precision(cfg.precision, device) if net else None})
    records, bar, seconds, stamps, todo = _register_tiles(
        pairs, jobs, out, overwrite=overwrite, retry_failed=retry_failed, progress=progress,
        how=dict(workers=workers, scheduler=scheduler, threads=threads,
                     model=(cfg.model, device, cfg.seed) if net else None))
    peak = max((records[j["key"]].get("peak_rss_mb") or 0.0 for j in todo
                if j["key"] in records), default=0.0)
    return _finish(pairs, jobs, records, out, bar, seconds, stamps, disjoint,
                   fresh={j["pair"] for j in todo}, overwrite=overwrite, peak_rss_mb=peak)


def _overlapping_pairs(fixed: str, moving: str, out: Path) -> tuple[list, int]:
    """The overlapping (fixed, moving) raster pairs of the inputs and the count of disjoint
    combinations; InputError when none overlaps."""
    fmeta = [read_meta(p) for p in expand_inputs(fixed, exclude=out)]
    mmeta = [read_meta(p) for p in expand_inputs(moving, exclude=out)]
    pairs, disjoint = find_pairs(fmeta, mmeta)
    if not pairs:
        raise InputError(f"no (fixed, moving) pair overlaps: {len(fmeta)} fixed x {len(mmeta)} "
                         f"moving raster(s) give {disjoint} combination(s) whose georeferenced "
                         "footprints are disjoint (or overlap by under 64 px); pick rasters "
                         "that cover the same ground")
    return pairs, disjoint


def _register_tiles(pairs: list, jobs: list[dict], out: Path, *, overwrite: bool,
                    retry_failed: bool, progress: bool, how: dict):
    """Register the tiles not complete from an earlier run, writing each tile's record as it
    finishes. Returns (records by key, the progress bar, seconds, finish stamps, jobs run)."""
    bar = Progress(len(jobs), enabled=progress)
    done = {j["key"]: None if overwrite else load_done(j, retry_failed=retry_failed)
            for j in jobs}
    records = {k: r for k, r in done.items() if r is not None}
    todo = [j for j in jobs if done[j["key"]] is None]
    bar.n["skipped"] = len(records)
    bar.draw()
    index = {p.name: p for p in pairs}
    stamps: list[float] = []

    def on_result(rec: dict) -> None:
        p = index[rec["pair"]]
        if rec["status"] == "ok":
            rec.update(shift_at(np.asarray(rec["H"]),
                                window_centre(Window(*rec["fixed_window"])), p.fixed, p.moving))
        write_json(out / "tiles" / p.name / f"{rec['tile']}.json", rec)
        records[rec["key"]] = rec
        bar.add("done" if rec["status"] == "ok" else "failed")
        stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    try:
        execute(todo, on_result, **how)
    finally:
        bar.draw(end="\n")
    return records, bar, time.perf_counter() - t0, stamps, todo


def _finish(pairs: list, jobs: list[dict], records: dict, out: Path, bar, seconds: float,
            stamps: list[float], disjoint: int, *, fresh: set, overwrite: bool,
            peak_rss_mb: float) -> dict:
    """Combine each pair's tiles, write the summaries and ``totals.json``; return the totals."""
    rows = []
    for p in pairs:
        recs = [records[j["key"]] for j in p.jobs]
        rows.append((finish_pair(p, recs, out, fresh=overwrite or p.name in fresh),
                     polygon(p.overlap, p.fixed)))
        rows += [(summary_row("tile", p, r, Window(*r["fixed_window"])),
                  polygon(Window(*r["fixed_window"]), p.fixed)) for r in recs]
    write_summary(out, rows)
    ran = bar.n["done"] + bar.n["failed"]
    totals = {"tiles": len(jobs), **bar.n, "pairs": len(pairs), "disjoint": disjoint,
              "failed_total": sum(records[j["key"]]["status"] != "ok" for j in jobs),
              "seconds": round(seconds, 3),
              "tiles_per_s": round(ran / seconds, 4) if ran else 0.0,
              "steady_tiles_per_s": round((ran - 1) / (stamps[-1] - stamps[0]), 4)
              if ran > 1 and stamps[-1] > stamps[0] else 0.0,
              "peak_worker_rss_mb": peak_rss_mb}
    write_totals(out, totals)
    return totals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.tiles",
        description="Register every overlapping pair of georeferenced FIXED / MOVING rasters tile "
                    "by tile; write aligned GeoTIFFs and a summary (CSV + GeoJSON). Resumable.")
    p.add_argument("--fixed", required=True, help="raster, directory of rasters, or glob")
    p.add_argument("--moving", required=True, help="raster, directory of rasters, or glob")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="local worker processes (1 = in-process); with --scheduler local, the "
                        "LocalCluster's workers; ignored with a scheduler address (default: "
                        "%(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads per local worker for torch, OpenCV and the search "
                        "(default: CPU cores // workers)")
    p.add_argument("--scheduler", default=None,
                   help="address of a running Dask distributed scheduler (tcp://host:8786), "
                        "or 'local' to start a Dask LocalCluster of --workers processes here")
    p.add_argument("--tile-size", type=int, default=512,
                   help="largest tile side, fixed px (default: %(default)s)")
    p.add_argument("--margin", type=int, default=32,
                   help="moving pixels read around each tile, the largest expected "
                        "misalignment (default: %(default)s)")
    p.add_argument("--modality", choices=MODALITIES, default="auto")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--model", default="auto",
                   help="'auto' (the shipped lite preset), 'lite', 'paper', a .pt path, or 'random' (plumbing tests only)")
    p.add_argument("--max-keypoints", type=int, default=None)
    p.add_argument("--config", type=Path, default=None,
                   help="JSON file of register.config.Config fields to override")
    p.add_argument("--figures", action="store_true", help="write a matches figure per tile")
    p.add_argument("--retry-failed", action="store_true", help="register failed tiles again")
    p.add_argument("--overwrite", action="store_true", help="ignore results of earlier runs")
    p.add_argument("--quiet", action="store_true", help="no progress line (the final summary line stays)")
    return p


def _config(args: argparse.Namespace) -> Config:
    """The registration config: ``--config`` JSON, then the explicit options on top."""
    try:
        values = dict(json.loads(args.config.read_text())) if args.config else {}
        values.update(modality=args.modality, model=args.model, make_figures=args.figures)
        if args.max_keypoints is not None:
            values["max_keypoints"] = args.max_keypoints
        return config_from_dict(values)
    except (OSError, TypeError, ValueError) as exc:
        raise InputError(f"--config {args.config}: expected a JSON object of "
                         f"register.config.Config fields ({exc}); fix the file") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m pipelines.tiles " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        stats = run_batch(args.fixed, args.moving, args.out_dir, _config(args),
                          tile_size=args.tile_size, margin=args.margin, workers=args.workers,
                          threads=args.threads, scheduler=args.scheduler, device=args.device,
                          figures=args.figures, retry_failed=args.retry_failed,
                          overwrite=args.overwrite, progress=not args.quiet, command=command)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nerror: interrupted; finished tiles are kept in {args.out_dir / 'tiles'}; rerun "
              "the same command to resume", file=sys.stderr)
        return 2
    print(f"{stats['pairs']} pair(s), {stats['tiles']} tile(s): done {stats['done']} / "
          f"failed {stats['failed']} / skipped {stats['skipped']} in {stats['seconds']:.1f}s "
          f"({stats['tiles_per_s']:.3f} tiles/s, {stats['steady_tiles_per_s']:.3f} after the "
          f"first tile; peak {stats['peak_worker_rss_mb']:.0f} MB per worker); "
          f"{stats['disjoint']} non-overlapping "
          f"combination(s) left out -> {args.out_dir / 'summary.csv'}", file=sys.stderr)
    return 1 if stats["failed_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
