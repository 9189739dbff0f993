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
measure the mean checkpoint error in fixed pixels (see :func:`checkpoints`). Per set and method:
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
import csv
import datetime as _dt
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipelines.datasets import VAL_EVERY, VAL_MAX_PERSPECTIVE, VAL_SCALES, select_evenly, split
from pipelines.metrics import DENSE_MARGIN, GRID, THRESHOLDS, checkpoints, pair_error, summarise
from pipelines.models import Models, config_modality
from pipelines.patches import DEFAULT_CACHE, PROTOCOLS
from pipelines.report import command_line, publish
from register.config import config_from_dict, config_to_dict, data_root
from register.memory import hold_freed_memory
from register.scorers import needs_network

SETS = ("opt-sar", "opt-ir", "vis-nir", "vis-lwir")
METHODS = ("ours", "identity", "sift", "mi")

# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------


def _register_pair():
    """``register.register_pair`` or an explanation why it cannot be imported."""
    try:
        import register

        fn = getattr(register, "register_pair", None)
        if fn is None:
            from register.api import register_pair as fn
        return fn, ""
    except Exception as exc:  # noqa: BLE001 - report any import problem as "skipped"
        return None, f"register.register_pair unavailable ({type(exc).__name__}: {exc})"


def _method_status(methods: Sequence[str], models: Models, sets: Sequence[str],
                   network: bool = True) -> dict[str, str]:
    """For each method, "" when it can run, else the reason it is skipped. For ``ours`` with a
    scorer that needs the ``network``, the networks of all ``sets`` are loaded here (once)."""
    from pipelines import baselines

    out = {}
    for m in methods:
        if m == "ours":
            fn, why = _register_pair()
            if fn is not None and network:
                try:
                    for s in sets:
                        models.get(config_modality(s))
                except Exception as exc:  # noqa: BLE001 - e.g. no shipped weights
                    why = f"cannot load model {models.name!r} ({exc})"
            out[m] = why
        else:
            ok, why = baselines.available(m)
            out[m] = "" if ok else why
    return out


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------


def _fmt(v: float, pct: bool = False, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{100 * v:.1f}" if pct else f"{v:.{digits}f}"


def registration_table(rows: list[dict]) -> str:
    ts = [f"{t:g}" for t in THRESHOLDS]
    head = (["set", "method", "pairs", "H found"] + [f"SR@{t}px %" for t in ts]
            + [f"AUC@{t}px %" for t in ts] + ["median err (px)", "median s/pair"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("skipped"):
            cells = [r["set"], r["method"], "–", "–"] + ["–"] * (2 * len(ts) + 2)
            cells[-1] = f"skipped: {r['skipped']}"
        else:
            cells = ([r["set"], r["method"], str(r["n"]), str(r["ok"])]
                     + [_fmt(r[f"success@{t}"], pct=True) for t in ts]
                     + [_fmt(r[f"auc@{t}"], pct=True) for t in ts]
                     + [_fmt(r["median_error"]), _fmt(r["median_seconds"], digits=3)])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict], fields: Sequence[str]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


# ---------------------------------------------------------------------------------------------
# registration mode
# ---------------------------------------------------------------------------------------------

PAIR_FIELDS = ("set", "pair", "method", "status", "reason", "error_px", "n_checkpoints",
               "seconds", "H", "timings", "verify_z", "confirmed_by", "affine_deviation_px",
               "keypoint_support", "num_inliers", "transform", "peak_shift_px", "recentred")
#: (pairs.csv column, key of ``Result.verification``)
VERIFY_COLUMNS = (("verify_z", "z_at_zero_shift"), ("confirmed_by", "confirmed_by"),
                  ("affine_deviation_px", "affine_deviation_px"),
                  ("keypoint_support", "keypoint_support"), ("transform", "transform"),
                  ("peak_shift_px", "peak_shift_px"), ("recentred", "recentred"))
#: ``candidates.csv``: every hypothesis ``ours`` matched and checked, with its own error
CANDIDATE_FIELDS = ("set", "pair", "method", "index", "source", "angle_deg", "scale",
                    "num_inliers", "z", "peak_shift_px", "affine_deviation_px", "transform",
                    "confirmed", "error_px")


def include_mismatch(args: argparse.Namespace, pairs_csv: Path, cfg: dict | None
                     ) -> str | None:
    """Why an ``--include`` run was made on other pairs than ``args`` asks for, or None.

    Compares the split and the validation options recorded in ``cfg``, the run's
    ``config.json`` (runs from before an option existed used its default). A run without
    ``config.json`` (``cfg`` None) cannot be checked and passes.
    """
    if cfg is None:
        return None
    ours = {"split": args.split}
    theirs = {"split": cfg.get("split", "test")}
    if args.split == "val":
        ours.update(val_every=args.val_every, val_scale=list(args.val_scale),
                    val_perspective=args.val_perspective)
        theirs.update(val_every=cfg.get("val_every", VAL_EVERY),
                      val_scale=list(cfg.get("val_scale", VAL_SCALES)),
                      val_perspective=cfg.get("val_perspective", 0.0))
    diff = [f"--{k.replace('_', '-')} {theirs[k]} (here {ours[k]})" for k in ours
            if theirs[k] != ours[k]]
    return (f"--include {pairs_csv} was run on other pairs: {', '.join(diff)}; include runs "
            "made with the same --split and --val-* options") if diff else None


def included_summary(pairs_csv: Path, sets: Sequence[str], skip_methods: Sequence[str]
                     ) -> list[dict]:
    """Summaries of the methods in an earlier run's ``pairs.csv`` (except ``skip_methods``)."""
    rows = list(csv.DictReader(open(pairs_csv)))
    out = []
    for s in sets:
        for m in dict.fromkeys(r["method"] for r in rows):
            if m in skip_methods:
                continue
            sel = [r for r in rows if r["set"] == s and r["method"] == m]
            if sel:
                out.append({"set": s, "method": m, **summarise(
                    [float(r["error_px"]) for r in sel], [float(r["seconds"]) for r in sel])})
    return out


def _name(method: str, args) -> str:
    """Method name in tables: ``ours`` may carry a ``--label`` (e.g. a config variant)."""
    return args.label if method == "ours" and args.label else method


def _ours(res, row: dict) -> tuple[np.ndarray | None, list]:
    """Fill ``row`` from a :class:`register.api.Result`; its H (None when failed) and the
    hypotheses it checked."""
    row["reason"] = res.reason or ""
    row["timings"] = json.dumps({k: round(float(v), 4) for k, v in (res.timings or {}).items()})
    ver = res.verification or {}
    row.update({col: ver.get(key, "") for col, key in VERIFY_COLUMNS})
    row["num_inliers"] = (res.counts or {}).get("num_inliers", "")
    return (res.H if res.status == "ok" else None), res.candidates


def _run_method(method: str, loaded, row: dict, run_ours, cfg, args, models
                ) -> tuple[np.ndarray | None, list]:
    """H of one method on a loaded pair (``loaded`` = (fr, mr, fixed, moving) or None when the
    pair could not be loaded), filling ``row``'s status and reason; exceptions count as errors."""
    from pipelines import baselines

    H, cands = None, []
    try:
        if loaded is None:
            raise RuntimeError("pair could not be loaded")
        fr, mr, fixed, moving = loaded
        if method == "ours":
            model = models.get(cfg.modality) if needs_network(cfg.match) else None
            H, cands = _ours(run_ours(fr, mr, cfg, device=args.device, model=model), row)
        else:
            H = baselines.BASELINES[method](fixed, moving)
            if H is None:
                row["reason"] = "baseline failed"
        row["status"] = "ok" if H is not None else "failed"
    except Exception as exc:  # noqa: BLE001 - counted as a failure
        H, row["status"], row["reason"] = None, "error", f"{type(exc).__name__}: {exc}"
    return H, cands


def _load(pair, log, label: str, set_name: str):
    """((fr, mr, fixed gray, moving gray), (moving, fixed) checkpoints) of a pair, or
    (None, None) when it cannot be loaded (reported, not fatal)."""
    from pipelines.datasets import load_pair
    from register.io import to_gray

    try:
        fr, mr = load_pair(pair)
        loaded = (fr, mr, to_gray(fr).image, to_gray(mr, sar=pair.modality == "opt-sar").image)
        return loaded, checkpoints(pair, fr.shape, mr.shape)
    except Exception as exc:  # noqa: BLE001 - a broken pair is reported, not fatal
        log(f"{set_name} {label}: cannot load ({type(exc).__name__}: {exc})")
        return None, None


class _Writers:
    """``pairs.csv`` and ``candidates.csv`` of a registration run, flushed row by row."""

    def __init__(self, out: Path):
        self.files = [open(out / "pairs.csv", "w", newline=""),
                      open(out / "candidates.csv", "w", newline="")]
        self.pairs = csv.DictWriter(self.files[0], fieldnames=list(PAIR_FIELDS),
                                    extrasaction="ignore")
        self.cands = csv.DictWriter(self.files[1], fieldnames=list(CANDIDATE_FIELDS),
                                    extrasaction="ignore")
        self.pairs.writeheader()
        self.cands.writeheader()

    def candidates(self, cands: list, base: dict, m_xy, f_xy) -> None:
        for i, c in enumerate(cands):  # every hypothesis ours checked
            e = pair_error(np.asarray(c["H"]), m_xy, f_xy)
            self.cands.writerow({**c, **base, "index": i,
                                 "error_px": f"{e:.4f}" if math.isfinite(e) else "inf"})
        self.files[1].flush()

    def pair(self, row: dict) -> None:
        self.pairs.writerow(row)
        self.files[0].flush()

    def close(self) -> None:
        for f in self.files:
            f.close()


def _evaluate_pair(pair, set_name: str, cfg, args, models, skipped, run_ours, out: _Writers,
                   log) -> list[tuple[str, dict, float, float]]:
    """Every method on one pair: (method, row, error, seconds) each, rows written."""
    label = f"{pair.set}/{pair.name}"
    loaded, cps = _load(pair, log, label, set_name)
    m_xy, f_xy = cps if cps is not None else (None, None)
    done = []
    for method in [m for m in args.methods if not skipped[m]]:
        row = {**dict.fromkeys(PAIR_FIELDS, ""), "set": set_name, "pair": label,
               "method": _name(method, args)}
        t0 = time.perf_counter()
        H, cands = _run_method(method, loaded, row, run_ours, cfg, args, models)
        dt = time.perf_counter() - t0
        out.candidates(cands, {"set": set_name, "pair": label, "method": row["method"]},
                       m_xy, f_xy)
        err = pair_error(H, m_xy, f_xy) if loaded is not None else math.inf
        if H is not None and not math.isfinite(err):
            row["status"], row["reason"] = "failed", "non-finite H or projection"
        row.update(error_px=f"{err:.4f}" if math.isfinite(err) else "inf",
                   n_checkpoints=len(m_xy) if loaded is not None else 0, seconds=f"{dt:.4f}",
                   H=json.dumps(np.round(np.asarray(H, float), 8).ravel().tolist())
                   if H is not None else "")
        out.pair(row)
        log(f"{set_name} {label} {method}: {row['status']} err={row['error_px']} "
            f"{dt:.2f}s {row['reason']}".rstrip())
        done.append((method, row, err, dt))
    return done


def run_registration(args, log: Callable[[str], None]) -> tuple[list[dict], list[dict]]:
    """Every method on every pair of ``args.sets``; (one row per pair and method, one summary
    row per set and method). Writes ``pairs.csv`` and ``candidates.csv`` into ``args.out``."""
    models = Models(args.model, args.device)
    base_cfg = config_from_dict(args.config_overrides)
    network = needs_network(base_cfg.match)
    skipped = _method_status(args.methods, models, args.sets, network)
    for m, why in skipped.items():
        if why:
            log(f"method {m} skipped: {why}")
    run_ours = _register_pair()[0] if "ours" in args.methods and not skipped["ours"] else None
    per_pair: list[dict] = []
    summary: list[dict] = []
    out = _Writers(args.out)
    try:
        for set_name in args.sets:
            pairs = select_evenly(split(f"{args.split}/{set_name}", val_every=args.val_every,
                                        val_scales=tuple(args.val_scale),
                                        val_perspective=args.val_perspective), args.limit)
            cfg = base_cfg.replace(modality=config_modality(set_name))
            errors = {m: [] for m in args.methods}
            secs = {m: [] for m in args.methods}
            for pair in pairs:
                for method, row, err, dt in _evaluate_pair(pair, set_name, cfg, args, models,
                                                           skipped, run_ours, out, log):
                    errors[method].append(err)
                    secs[method].append(dt)
                    per_pair.append(row)
            for method in args.methods:
                if skipped[method]:
                    summary.append({"set": set_name, "method": method, "skipped": skipped[method]})
                    continue
                s = summarise(errors[method], secs[method])
                summary.append({"set": set_name, "method": _name(method, args), **s})
    finally:
        out.close()
    return per_pair, summary


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
        config_from_dict(args.config_overrides)
    except ValueError as exc:
        print(f"error: --config: {exc}", file=sys.stderr)
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
        _write_csv(args.out / "pairs.csv", per_pair, patch_eval.PAIR_FIELDS)
        table = patch_eval.patches_table(summary)
        fields, note = patch_eval.SUMMARY_FIELDS, patch_eval.NOTE
    _write_csv(args.out / "summary.csv", summary, fields)
    limit_note = f" Subset: at most {args.limit} pairs per set." if args.limit else ""
    section = args.section or (args.mode if args.split == "test" else f"{args.mode}:{args.split}")
    publish(f"{table}\n\n{note}{limit_note}\n", out_dir=args.out, title=f"evaluate {args.mode}",
            command=command, results=args.results, section=f"evaluate:{section}")
    if args.results is not None:
        log(f"updated section evaluate:{section} in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
