"""How SSML-QNet's vote at zero shift scores right and wrong transforms on validation pairs.

    python -m pipelines.network_vote [--runs LABEL:SET:LO:HI:PERSPECTIVE ...]
        [--moved vis-nir vis-lwir opt-ir] [--limit N] [--out DIR] [--results docs/results.md]

Evidence for ``Policy.network_confirm_z`` (``docs/policy.md``, "Network"). Two kinds of
transform, both on validation pairs (held-out *training* pairs under seeded random warps,
``pipelines.datasets.validation_pairs``; no test pair):

* ``pipeline``: each ``--runs`` entry registers its validation pairs (``val_every`` 3, the
  synthetic scale range LO-HI and corner perspective) with the network's rule switched off and
  records the vote (:func:`register.verify.network_check`) on the final transform, refused ones
  included, with that transform's checkpoint error: the transforms the rule would be asked
  about, right and wrong.
* ``moved``: the truth of each validation pair of the ``--moved`` sets, and the truth moved by
  a seeded random shift of 8-16, 16-40 and 40-120 working px and up to 3 degrees: near misses.

Outputs in ``--out`` (default ``runs/network_vote``): ``config.json``, ``votes.csv`` and
``results.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from pipelines import datasets
from pipelines.metrics import checkpoints, pair_error
from pipelines.models import config_modality
from pipelines.report import command_line, publish, write_csv
from register.api import register_pair
from register.config import Config, config_to_dict
from register.frames import working_images
from register.geometry import similarity
from register.memory import hold_freed_memory
from register.pipeline import Pipeline
from register.scorers import NetworkScorer, Timer

RUNS = ("val:opt-sar:0.6:1.6:0", "val:vis-nir:0.6:1.6:0", "val:opt-ir:0.6:1.6:0",
        "val:vis-lwir:0.6:1.6:0", "up:opt-sar:1.6:2.0:0", "down:opt-sar:0.5:0.625:0",
        "persp:opt-sar:0.6:1.6:0.08", "persp:vis-lwir:0.6:1.6:0.08",
        "persp:vis-nir:0.6:1.6:0.08")
MOVES = {"near": (8.0, 16.0), "off": (16.0, 40.0), "far": (40.0, 120.0)}  # working px
RIGHT_PX, WRONG_PX = 5.0, 10.0  # mean checkpoint error (fixed px) of a right / wrong transform
FIELDS = ["kind", "label", "set", "pair", "status", "error_px", "check_z", "keypoints",
          "share", "vote_z"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.network_vote",
                                description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="*", default=list(RUNS),
                   help="LABEL:SET:LO:HI:PERSPECTIVE validation runs to register")
    p.add_argument("--moved", nargs="*", default=["vis-nir", "vis-lwir", "opt-ir"],
                   help="sets whose truths are voted on, as they are and moved")
    p.add_argument("--limit", type=int, default=None, help="at most this many pairs a set")
    p.add_argument("--seed", type=int, default=7, help="seed of the moved truths")
    p.add_argument("--model", default="auto", help="weights (register.score.load_model)")
    p.add_argument("--out", type=Path, default=Path("runs/network_vote"))
    p.add_argument("--results", type=Path, default=None, help="markdown file to update")
    return p


def voter(pair, fixed, moving, cfg: Config, scorer):
    """For one loaded pair: a function from ``H`` (3, 3; full-resolution moving px -> fixed px)
    to its checkpoint error and the network's vote on it. The working images, the pipeline and
    the fixed patches' features are made once for all the transforms voted on."""
    q_m, q_f = checkpoints(pair, fixed.shape, moving.shape)
    fw, mw, Sf, Sm = working_images(fixed, moving, cfg)
    pipe = Pipeline(fw, mw, cfg, scorer, Timer(), lambda msg: None)

    def vote_on(H: np.ndarray) -> dict:
        vote = pipe.network_vote(Sf @ H @ np.linalg.inv(Sm))
        return {"error_px": round(pair_error(H, q_m, q_f), 3), "keypoints": vote.keypoints,
                "share": round(vote.share, 4), "vote_z": round(vote.z, 3)}

    return vote_on, Sf


def pipeline_rows(spec: str, scorer, limit: int | None) -> list[dict]:
    """The ``pipeline`` rows of one ``--runs`` entry (see the module docstring)."""
    label, set_name, lo, hi, persp = spec.split(":")
    cfg = Config().replace(modality=config_modality(set_name), network_confirm_z=0.0)
    pairs = datasets.select_evenly(datasets.split(
        f"val/{set_name}", val_every=3, val_scales=(float(lo), float(hi)),
        val_perspective=float(persp)), limit)
    rows = []
    for pair in pairs:
        fixed, moving = datasets.load_pair(pair)
        res = register_pair(fixed, moving, cfg, model=scorer.model)
        H = res.H if res.ok else res.closest_H
        row = {"kind": "pipeline", "label": label, "set": set_name, "pair": pair.name,
               "status": res.status, "check_z": res.verification.get("z_at_zero_shift", "")}
        if H is not None:
            row.update(voter(pair, fixed, moving, cfg, scorer)[0](H))
        rows.append(row)
        print(f"{label} {set_name} {pair.name}: {res.status} {row.get('error_px')} px, vote z "
              f"{row.get('vote_z')}", file=sys.stderr)
    return rows


def moved_rows(set_name: str, scorer, rng: np.random.Generator, limit: int | None
               ) -> list[dict]:
    """The ``moved`` rows of one set: its truths as they are and moved (:data:`MOVES`)."""
    cfg = Config().replace(modality=config_modality(set_name))
    rows = []
    for pair in datasets.select_evenly(datasets.split(f"val/{set_name}", val_every=3), limit):
        fixed, moving = datasets.load_pair(pair)
        vote_on, Sf = voter(pair, fixed, moving, cfg, scorer)
        h, w = fixed.shape[-2:]
        c = np.array([(w - 1) / 2, (h - 1) / 2])
        for label, span in [("truth", None), *MOVES.items()]:
            P = np.eye(3)
            if span is not None:  # a working-px shift and a small rotation and scale
                a = rng.uniform(0, 2 * math.pi)
                d = rng.uniform(*span) / Sf[0, 0] * np.array([math.cos(a), math.sin(a)])
                P = similarity(rng.uniform(-3, 3), float(np.exp(rng.uniform(-0.05, 0.05))),
                               tuple(c), tuple(c + d))
            rows.append({"kind": "moved", "label": label, "set": set_name, "pair": pair.name,
                         **vote_on(P @ pair.H_array)})
    return rows


def _span(values: list[float]) -> str:
    return f"{min(values):.1f} – {max(values):.1f}" if values else "–"


def summary_table(rows: list[dict], gate: float) -> str:
    """Per set and kind: how many transforms were right (<= RIGHT_PX) and wrong (> WRONG_PX),
    their vote ranges, and how many of each the gate ``gate`` confirms."""
    lines = [f"Vote z of right (≤ {RIGHT_PX:g} px) and wrong (> {WRONG_PX:g} px) transforms; "
             f"confirmed = vote z ≥ {gate:g} (`Policy.network_confirm_z`).", "",
             "| transforms | set | right | their vote z | right confirmed | wrong | their vote z "
             "| wrong confirmed |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("vote_z", "") != "":
            key = ("pipeline " + r["label"] if r["kind"] == "pipeline"
                   else "truth" if r["label"] == "truth" else "moved truth", r["set"])
            groups.setdefault(key, []).append(r)
    for (kind, set_name), rs in groups.items():
        right = [float(r["vote_z"]) for r in rs if float(r["error_px"]) <= RIGHT_PX]
        wrong = [float(r["vote_z"]) for r in rs if float(r["error_px"]) > WRONG_PX]
        lines.append(f"| {kind} | {set_name} | {len(right)} | {_span(right)} | "
                     f"{sum(v >= gate for v in right)} | {len(wrong)} | {_span(wrong)} | "
                     f"{sum(v >= gate for v in wrong)} |")
    wrong = sorted((float(r["vote_z"]), r["set"], r["label"], r["pair"], float(r["error_px"]))
                   for r in rows if r.get("vote_z", "") != "" and float(r["error_px"]) > WRONG_PX)
    if wrong:
        lines += ["", "Highest votes of wrong transforms: " + "; ".join(
            f"{z:.1f} ({s} {label} `{p}`, {e:.1f} px)" for z, s, label, p, e in wrong[-4:][::-1])
            + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from register.score import load_model

    hold_freed_memory()
    args.out.mkdir(parents=True, exist_ok=True)
    base = Config(model=args.model)
    (args.out / "config.json").write_text(json.dumps(
        {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "right_px": RIGHT_PX, "wrong_px": WRONG_PX, "moves_working_px": MOVES,
         "config": config_to_dict(base)}, indent=2) + "\n")
    scorer = NetworkScorer(load_model(args.model, "cpu", seed=base.seed))
    rows = [r for spec in args.runs for r in pipeline_rows(spec, scorer, args.limit)]
    rng = np.random.default_rng(args.seed)
    rows += [r for s in args.moved for r in moved_rows(s, scorer, rng, args.limit)]
    if not rows:
        print("no validation pairs found; check REGISTER_DATA", file=sys.stderr)
        return 1
    write_csv(args.out / "votes.csv", rows, FIELDS)
    publish(summary_table(rows, base.policy.network_confirm_z), out_dir=args.out,
            title="network vote", command=command_line("pipelines.network_vote", argv),
            results=args.results, section="network_vote")
    return 0


if __name__ == "__main__":
    sys.exit(main())
