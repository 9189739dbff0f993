"""Compare two evaluation runs pair by pair.

    python -m pipelines.compare_runs BEFORE.csv[,MORE.csv] AFTER.csv [--method ours]
        [--method-after LABEL] [--tol 1e-6]

Reads the ``pairs.csv`` that ``python -m pipelines.evaluate registration`` writes (several
files on one side are merged, e.g. a run per set) and prints, for the pairs both hold: how
many are identical (status, reason, inliers, model, and H to ``--tol`` relative), each pair
that differs with its errors before and after, and per set the successes at 5 and 10 px, the
mean error of the pairs registered in both runs and the seconds (median and sum). A change
that should move no result is checked with it against the commit before.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import numpy as np

#: columns that must agree for two results to count as identical (H is compared numerically)
SAME = ("status", "reason", "num_inliers", "transform")


def read_runs(spec: str, method: str) -> dict[tuple[str, str], dict]:
    """Rows of ``method`` from comma-separated pairs.csv paths, keyed by (set, pair)."""
    rows = {}
    for path in spec.split(","):
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                if r["method"] == method:
                    rows[(r["set"], r["pair"])] = r
    return rows


def error(row: dict) -> float:
    """A row's error in px (inf for a failure)."""
    try:
        return float(row["error_px"])
    except (KeyError, ValueError):
        return float("inf")


def differences(a: dict, b: dict, tol: float = 1e-6) -> list[str]:
    """Names of what differs between two rows of one pair ([] when identical)."""
    out = [c for c in SAME if a.get(c) != b.get(c)]
    ha = np.array(json.loads(a["H"])) if a.get("H") else None
    hb = np.array(json.loads(b["H"])) if b.get("H") else None
    if (ha is None) != (hb is None) or (
            ha is not None and np.abs(ha - hb).max() > tol * max(1.0, np.abs(ha).max())):
        out.append("H")
    return out


def compare(a: dict, b: dict, tol: float = 1e-6) -> tuple[list[str], dict[str, dict]]:
    """(lines naming each pair that differs, per-set summary) for rows keyed by (set, pair)."""
    keys = [k for k in b if k in a]
    lines = []
    for k in keys:
        d = differences(a[k], b[k], tol)
        if d:
            lines.append(f"{k[0]:8s} {k[1]:40s} {','.join(d):28s} {a[k]['status']}->"
                         f"{b[k]['status']} err {error(a[k]):.2f}->{error(b[k]):.2f} inliers "
                         f"{a[k].get('num_inliers')}->{b[k].get('num_inliers')}")
    summary = {}
    for s in sorted({k[0] for k in keys}):
        ks = [k for k in keys if k[0] == s]
        both = [k for k in ks if np.isfinite(error(a[k])) and np.isfinite(error(b[k]))]
        sec = [[float(r[k]["seconds"]) for k in ks] for r in (a, b)]
        summary[s] = {
            "pairs": len(ks), "identical": sum(not differences(a[k], b[k], tol) for k in ks),
            "at5": [sum(error(r[k]) <= 5 for k in ks) for r in (a, b)],
            "at10": [sum(error(r[k]) <= 10 for k in ks) for r in (a, b)],
            "mean_err_both": [float(np.mean([error(r[k]) for k in both])) if both else None
                              for r in (a, b)],
            "median_s": [statistics.median(v) for v in sec], "sum_s": [sum(v) for v in sec]}
    return lines, summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.compare_runs",
                                description=__doc__.split("\n")[0])
    p.add_argument("before", help="pairs.csv of the run before (comma-separated to merge)")
    p.add_argument("after", help="pairs.csv of the run after (comma-separated to merge)")
    p.add_argument("--method", default="ours", help="method (label) of the rows compared")
    p.add_argument("--method-after", default=None,
                   help="the after run's method when it differs (a run with --label)")
    p.add_argument("--tol", type=float, default=1e-6, help="relative tolerance on H")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for spec in (args.before, args.after):
        missing = [f for f in spec.split(",") if not Path(f).is_file()]
        if missing:
            print(f"error: {', '.join(missing)} not found; pass the pairs.csv files that "
                  "pipelines.evaluate wrote", file=sys.stderr)
            return 2
    a = read_runs(args.before, args.method)
    b = read_runs(args.after, args.method_after or args.method)
    lines, summary = compare(a, b, args.tol)
    n = sum(v["pairs"] for v in summary.values())
    same = sum(v["identical"] for v in summary.values())
    print(f"{same}/{n} pairs identical ({len(a)} before, {len(b)} after)")
    for line in lines:
        print("  " + line)
    for s, v in summary.items():
        me = " -> ".join("-" if m is None else f"{m:.3f}" for m in v["mean_err_both"])
        print(f"{s}: @5px {v['at5'][0]} -> {v['at5'][1]}, @10px {v['at10'][0]} -> "
              f"{v['at10'][1]} of {v['pairs']}; mean error (registered in both) {me} px; "
              f"median s {v['median_s'][0]:.2f} -> {v['median_s'][1]:.2f}, sum "
              f"{v['sum_s'][0]:.1f} -> {v['sum_s'][1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
