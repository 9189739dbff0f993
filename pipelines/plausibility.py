"""How far accepted transforms bend away from an affine one, right ones and wrong ones.

    python -m pipelines.plausibility RUN_DIR [RUN_DIR ...] [--out DIR] [--results docs/results.md]

Evidence for ``Policy.max_affine_deviation`` and ``Policy.bent_min_z``. Each ``RUN_DIR`` is the
output folder of a ``python -m pipelines.evaluate registration --split val ...`` run made with
the rule switched off (``--config pipelines/configs/no_bend_check.json``), so that every
transform the structural check or the SIFT correspondences confirmed is in its ``pairs.csv``
with its checkpoint error, its check z and ``affine_deviation_px`` (working-resolution fixed px,
:func:`register.estimate.affine_deviation`). Validation pairs only: the program refuses a run
made on the test split.

The table groups the accepted results by their error (right <= 10 px, off 10-20 px, wrong >
20 px) and gives, per group, how many bend more than the limit, the largest bend and the largest
z among those that bend; below it, each result that bends more than the limit. A threshold is
sound when right results stay under it, and a bent result passes only with z >= bent_min_z.

Outputs in ``--out`` (default ``runs/plausibility``): ``config.json`` and ``results.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from pipelines.report import command_line, publish
from register.config import config_from_dict
from register.decide import Policy

GROUPS = (("right (<= 10 px)", -math.inf, 10.0), ("off (10-20 px)", 10.0, 20.0),
          ("wrong (> 20 px)", 20.0, math.inf))


def accepted_rows(run_dir: Path) -> list[dict]:
    """The ``ours`` rows of a validation run that were accepted (status ok), with floats:
    ``error`` (mean checkpoint error, full-resolution fixed px), ``z`` (check z), ``bend``
    (``affine_deviation_px``, working-resolution fixed px) and ``kp`` (SIFT correspondences the
    transform explains, 0 when there was no SIFT hypothesis).

    Raises:
        ValueError: the run is not a validation run, was made with the bend rule on, or its
            ``pairs.csv`` predates the ``affine_deviation_px`` column.
    """
    cfg = json.loads((run_dir / "config.json").read_text())
    if cfg.get("split") != "val" or cfg.get("include"):
        raise ValueError(f"{run_dir} is not a validation run of its own (split "
                         f"{cfg.get('split')!r}, include {cfg.get('include')!r}); evidence for "
                         "a threshold must not come from test pairs")
    if config_from_dict(cfg.get("ours_config") or {"max_affine_deviation": 0.0}
                        ).policy.max_affine_deviation > 0:
        raise ValueError(f"{run_dir} was made with the bend rule on, so bent results were "
                         "already failed; rerun it with --config "
                         "pipelines/configs/no_bend_check.json")
    out = []
    with open(run_dir / "pairs.csv", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"affine_deviation_px", "keypoint_support"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{run_dir / 'pairs.csv'} has no {sorted(missing)} columns (made "
                             "before they existed); rerun the evaluation with the current code")
        for r in reader:
            if not r["method"].startswith("ours") or r["status"] != "ok":
                continue
            if not r["pair"].startswith("val_"):
                raise ValueError(f"{run_dir}: pair {r['pair']!r} is not a validation pair")
            out.append({"run": run_dir.name, "pair": r["pair"], "error": float(r["error_px"]),
                        "z": float(r["verify_z"]), "bend": float(r["affine_deviation_px"]),
                        "kp": int(r["keypoint_support"] or 0)})
    return out


def summary(rows: list[dict], limit: float, min_z: float,
            min_keypoints: int = Policy.keypoint_confirm_inliers) -> str:
    """Markdown table of :func:`accepted_rows` against a bend ``limit`` (working px), the check
    z ``min_z`` a bent result needs, and the SIFT support ``min_keypoints`` that also keeps it."""
    lines = [f"Accepted results with the rule off; bend limit {limit:g} px (working resolution), "
             f"bent results need z >= {min_z:g} or {min_keypoints} SIFT correspondences. Errors "
             "are mean checkpoint errors in full-resolution fixed px.", "",
             "| accepted result | count | largest bend (px) | bend > limit | of those, z >= "
             f"{min_z:g} |", "|---|---|---|---|---|"]
    for name, lo, hi in GROUPS:
        g = [r for r in rows if lo < r["error"] <= hi]
        bent = [r for r in g if r["bend"] > limit]
        big = f"{max(r['bend'] for r in g):.1f}" if g else "–"
        lines.append(f"| {name} | {len(g)} | {big} | {len(bent)} | "
                     f"{sum(r['z'] >= min_z for r in bent)} |")
    bent = sorted((r for r in rows if r["bend"] > limit), key=lambda r: -r["bend"])
    if bent:
        lines += ["", "| run | pair | error (px) | bend (px) | check z | SIFT support | "
                      "kept by the rule |", "|---|---|---|---|---|---|---|"]
        for r in bent:
            kept = "yes" if r["z"] >= min_z or r["kp"] >= min_keypoints else "no (failed)"
            lines.append(f"| {r['run']} | {r['pair']} | {r['error']:.1f} | {r['bend']:.1f} | "
                         f"{r['z']:.1f} | {r['kp']} | {kept} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.plausibility",
                                description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="output folders of validation runs")
    p.add_argument("--limit", type=float, default=Policy.max_affine_deviation,
                   help="bend limit in working px (default: the Config's)")
    p.add_argument("--min-z", type=float, default=Policy.bent_min_z,
                   help="check z a bent result needs (default: the Config's)")
    p.add_argument("--out", type=Path, default=Path("runs/plausibility"))
    p.add_argument("--results", type=Path, default=None,
                   help="markdown file whose evaluate:plausibility section is rewritten")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rows = [r for run in args.runs for r in accepted_rows(run)]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("error: no accepted results in the given runs", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    command = command_line("pipelines.plausibility", argv)
    (args.out / "config.json").write_text(json.dumps(
        {"command": command, "runs": [str(r) for r in args.runs], "limit": args.limit,
         "min_z": args.min_z}, indent=2) + "\n")
    publish(summary(rows, args.limit, args.min_z), out_dir=args.out, title="plausibility",
            command=command, results=args.results, section="evaluate:plausibility")
    return 0


if __name__ == "__main__":
    sys.exit(main())
