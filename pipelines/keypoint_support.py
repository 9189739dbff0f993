"""How many SIFT correspondences a wrong transform explains by chance, and a right one.

    python -m pipelines.keypoint_support [--seeds 0 1 2] [--every 1] [--out DIR]
        [--results docs/results.md]

Evidence for ``Policy.keypoint_confirm_inliers``: a transform that explains that many SIFT
ratio-test correspondences (:func:`register.sift.keypoint_support`, each keypoint counted once)
is confirmed even when the global check's z is low. For every validation pair (held-out
*training* pairs under seeded random similarities, ``pipelines.datasets.validation_pairs``; no
test pair), at the pipeline's working resolution, it records

* ``truth``: the correspondences the ground-truth transform explains, and
* ``best``: those explained by the best similarity RANSAC finds among the correspondences (one
  per fixed keypoint) and that similarity's checkpoint error. When it is wrong (error > 20 px),
  ``best`` is the most a wrong transform explained on that pair: chance support.

Outputs in ``--out`` (default ``runs/keypoint_support``): ``config.json``, ``pairs.csv`` and
``results.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from pipelines import datasets
from pipelines.models import config_modality
from pipelines.metrics import checkpoints, pair_error
from pipelines.report import command_line, publish
from register.frames import working_images
from register.config import Config, config_to_dict
from register.sift import keypoint_support, sift_correspondences, to_u8

WRONG_PX = 20.0  # a similarity this far off (mean checkpoint error, fixed px) is wrong


def pair_support(pair: datasets.Pair, cfg: Config) -> dict:
    """SIFT correspondences of one pair and how many the truth and the best similarity explain.

    Correspondences and counts are at the pipeline's working resolution (``cfg.frames.work_max_side``,
    within ``cfg.estimate.ransac_threshold`` working px); ``best_error_px`` is the similarity's mean
    checkpoint error in full-resolution fixed pixels (inf when RANSAC found none).
    """
    fixed, moving = datasets.load_pair(pair)
    fw, mw, Sf, Sm = working_images(fixed, moving, cfg)
    xm, xf = sift_correspondences(to_u8(fw.image), to_u8(mw.image), fw.mask, mw.mask,
                                  max_keypoints=cfg.search.keypoint_max)
    truth = keypoint_support(Sf @ pair.H_array @ np.linalg.inv(Sm), xm, xf, cfg.estimate.ransac_threshold)
    row = {"set": pair.set, "pair": pair.name, "correspondences": len(xm), "truth": truth,
           "best": 0, "best_error_px": float("inf")}
    _, first = np.unique(np.round(xf, 1), axis=0, return_index=True)
    keep = np.sort(first)
    if len(keep) >= 3:
        A, _ = cv2.estimateAffinePartial2D(xm[keep], xf[keep], method=cv2.RANSAC,
                                           ransacReprojThreshold=cfg.estimate.ransac_threshold,
                                           maxIters=2000, confidence=0.999, refineIters=10)
        if A is not None and np.isfinite(A).all():
            H = np.vstack([A, [0.0, 0.0, 1.0]])
            row["best"] = keypoint_support(H, xm, xf, cfg.estimate.ransac_threshold)
            m_xy, f_xy = checkpoints(pair, fixed.shape, moving.shape)
            row["best_error_px"] = round(pair_error(np.linalg.inv(Sf) @ H @ Sm, m_xy, f_xy), 2)
    return row


def summary_table(rows: list[dict], threshold: int) -> str:
    """Markdown table per modality of ``pair_support`` rows (with a ``modality`` key): draws,
    wrong best similarities, the most a wrong one explained, and draws whose truth explains at
    least ``threshold``."""
    lines = ["| set | draws | wrong best similarity | most a wrong one explained | "
             f"truth explains >= {threshold} |", "|---|---|---|---|---|"]
    for s in dict.fromkeys(r["modality"] for r in rows):
        sel = [r for r in rows if r["modality"] == s]
        wrong = [r["best"] for r in sel if not r["best_error_px"] <= WRONG_PX]
        lines.append(f"| {s} | {len(sel)} | {len(wrong)} | {max(wrong, default=0)} | "
                     f"{sum(r['truth'] >= threshold for r in sel)} |")
    wrong = [r["best"] for r in rows if not r["best_error_px"] <= WRONG_PX]
    lines.append(f"| all | {len(rows)} | {len(wrong)} | {max(wrong, default=0)} | "
                 f"{sum(r['truth'] >= threshold for r in rows)} |")
    return "\n".join(lines) + (
        f"\n\nA similarity is wrong when its mean checkpoint error exceeds {WRONG_PX:g} px. "
        "Counts are distinct keypoints explained within `ransac_threshold` at the working "
        f"resolution; the default `keypoint_confirm_inliers` is {threshold}.\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.keypoint_support",
                                description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="validation warp seeds (each seed draws new random similarities)")
    p.add_argument("--every", type=int, default=1,
                   help="every N-th training pair (default 1: all; the network is not used)")
    p.add_argument("--out", type=Path, default=Path("runs/keypoint_support"))
    p.add_argument("--results", type=Path, default=None,
                   help="markdown file whose 'evaluate:keypoint_support' section is replaced")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = Config()
    (args.out / "config.json").write_text(json.dumps(
        {"seeds": args.seeds, "every": args.every, "wrong_px": WRONG_PX,
         "config": config_to_dict(base)}, indent=2) + "\n")
    rows = []
    for seed in args.seeds:
        for modality in datasets.MODALITY_NAMES:
            cfg = base.replace(modality=config_modality(modality))
            for pair in datasets.validation_pairs(modality, seed=seed, every=args.every):
                rows.append({"modality": modality, "seed": seed, **pair_support(pair, cfg)})
                print(f"{modality} seed {seed} {pair.name}: truth {rows[-1]['truth']} best "
                      f"{rows[-1]['best']} ({rows[-1]['best_error_px']} px)", file=sys.stderr)
    if not rows:
        print("no validation pairs found; check REGISTER_DATA", file=sys.stderr)
        return 1
    with open(args.out / "pairs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    body = summary_table(rows, base.keypoint_confirm_inliers)
    publish(body, out_dir=args.out, title="keypoint support",
            command=command_line("pipelines.keypoint_support", argv), results=args.results,
            section="evaluate:keypoint_support")
    return 0


if __name__ == "__main__":
    sys.exit(main())
