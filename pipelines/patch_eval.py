"""Patch-matching FPR95 on the test splits: the ``patches`` mode of ``pipelines.evaluate``.

    python -m pipelines.evaluate patches [--model auto|PATH] [--sets ...] [--out DIR]

Test patch pairs are built by :func:`pipelines.patches.build` (``split="test"``, seed
:data:`PATCH_SEED`, :data:`PATCH_PER_IMAGE` keypoints per image pair) under both protocols of
:data:`pipelines.patches.PROTOCOLS`, and cached in ``--cache-dir``:

* ``pipeline``: what the pipeline meets (positives with sub-pixel jitter and a residual rotation
  and scale; nearby, look-alike and random negatives; contrast, gamma and speckle). FPR95 is
  reported against all negatives and against the random ones only;
* ``paper``: the paper's benchmarks (one positive cut at exactly corresponding points and one
  random negative per keypoint, no augmentation).

The VIS-LWIR test pairs have a dense ground truth that ``build`` skips, so VIS-LWIR patches come
from the aligned MSRS originals (``vi`` fixed, ``ir`` moving; note their ~2.5 px residual,
MANIFEST.md).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipelines.datasets import IDENTITY, LWIR_FIELD, Pair, select_evenly
from pipelines.models import Models, config_modality
from pipelines.patches import (BUILDER_VERSION, KINDS, MODALITY_NAMES, PROTOCOL_NOTE, PROTOCOLS,
                               build)
from register.config import config_from_dict, data_root

PATCH_SEED = 1
PATCH_PER_IMAGE = 64
#: what a cached file's ``.config.json`` means when it lacks a key (files of earlier builders)
_LEGACY = {"protocol": "pipeline", "builder_version": 1}


def msrs_aligned_pairs() -> list[Pair]:
    """The aligned MSRS originals (``vi`` fixed, ``ir`` moving, H = identity)."""
    base = data_root() / LWIR_FIELD
    out = []
    for p in sorted((base / "ir").iterdir()):
        vis = sorted((base / "vi").glob(p.stem + ".*"))
        if len(vis) == 1:
            out.append(Pair("msrs_aligned", p.stem, "vis-lwir", f"{LWIR_FIELD}/vi/{vis[0].name}",
                            f"{LWIR_FIELD}/ir/{p.name}", H=IDENTITY, aligned=True))
    return out


def cached_file_matches(npz: Path, want: dict) -> bool:
    """Whether a cached patch file (written by :func:`pipelines.patches.build`) stores each
    pair's ``kind`` and its ``.config.json`` has the values of ``want`` (keys it lacks take
    their meaning in files of earlier builders: the pipeline protocol, builder version 1)."""
    try:
        with np.load(npz) as z:
            if "kind" not in z.files:
                return False
    except (OSError, ValueError):
        return False
    try:
        doc = json.loads(npz.with_suffix(".config.json").read_text())
    except (OSError, ValueError):
        return False
    return all(doc.get(k, _LEGACY.get(k)) == v for k, v in want.items())


def _modalities_in(npz: Path) -> set[str]:
    try:
        with np.load(npz) as z:
            return {MODALITY_NAMES[i] for i in np.unique(z["modality"])}
    except (OSError, ValueError, KeyError, IndexError):
        return set()


def test_patch_files(sets: Sequence[str], cache_dir: Path, *, protocol: str,
                     log: Callable[[str], None]) -> dict[str, Path]:
    """For each set, its test patch file under ``protocol``: a cached one in ``cache_dir`` whose
    ``.config.json`` matches (seed, keypoints per image, protocol, builder version), or one
    built now. Returns ``{set: path}``."""
    out: dict[str, Path] = {}
    want = {"split": "test", "seed": PATCH_SEED, "per_image": PATCH_PER_IMAGE,
            "protocol": protocol, "builder_version": BUILDER_VERSION}
    suffix = "_paper" if protocol == "paper" else ""
    for s in sets:
        if s == "vis-lwir":
            dest = cache_dir / f"test_msrs_aligned{suffix}_seed{PATCH_SEED}.npz"
            pairs = {"test/vis-lwir": msrs_aligned_pairs()}
            meta = {**want, "source": f"{LWIR_FIELD}/vi+ir"}
        else:
            dest = cache_dir / f"test_{s}{suffix}_seed{PATCH_SEED}.npz"
            pairs, meta = None, dict(want)
        if dest.exists() and cached_file_matches(dest, meta) and s in _modalities_in(dest):
            log(f"{s}: reusing {dest}")
        else:
            log(f"{s}: building {protocol}-protocol test patches into {dest}")
            build("test", cache_dir, seed=PATCH_SEED, per_image=PATCH_PER_IMAGE,
                  modalities=(s,), pairs=pairs, dest=dest, protocol=protocol,
                  meta={**meta, "by": "pipelines.evaluate"}, log=log)
        out[s] = dest
    return out


def _load(path: Path, modality: str) -> dict | None:
    """The patch pairs of ``modality`` in a patch file (arrays as stored by
    :func:`pipelines.patches.build`, plus ``names`` and ``file``), or None when it has none."""
    with np.load(path) as z:
        sel = z["modality"] == MODALITY_NAMES.index(modality)
        if not sel.any():
            return None
        d = {k: z[k][sel] for k in ("fixed", "moving", "label", "kind", "pair")}
        d["names"] = [str(n) for n in z["pair_names"]]
    d["file"] = str(path)
    return d


def run_patches(args, log: Callable[[str], None]) -> tuple[list[dict], list[dict]]:
    """FPR95 per test set and protocol. ``args``: ``model``, ``device``, ``sets``,
    ``cache_dir``, ``limit`` (image pairs per set), ``batch_size``, and optionally
    ``config_overrides`` (its ``precision``: the network's arithmetic).

    Returns:
        (per_pair, summary): one row per image pair and protocol (its own FPR95), and one row
        per set with ``fpr95`` (pipeline protocol, all negatives), ``fpr95_random_negatives``
        (pipeline protocol, random negatives) and ``fpr95_paper`` (paper protocol).
    """
    from register.score import fpr_at_recall, model_info, score_pairs

    cfg = config_from_dict(getattr(args, "config_overrides", None))
    models = Models(args.model, args.device, precision=cfg.precision)
    for s in args.sets:  # fail early (e.g. no shipped weights), before building patches
        models.get(config_modality(s))
    protocols = [p for p in PROTOCOLS if p in getattr(args, "protocols", PROTOCOLS)]
    files = {p: test_patch_files(args.sets, args.cache_dir, protocol=p, log=log)
             for p in protocols}
    per_pair, summary = [], []
    for s in args.sets:
        model = models.get(config_modality(s))
        info = model_info(model)
        row: dict = {"set": s, "weights": info["weights"], "preset": info["preset"],
                     "precision": info["precision"]}
        for protocol in protocols:
            d = _load(files[protocol][s], s)
            if d is None:
                row["skipped"] = f"no {protocol}-protocol test patches"
                break
            keep_ids = select_evenly(sorted(np.unique(d["pair"]).tolist()), args.limit)
            sel = np.isin(d["pair"], keep_ids)
            t0 = time.perf_counter()
            prob = score_pairs(model, d["fixed"][sel], d["moving"][sel],
                               batch_size=args.batch_size)
            dt = time.perf_counter() - t0
            lab, pid, kind = d["label"][sel], d["pair"][sel], d["kind"][sel]
            row["image_pairs"] = len(keep_ids)
            if protocol == "pipeline":
                rnd = np.isin(kind, [KINDS.index("positive"), KINDS.index("random")])
                row.update(patch_pairs=int(sel.sum()),
                           positives=int(lab.sum()), fpr95=fpr_at_recall(prob, lab),
                           fpr95_random_negatives=fpr_at_recall(prob[rnd], lab[rnd]),
                           seconds=dt, patch_file=d["file"])
            else:
                row.update(paper_patch_pairs=int(sel.sum()), fpr95_paper=fpr_at_recall(prob, lab),
                           paper_patch_file=d["file"])
            log(f"{s} ({protocol} protocol): FPR95 {fpr_at_recall(prob, lab):.2f}% on "
                f"{int(sel.sum())} patch pairs ({dt:.1f}s)")
            for i in keep_ids:
                m = pid == i
                try:
                    f_i = fpr_at_recall(prob[m], lab[m])
                except ValueError:
                    f_i = math.nan
                per_pair.append({"set": s, "protocol": protocol, "pair": d["names"][i],
                                 "patch_pairs": int(m.sum()), "positives": int(lab[m].sum()),
                                 "fpr95": f"{f_i:.2f}"})
        summary.append(row)
    return per_pair, summary


PAIR_FIELDS = ("set", "protocol", "pair", "patch_pairs", "positives", "fpr95")
SUMMARY_FIELDS = ("set", "skipped", "image_pairs", "patch_pairs", "positives", "fpr95",
                  "fpr95_random_negatives", "paper_patch_pairs", "fpr95_paper", "seconds",
                  "weights", "preset", "precision", "patch_file", "paper_patch_file")


def patches_table(rows: list[dict]) -> str:
    head = ["set", "image pairs", "patch pairs (pipeline / paper)",
            "FPR95 % (paper protocol)", "FPR95 % (pipeline protocol, random negatives)",
            "FPR95 % (pipeline protocol, all negatives)", "weights"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['set']} | – | – | – | – | – | skipped: {r['skipped']} |")
        else:
            def f(k: str) -> str:
                return f"{r[k]:.2f}" if k in r else "not run"
            lines.append(f"| {r['set']} | {r['image_pairs']} | {r.get('patch_pairs', '–')} / "
                         f"{r.get('paper_patch_pairs', '–')} | {f('fpr95_paper')} | "
                         f"{f('fpr95_random_negatives')} | {f('fpr95')} | "
                         f"{r['weights']} ({r['preset']}) |")
    return "\n".join(lines)


NOTE = (f"FPR95 = false-positive rate (%) at 95 % recall of the positives. {PROTOCOL_NOTE} Test "
        f"patches seed {PATCH_SEED}, {PATCH_PER_IMAGE} keypoints per image pair; vis-lwir from "
        "the aligned MSRS originals.")
