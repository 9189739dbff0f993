"""Audit a ground truth where a registration disagrees with it: is the result wrong, or the truth?

    python -m pipelines.audit_truth RUN/pairs.csv [--min-error 5] [--sets vis-nir]
        [--method ours] [--out DIR] [--results docs/results.md] [--section NAME]

For each accepted ("ok") pair of an evaluation run (``python -m pipelines.evaluate
registration``) more than ``--min-error`` px from its truth, an independent witness is fitted:
plain SIFT correspondences (Lowe's ratio 0.8) and OpenCV's RANSAC affine (3 px, 20,000
iterations), which share no code with the registration's matching. The audit reports the
witness's inliers, how far the *truth* puts those inlier correspondences from each other (the
median residual and its mean vector: a truth that is right leaves a residual of a pixel or two;
a consistent vector of many pixels says the truth is off there) and how far the run's transform
and the witness's are apart over the image. A witness with fewer than ``--min-inliers`` inliers
says nothing (SIFT fails on optical-SAR and on most thermal pairs).

It also measures every pair of the run in both images' pixels: the run's error is the mean
checkpoint distance in *fixed* px, but a truth made at the moving image's resolution (SRIF
optical-SAR: the optical image, 155-511 px, resized to the 256 px SAR frame) states its own
accuracy in moving px, and an error of 6 fixed px is 3 such px where the fixed image is twice
as fine. ``error_moving_px`` is the mean distance, in moving px, between the run's inverse
transform of the true fixed checkpoints and the moving checkpoints; the table "in each image's
pixels" gives both success rates at ``--min-error`` px per set.

Homography truths only (the dense MSRS fields are not audited). Outputs in ``--out`` (default
``runs/audit_truth``): ``config.json``, ``audit.csv`` and ``frames.csv`` (every pair's error
in both frames).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from pipelines.compare_runs import error, read_runs
from pipelines.datasets import all_pairs, load_pair, raster_shape
from pipelines.metrics import homography_checkpoints, pair_error
from pipelines.report import command_line, write_csv, write_section
from register.config import data_root
from register.geometry import transfer
from register.io import to_gray
from register.sift import sift_correspondences, to_u8

FIELDS = ["set", "pair", "error_px", "error_moving_px", "witness_inliers", "truth_residual_px",
          "truth_shift_x", "truth_shift_y", "witness_error_px", "run_vs_witness_px"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.audit_truth",
                                description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path, help="pairs.csv of an evaluation run")
    p.add_argument("--min-error", type=float, default=5.0, help="audit ok pairs above this (px)")
    p.add_argument("--min-inliers", type=int, default=20)
    p.add_argument("--sets", default="", help="comma-separated sets (default: all)")
    p.add_argument("--method", default="ours", help="the run's method to audit")
    p.add_argument("--out", type=Path, default=Path("runs/audit_truth"))
    p.add_argument("--results", type=Path, default=None, help="markdown file to update")
    p.add_argument("--section", default="audit_truth", help="its section to (re)write")
    return p


def witness(fixed_u8: np.ndarray, moving_u8: np.ndarray, *, seed: int = 0
            ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """SIFT + RANSAC affine: (H 3x3 moving px -> fixed px or None, inlier xy_moving,
    inlier xy_fixed), points (N, 2) float32 (x = column, y = row, 0-based)."""
    xy_m, xy_f = sift_correspondences(fixed_u8, moving_u8)
    empty = np.zeros((0, 2), np.float32)
    if len(xy_m) < 3:
        return None, empty, empty
    cv2.setRNGSeed(seed)
    A, inl = cv2.estimateAffine2D(xy_m, xy_f, ransacReprojThreshold=3.0, maxIters=20000,
                                  confidence=0.999)
    if A is None:
        return None, empty, empty
    keep = inl.ravel().astype(bool)
    return np.vstack([A, [0.0, 0.0, 1.0]]), xy_m[keep], xy_f[keep]


def audit_pair(pair, H_run: np.ndarray, *, min_inliers: int) -> dict:
    """The audit's numbers for one pair (see the module docstring); NaN where the witness has
    too few inliers."""
    fixed, moving = load_pair(pair)
    f, m = to_gray(fixed), to_gray(moving)
    H_true = pair.H_array
    Hw, in_m, in_f = witness(to_u8(f.image), to_u8(m.image))
    q_m, q_f = homography_checkpoints(H_true, f.image.shape, m.image.shape)
    e_fixed, e_moving = _in_both_frames(H_run, q_m, q_f)
    out = {"error_px": e_fixed, "error_moving_px": e_moving, "witness_inliers": len(in_m)}
    if Hw is None or len(in_m) < min_inliers:
        return {**out, **{k: float("nan") for k in FIELDS if k not in out and k not in
                          ("set", "pair")}}
    r = transfer(H_true, in_m) - in_f
    return {**out, "truth_residual_px": float(np.median(np.linalg.norm(r, axis=1))),
            "truth_shift_x": float(r[:, 0].mean()), "truth_shift_y": float(r[:, 1].mean()),
            "witness_error_px": pair_error(Hw, q_m, q_f),
            "run_vs_witness_px": pair_error(H_run, q_m, transfer(Hw, q_m))}


def _in_both_frames(H: np.ndarray, q_m: np.ndarray, q_f: np.ndarray) -> tuple[float, float]:
    """Mean error of ``H`` (moving px -> fixed px) at the checkpoints (``q_m`` moving, ``q_f``
    their true fixed positions): in fixed px, and in moving px through ``inv(H)``."""
    return pair_error(H, q_m, q_f), pair_error(np.linalg.inv(H), q_f, q_m)


def errors_both_frames(pair, row: dict, shapes: tuple | None = None) -> tuple[float, float]:
    """(error in fixed px, error in moving px) of a run's row on a homography-truth ``pair``;
    both inf when the row failed. ``shapes``: the (fixed, moving) image shapes, when known
    (else read from the files' headers)."""
    H = np.asarray(json.loads(row["H"]), np.float64).reshape(3, 3) \
        if row["status"] == "ok" and row["H"] else None
    if H is None:
        return float("inf"), float("inf")
    fs, ms = shapes or (raster_shape(pair.fixed), raster_shape(pair.moving))
    return _in_both_frames(H, *homography_checkpoints(pair.H_array, fs, ms))


def frames_table(run: Path, method: str, sets: set[str], pairs: dict, threshold: float
                 ) -> tuple[list[dict], list[str]]:
    """Every row of the run with a homography truth, its error in both frames, and a markdown
    table of the success rates at ``threshold`` px per set."""
    rows = []
    for r in read_runs(str(run), method).values():
        pair = pairs.get(r["pair"])
        if (sets and r["set"] not in sets) or pair is None or pair.H is None:
            continue
        fs, ms = raster_shape(pair.fixed), raster_shape(pair.moving)
        e_f, e_m = errors_both_frames(pair, r, (fs, ms))
        rows.append({"set": r["set"], "pair": r["pair"], "error_px": e_f, "error_moving_px": e_m,
                     "fixed_per_moving_px": max(fs) / max(ms)})
    t = f"{threshold:g}"
    lines = [f"| set | pairs | SR@{t} px in fixed px | SR@{t} px in moving px | fixed px per "
             "moving px (median, range) |", "|---|---|---|---|---|"]
    for s in dict.fromkeys(r["set"] for r in rows):
        sel = [r for r in rows if r["set"] == s]
        ratio = np.array([r["fixed_per_moving_px"] for r in sel])
        ok_f = sum(r["error_px"] <= threshold for r in sel)
        ok_m = sum(r["error_moving_px"] <= threshold for r in sel)
        lines.append(f"| {s} | {len(sel)} | {ok_f} ({100 * ok_f / len(sel):.0f} %) | {ok_m} "
                     f"({100 * ok_m / len(sel):.0f} %) | {np.median(ratio):.2f} "
                     f"({ratio.min():.2f}-{ratio.max():.2f}) |")
    return rows, lines


def _accepted(run: Path, method: str, min_error: float, sets: set[str]) -> list[dict]:
    """The run's ok rows of ``method`` more than ``min_error`` px off, in ``sets`` (all when
    empty)."""
    return [r for r in read_runs(str(run), method).values() if r["status"] == "ok" and r["H"]
            and error(r) > min_error and (not sets or r["set"] in sets)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.run.is_file():
        print(f"error: {args.run} is not a file; give the pairs.csv of an evaluation run "
              "(python -m pipelines.evaluate registration ... --out DIR)", file=sys.stderr)
        return 2
    sets = {s.strip() for s in args.sets.split(",") if s.strip()}
    pairs = {f"{p.set}/{p.name}": p for split in all_pairs(str(data_root())).values()
             for p in split}
    rows, skipped = [], []
    for r in _accepted(args.run, args.method, args.min_error, sets):
        pair = pairs.get(r["pair"])
        if pair is None or pair.H is None:
            skipped.append(r["pair"])
            continue
        H_run = np.asarray(json.loads(r["H"]), np.float64).reshape(3, 3)
        rows.append({"set": r["set"], "pair": r["pair"],
                     **audit_pair(pair, H_run, min_inliers=args.min_inliers)})
    both, frame_lines = frames_table(args.run, args.method, sets, pairs, args.min_error)
    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / "frames.csv", both)
    (args.out / "config.json").write_text(json.dumps(
        {k: str(v) for k, v in vars(args).items()}, indent=2) + "\n")
    _write(args.out / "audit.csv", rows, FIELDS)
    lines = ["| set | pair | run error (px) | in moving px | witness inliers | truth residual at "
             "witness inliers (px) | its mean vector (px) | witness error (px) | run vs "
             "witness (px) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['set']} | `{row['pair']}` | {row['error_px']:.2f} | "
                     f"{row['error_moving_px']:.2f} | "
                     f"{row['witness_inliers']} | {row['truth_residual_px']:.2f} | "
                     f"({row['truth_shift_x']:.1f}, {row['truth_shift_y']:.1f}) | "
                     f"{row['witness_error_px']:.2f} | {row['run_vs_witness_px']:.2f} |")
    if skipped:
        lines += ["", f"Not audited (a dense truth, or not a stored test or training pair, e.g. "
                      f"a synthetic validation pair): {len(skipped)} pairs."]
    lines += ["", "Every pair of the run, in each image's pixels:", ""] + frame_lines
    print("\n".join(lines))
    if args.results:
        write_section(args.results, args.section, "\n".join(lines),
                      command=command_line("pipelines.audit_truth", argv))
    return 0


def _write(path: Path, rows: list[dict], fields: list[str] | None = None) -> None:
    """``rows`` as CSV, floats to two decimals."""
    write_csv(path, [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}
                     for row in rows], fields or (None if rows else ["set", "pair"]))


if __name__ == "__main__":
    sys.exit(main())
