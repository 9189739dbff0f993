"""Copy trained weights into the package and write their model card.

    python -m pipelines.ship --run runs/lite_all --name ssml_qnet_lite_all.pt
        [--patch-eval runs/eval/patches/summary.csv] [--note TEXT]

Keeps only what inference needs (state dict, model config, validation FPR95), checks that the
file loads with ``weights_only=True`` and strict keys, and writes ``register/weights/MODEL_CARD.md``
from the run's saved config and log (data, splits, preset, epochs, hardware, training time) and,
when given, the test FPR95 table of ``pipelines.evaluate patches``.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import sys
from pathlib import Path

import torch

from pipelines.patches import PROTOCOL_NOTE
from register.config import WEIGHTS_DIR
from register.nn.ssml_qnet import ModelConfig, SSMLQNet, count_flops
from register.score import load_model, save_weights


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.ship", description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, required=True, help="output folder of pipelines.train")
    p.add_argument("--name", default="ssml_qnet_lite_all.pt")
    p.add_argument("--patch-eval", type=Path, default=None,
                   help="summary.csv of `pipelines.evaluate patches` for these weights")
    p.add_argument("--note", default="",
                   help="a sentence for the card about the training run (e.g. shared cores)")
    p.add_argument("--dest", type=Path, default=WEIGHTS_DIR,
                   help="folder to write the weights and the card into (the package's weights)")
    p.add_argument("--card", default="MODEL_CARD.md", help="file name of the model card")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="stored precision of the floating weights (loaded back as float32)")
    return p


def _patch_eval_rows(path: Path | None) -> list[dict] | None:
    """The test FPR95 rows of a ``pipelines.evaluate patches`` summary (None without one).

    Raises:
        ValueError: the file lacks the columns of the current evaluation.
    """
    if not path or not path.exists():
        return None
    with open(path) as fh:
        rows = [r for r in csv.DictReader(fh) if not r.get("skipped")]
    need = {"patch_pairs", "paper_patch_pairs", "fpr95", "fpr95_random_negatives", "fpr95_paper"}
    if rows and not need <= set(rows[0]):
        raise ValueError(f"{path} lacks columns {sorted(need - set(rows[0]))}; it comes from "
                         "an older `pipelines.evaluate patches`: rerun that first")
    return rows


def write_weights(ck: dict, dest: Path, dtype: str) -> tuple[list[Path], SSMLQNet]:
    """Write a run's best weights compactly (:func:`register.score.save_weights`) and check
    that they load (``weights_only=True``, strict keys); the files change only once the new
    ones are known to load. Returns the files and the network loaded from them."""
    tmp = dest.parent / (".staging_" + dest.name)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = save_weights(ck["model"], ck["config"], tmp / dest.name,
                             dtype=getattr(torch, dtype),
                             meta={"epoch": ck["epoch"], "val_fpr95": ck["val_fpr95"]})
        model = load_model(tmp / dest.name, "cpu")
        for old in dest.parent.glob(dest.stem + ".part*.pt"):
            old.unlink()
        out = [f.replace(dest.parent / f.name) for f in files]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, model


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:  # the test FPR95 table, checked before anything is written
        rows = _patch_eval_rows(args.patch_eval)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ck = torch.load(args.run / "best.pt", map_location="cpu", weights_only=True)
    cfg = json.loads((args.run / "config.json").read_text())
    log = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines()]
    args.dest.mkdir(parents=True, exist_ok=True)
    files, model = write_weights(ck, args.dest / args.name, args.dtype)
    lines = card_lines(args, ck, cfg, log, rows, files, model)
    (args.dest / args.card).write_text("\n".join(lines) + "\n")
    for f in files:
        print(f, f"{f.stat().st_size / 1e6:.2f} MB")
    return 0


def _patch_note(cfg: dict) -> str:
    """Seeds and keypoints per image of a run's patch files, from their saved configs."""
    seeds = cfg.get("patch_seeds", [0])
    try:
        per = json.loads(Path(cfg["patches"][0]).with_suffix(".config.json").read_text())
        per_image = per["per_image"]
    except (OSError, KeyError, ValueError, IndexError):
        per_image = "?"
    return (f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, {per_image} "
            "keypoints per image pair")


def card_lines(args, ck: dict, cfg: dict, log: list[dict], rows: list[dict] | None,
               files: list[Path], model: SSMLQNet) -> list[str]:
    """The card: preset and cost, data, training, validation curve, test FPR95 (``rows``)."""
    flops = count_flops(model)
    paper = count_flops(SSMLQNet(ModelConfig.from_preset("paper")))
    params = sum(p.numel() for p in model.parameters())
    lines = [
        "# SSML-QNet weights shipped with register", "",
        f"## `{args.name}`", "",
        f"- Files: {', '.join(f'`{f.name}` ({f.stat().st_size / 1e6:.1f} MB)' for f in files)}"
        f"; {args.dtype} weights, loaded as float32 with `weights_only=True` and strict keys.",
        f"- Preset: `{ck['config']['preset']}` ({params:,} parameters, "
        f"{flops['pair'] / 1e6:.1f} MFLOP per pair: {flops['embed'] / 1e6:.1f} in the two "
        f"patches' branches, {flops['head'] / 1e6:.1f} in the pair head; the `paper` preset is "
        f"{paper['pair'] / 1e9:.2f} GFLOP, {paper['pair'] / flops['pair']:.0f}x more).",
        f"- Modalities: `{cfg['modality']}` (one joint model for VIS-NIR, optical-SAR, "
        "optical-infrared and VIS-LWIR).",
        "- Data: the training splits of `data/splits.json` (EPFL `country`; SRIF optical-SAR "
        "1-150 with the corrected truth of the shared data (pairs 61, 115 and 137 have none) and the "
        "BigEarthNet S1/S2 pairs; SRIF optical-infrared 1-150; RoadScene and TNO), cut into "
        "balanced 64x64 patch pairs by `python -m pipelines.patches --modality M` for each "
        f"modality M ({_patch_note(cfg)}; one file per modality, all passed to "
        "`--patches`). The patch pairs of every 10th training image pair of each modality "
        "(`pipelines.datasets.held_out`, the same image pairs as the registration validation "
        "pairs) validate and do not train. No test pair was used for training, augmentation "
        "statistics or threshold tuning.",
        f"- Training: `python -m pipelines.train --modality {cfg['modality']} --preset "
        f"{cfg['preset']} --epochs {cfg['epochs']} --batch-size {cfg['batch_size']} --lr "
        f"{cfg['lr']} --threads {cfg.get('threads')} --device {cfg['device']}"
        + (" --amp" if cfg.get("amp") else "")
        + (f" --invert {cfg['invert']:g}" if cfg.get("invert") else "")
        + (f" --patch-seeds {' '.join(map(str, cfg['patch_seeds']))}"
           if len(cfg.get("patch_seeds", [0])) > 1 else "")
        + (f" --init {Path(cfg['init']).name}" if cfg.get("init") else "")
        + (f" --teacher {Path(cfg['teacher']).name} --distill-alpha {cfg['distill_alpha']:g} "
           f"--distill-temperature {cfg['distill_temperature']:g}" if cfg.get("teacher") else "")
        + " --patches "
        + " ".join(Path(p).name for p in cfg["patches"])
        + f"` ({cfg['train_pairs']:,} training and {cfg['val_pairs']:,} validation "
        "patch pairs).",
        f"- Epochs run: {len(log)}; best validation epoch {ck['epoch']}; training time "
        f"{log[-1]['elapsed_s'] / 60:.1f} min on {cfg['device']} ({cfg.get('threads') or 'all'} "
        f"threads, {platform.machine()}, torch {cfg['torch']}).",
        *([f"- Note: {args.note}"] if args.note else []),
        "- Validation FPR95 (%) at the best epoch: "
        + ", ".join(f"{k} {v:.2f}" for k, v in ck["val_fpr95"].items()) + ".", "",
        "| epoch | train loss | validation FPR95 (all, %) |", "|---|---|---|",
    ]
    lines += [f"| {r['epoch']} | {r['loss']:.4f} | {r['val_fpr95']['all']:.2f} |" for r in log]
    if rows is not None:
        lines += ["", "## Test FPR95", "",
                  f"From `{args.patch_eval}` (`python -m pipelines.evaluate patches`):", "",
                  "| set | patch pairs (pipeline / paper protocol) | FPR95 % (paper protocol) "
                  "| FPR95 % (pipeline protocol, random negatives) | FPR95 % (pipeline "
                  "protocol, all negatives) |", "|---|---|---|---|---|"]
        lines += [f"| {r['set']} | {r['patch_pairs']} / {r['paper_patch_pairs']} | "
                  f"{float(r['fpr95_paper']):.2f} | {float(r['fpr95_random_negatives']):.2f} | "
                  f"{float(r['fpr95']):.2f} |" for r in rows]
        lines += ["", PROTOCOL_NOTE]
    return lines


if __name__ == "__main__":
    sys.exit(main())
