"""Registration mode of ``python -m pipelines.evaluate``: every method on every pair of a
split, the per-pair rows (``pairs.csv``, ``candidates.csv``) and the per-set summaries.

Errors are mean checkpoint distances in fixed pixels (:func:`pipelines.metrics.checkpoints`);
a failed method, an exception or a non-finite H counts as an infinite error.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipelines.datasets import VAL_EVERY, VAL_SCALES, select_evenly, split
from pipelines.metrics import THRESHOLDS, checkpoints, pair_error, summarise
from pipelines.models import Models, config_modality
from register.config import config_from_dict
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
