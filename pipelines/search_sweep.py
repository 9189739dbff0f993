"""How often the rotation/scale search puts a right hypothesis first, or among its top k.

    python -m pipelines.search_sweep [--sets vis-nir,opt-ir,opt-sar,vis-lwir] [--every 3]
        [--seed 1] [--variants '{"name": {"search_rescore": 0}, ...}'] [--out DIR]
        [--results docs/results.md]

Runs :func:`register.search.coarse_hypotheses` alone (no matching) on validation pairs: held-out
*training* pairs (every ``--every``-th; no test pair) under a seeded random similarity
(``pipelines.datasets.validation_pairs``), at the pipeline's working resolution. A hypothesis
is right when it places the fixed image's corners within max(``search_radius`` = 16 px, 3 % of
the image side) of the ground truth: the matching stage searches that far around each
predicted position. Each
variant is a set of :class:`register.config.Config` overrides of the defaults.

Outputs in ``--out`` (default ``runs/search_sweep``): ``config.json``, ``pairs.csv`` (rank of
the first right hypothesis, -1 for none; smallest corner error; seconds) and ``results.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from pipelines import datasets
from pipelines.report import command_line, publish
from register.frames import working_images
from register.config import MODALITIES, Config, config_from_dict, config_to_dict
from register.geometry import corner_distance
from register.search import coarse_hypotheses

DEFAULT_VARIANTS = {
    "raw z, no rescoring": {"search_calibrate": False, "search_rescore": 0},
    "calibrated z, no rescoring": {"search_calibrate": True, "search_rescore": 0},
    "raw z, rescore 16": {"search_calibrate": False, "search_rescore": 16},
    "calibrated z, rescore 16 (default)": {},
}


def hypothesis_rank(pair: datasets.Pair, cfg: Config, images=None) -> tuple[int, float, float]:
    """(rank of the first right hypothesis or -1, smallest corner error in working px, seconds).

    ``images``: the pair's (fixed, moving) rasters when already loaded.
    """
    fixed, moving = images or datasets.load_pair(pair)
    modality = pair.modality if pair.modality in MODALITIES else "auto"  # opt-ir: auto
    fw, mw, Sf, Sm = working_images(fixed, moving, cfg.replace(modality=modality))
    H = Sf @ pair.H_array @ np.linalg.inv(Sm)
    t = time.perf_counter()
    hyps = coarse_hypotheses(fw.image, fw.mask, mw.image, mw.mask,
                             cfg.search.for_modality(modality))
    seconds = time.perf_counter() - t
    errs = [corner_distance(h.H, H, fw.image.shape) for h in hyps]
    tol = max(cfg.match.search_radius, 0.03 * max(fw.image.shape))
    right = [i for i, e in enumerate(errs) if e < tol]
    return (right[0] if right else -1), (min(errs) if errs else float("inf")), seconds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.search_sweep",
                                description=__doc__.split("\n")[0])
    p.add_argument("--sets", default="vis-nir,opt-ir,opt-sar,vis-lwir")
    p.add_argument("--every", type=int, default=3, help="every N-th training pair validates")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--variants", default=None, help="JSON: name -> Config overrides")
    p.add_argument("--out", type=Path, default=Path("runs/search_sweep"))
    p.add_argument("--results", type=Path, default=None, help="markdown file to update")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    variants = json.loads(args.variants) if args.variants else DEFAULT_VARIANTS
    cfgs = {name: config_from_dict(v) for name, v in variants.items()}
    sets = [s for s in args.sets.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(
        {"sets": sets, "every": args.every, "seed": args.seed,
         "variants": {n: config_to_dict(c) for n, c in cfgs.items()}}, indent=2) + "\n")
    rows = []
    for s in sets:
        pairs = datasets.validation_pairs(s, seed=args.seed, every=args.every)
        for i, pair in enumerate(pairs):
            images = datasets.load_pair(pair)  # once for all variants
            for name, cfg in cfgs.items():
                rank, err, sec = hypothesis_rank(pair, cfg, images)
                rows.append({"set": s, "pair": f"{pair.set}/{pair.name}", "variant": name,
                             "rank": rank, "min_corner_error": round(err, 2),
                             "seconds": round(sec, 3)})
            print(f"\r{s}: {i + 1}/{len(pairs)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    with open(args.out / "pairs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| set | variant | pairs | right first | right in top k | median s |",
             "|---|---|---|---|---|---|"]
    for s in sets:
        for name in cfgs:
            r = [x for x in rows if x["set"] == s and x["variant"] == name]
            lines.append(f"| {s} | {name} | {len(r)} | {sum(x['rank'] == 0 for x in r)} | "
                         f"{sum(x['rank'] >= 0 for x in r)} | "
                         f"{statistics.median(x['seconds'] for x in r):.2f} |")
    table = "\n".join(lines) + "\n"
    publish(table, out_dir=args.out, title="search sweep",
            command=command_line("pipelines.search_sweep", argv), results=args.results,
            section="evaluate:search_sweep")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
