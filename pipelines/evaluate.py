"""Evaluate registration accuracy and patch-matching FPR95 on the test (or validation) splits.

    python -m pipelines.evaluate registration [--sets opt-sar,opt-ir,vis-nir,vis-lwir]
        [--methods ours,identity,sift,mi] [--split test|val|georef] [--val-every N]
        [--val-scale LO HI]
        [--val-perspective P]
        [--config JSON] [--label NAME] [--include PAIRS_CSV ...] [--limit N] [--out DIR]
        [--device cpu]
        [--results docs/results.md] [--section NAME]
    python -m pipelines.evaluate patches [--model auto|PATH] [--sets ...] [--out DIR]

``registration``: for every test pair and method, estimate the moving -> fixed homography and
measure the mean checkpoint error in fixed pixels (see :func:`pipelines.metrics.checkpoints`;
:mod:`pipelines.registration_eval`). Per set and method:
success rate and AUC at 3 / 5 / 10 px, median error, median seconds per pair. A failed method,
an exception or a non-finite H counts as an infinite error. ``--split georef --sets opt-sar``
runs the georeferenced BigEarthNet tiles as they are (the georeferencing is the truth;
:data:`pipelines.datasets.GEOREF_SPLITS`).

``patches``: FPR95 (%) of SSML-QNet on 64x64 test patch pairs per test set, under the paper's
protocol and under the pipeline's (:mod:`pipelines.patch_eval`).

Outputs in ``--out`` (default ``runs/eval/<mode>``): ``config.json`` (resolved options),
``pairs.csv`` (one row per pair and method), ``candidates.csv`` (registration: every hypothesis
``ours`` matched and checked, with its own error), ``summary.csv`` and ``results.md`` (markdown
table). ``--results FILE`` also writes or replaces the ``<!-- BEGIN evaluate:<section> -->``
section of FILE with the table, the command line and the date; the section is ``--section``, or
the mode (``registration:<split>`` off the test split). ``--include`` adds the other methods'
rows of earlier runs' ``pairs.csv``; a run whose ``config.json`` records another split or other
``--val-*`` options is refused (:func:`include_mismatch`).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from pipelines.datasets import VAL_EVERY, VAL_MAX_PERSPECTIVE, VAL_SCALES
from pipelines.metrics import DENSE_MARGIN, GRID, THRESHOLDS
from pipelines.patches import DEFAULT_CACHE, PROTOCOLS
from pipelines.registration_eval import (METHODS, SETS, include_mismatch, included_summary,
                                         registration_table, run_registration)
from pipelines.report import command_line, publish, write_csv
from register.config import config_from_dict, config_to_dict, data_root
from register.memory import hold_freed_memory

# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _csv_list(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {bad or 'empty list'}; choose from {','.join(allowed)}")
        return list(dict.fromkeys(items))
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.evaluate",
                                description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("registration", "patches"))
    p.add_argument("--label", default=None,
                   help="name of the 'ours' rows in tables (e.g. a --config variant)")
    p.add_argument("--val-every", type=int, default=VAL_EVERY,
                   help="with --split val: every N-th training pair validates (default "
                        f"{VAL_EVERY}: the pairs held out of network training; a smaller N "
                        "adds pairs the network trained on, see "
                        "pipelines.datasets.validation_pairs)")
    p.add_argument("--val-scale", type=float, nargs=2, default=list(VAL_SCALES),
                   metavar=("LO", "HI"), help="with --split val: scale range of the synthetic "
                   f"similarity (log-uniform; default {VAL_SCALES[0]} {VAL_SCALES[1]})")
    p.add_argument("--val-perspective", type=float, default=0.0, metavar="P",
                   help="with --split val: follow the similarity with a random projective warp "
                        "moving each corner by up to P times the image size (0 <= P < "
                        f"{VAL_MAX_PERSPECTIVE}; default 0)")
    p.add_argument("--section", default=None,
                   help="name of the --results section (default: the mode, plus :SPLIT off test)")
    p.add_argument("--include", type=Path, nargs="*", default=None,
                   help="pairs.csv of earlier registration runs whose other methods join the "
                        "table (same pairs)")
    p.add_argument("--split", choices=("test", "val", "georef"), default="test",
                   help="test pairs, validation pairs (held-out training pairs under "
                        "seeded random rotation/scale) for choosing options, or georef: "
                        "georeferenced pairs as they are, the georeferencing being the truth "
                        "(opt-sar only: BigEarthNet S2/S1 tiles, pipelines.datasets.GEOREF_SPLITS)")
    p.add_argument("--sets", type=_csv_list(SETS), default=list(SETS),
                   help=f"comma-separated test sets (default {','.join(SETS)})")
    p.add_argument("--methods", type=_csv_list(METHODS), default=list(METHODS),
                   help=f"registration methods (default {','.join(METHODS)})")
    p.add_argument("--limit", type=int, default=None,
                   help="at most N image pairs per set, spread evenly over the set")
    p.add_argument("--out", type=Path, default=None, help="output folder (runs/eval/<mode>)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda (network only)")
    p.add_argument("--model", default="auto",
                   help="network weights: auto (the shipped lite preset), lite, paper, a .pt path, or 'random' (plumbing)")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON file of register Config overrides for method 'ours'")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help="where test patch files are built / reused (patches mode)")
    p.add_argument("--batch-size", type=int, default=512, help="network batch (patches mode)")
    p.add_argument("--protocols", type=_csv_list(PROTOCOLS), default=list(PROTOCOLS),
                   help="patch protocols to score (patches mode; the paper-width network on "
                        "the CPU scores about 30 pairs/s: VIS-NIR's 61,000 pipeline-protocol "
                        "pairs take half an hour)")
    p.add_argument("--results", type=Path, default=None,
                   help="markdown file whose evaluate:<section> section is written/replaced")
    return p


def usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the options (checked before any work), or None."""
    lo, hi = args.val_scale
    if args.limit is not None and args.limit < 1:
        return "--limit must be at least 1"
    if args.split == "georef" and args.sets != ["opt-sar"]:
        return "--split georef has optical-SAR pairs only; pass --sets opt-sar"
    if not 0 < lo <= hi or (args.split != "val" and (lo, hi) != VAL_SCALES):
        return (f"--val-scale expects 0 < LO <= HI and applies to --split val only; got "
                f"{lo:g} {hi:g} with --split {args.split}")
    if (not 0 <= args.val_perspective < VAL_MAX_PERSPECTIVE
            or (args.split != "val" and args.val_perspective)):
        return (f"--val-perspective expects 0 <= P < {VAL_MAX_PERSPECTIVE} and applies to "
                f"--split val only; got {args.val_perspective:g} with --split {args.split}")
    return None


def _included(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """The command of each --include run, for the table's note; or the reason one is refused."""
    included = []
    for inc in args.include or []:
        cfg_file = inc.parent / "config.json"
        inc_cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else None
        why = (f"--include {inc} does not exist" if not inc.is_file()
               else include_mismatch(args, inc, inc_cfg) if args.mode == "registration" else None)
        if why:
            return included, why
        included.append((inc_cfg or {}).get("command", str(inc)))
    return included, None


def _resolved(args: argparse.Namespace, command: str) -> dict:
    """The run's resolved options, for ``config.json``."""
    resolved = {k: (str(v) if isinstance(v, Path) else
                    [str(x) for x in v] if isinstance(v, list) and v and isinstance(v[0], Path)
                    else v) for k, v in vars(args).items()}
    resolved.update(command=command, data_root=str(data_root()),
                    thresholds_px=list(THRESHOLDS), grid=GRID, dense_margin_px=DENSE_MARGIN,
                    started=_dt.datetime.now().isoformat(timespec="seconds"))
    if args.mode == "registration":
        resolved["ours_config"] = config_to_dict(config_from_dict(args.config_overrides))
    else:
        from pipelines import patch_eval

        resolved.update(patch_seed=patch_eval.PATCH_SEED,
                        patch_per_image=patch_eval.PATCH_PER_IMAGE,
                        patch_builder_version=patch_eval.BUILDER_VERSION)
    return resolved


def _registration_tables(args, log, included: list[str]) -> tuple[list, list, str, str]:
    """Run the registration methods; (summary rows, their CSV fields, table, note)."""
    _, summary = run_registration(args, log)
    for inc in args.include or []:
        summary += included_summary(inc, args.sets, args.methods)
    order = {m: i for i, m in enumerate(METHODS)}
    summary.sort(key=lambda r: (SETS.index(r["set"]), order.get(r["method"], 99), r["method"]))
    fields = (["set", "method", "skipped", "n", "ok"]
              + [f"success@{t:g}" for t in THRESHOLDS] + [f"auc@{t:g}" for t in THRESHOLDS]
              + ["median_error", "median_seconds"])
    note = ("Error = mean checkpoint distance in fixed pixels; SR = success rate "
            "(error <= t); AUC = area under recall-vs-error on [0, t] / t; failures count "
            "as infinite error.")
    if included:
        note += " Rows of other methods come from earlier runs on the same pairs: " + \
            "; ".join(f"`{c}`" for c in included) + "."
    return summary, fields, registration_table(summary), note


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hold_freed_memory()  # buffers reused, not page-faulted afresh (register.memory)
    included, why = _included(args)
    why = usage_error(args) or why
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    args.out = args.out or Path("runs") / "eval" / args.mode
    args.out.mkdir(parents=True, exist_ok=True)
    args.config_overrides = {"make_figures": False, "model": str(args.model)}
    if args.config is not None:
        args.config_overrides.update(json.loads(args.config.read_text()))
    try:
        cfg = config_from_dict(args.config_overrides)
    except ValueError as exc:
        print(f"error: --config: {exc}", file=sys.stderr)
        return 2
    from register.score import resolve_precision

    try:  # what precision "auto" means here (config.json); a device that is not there fails
        args.network_precision = resolve_precision(cfg.precision, args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = command_line("pipelines.evaluate", argv)

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    (args.out / "config.json").write_text(json.dumps(_resolved(args, command), indent=2) + "\n")
    if args.mode == "registration":
        summary, fields, table, note = _registration_tables(args, log, included)
    else:
        from pipelines import patch_eval

        try:
            per_pair, summary = patch_eval.run_patches(args, log)
        except ValueError as exc:  # InputError from load_model etc.
            print(f"error: {exc}", file=sys.stderr)
            return 1
        write_csv(args.out / "pairs.csv", per_pair, patch_eval.PAIR_FIELDS)
        table = patch_eval.patches_table(summary)
        fields, note = patch_eval.SUMMARY_FIELDS, patch_eval.NOTE
    write_csv(args.out / "summary.csv", summary, fields)
    limit_note = f" Subset: at most {args.limit} pairs per set." if args.limit else ""
    section = args.section or (args.mode if args.split == "test" else f"{args.mode}:{args.split}")
    publish(f"{table}\n\n{note}{limit_note}\n", out_dir=args.out, title=f"evaluate {args.mode}",
            command=command, results=args.results, section=f"evaluate:{section}")
    if args.results is not None:
        log(f"updated section evaluate:{section} in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
