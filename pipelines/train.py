"""Train SSML-QNet on patch pairs built by ``pipelines.patches``.

    python -m pipelines.train --modality all --preset lite --out runs/lite_all [--minutes 40]

Reproducible (seeded; deterministic data order), resumable (``--resume`` continues from
``last.pt`` in ``--out``), with a progress line per epoch and validation FPR95 per epoch on
held-out *training-split* image pairs (``pipelines.datasets.held_out``, the pairs the
registration validation uses too; test pairs never feed training). The
resolved config, the log and the checkpoints are saved in ``--out``; ``best.pt`` holds weights
only (``weights_only``-loadable, strict keys) together with the model config.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from pipelines.datasets import held_out_names
from pipelines.patches import DEFAULT_CACHE, MODALITY_NAMES, build
from register.nn.ssml_qnet import ModelConfig, SSMLQNet, count_flops
from register.checks import InputError
from register.score import fpr_at_recall, load_model


def load_patches(paths: list[Path], modality: str):
    """Concatenate patch files; pair indices are made unique across files and ``held_out``
    (bool per patch pair) marks those cut from the image pairs of
    :func:`pipelines.datasets.held_out_names`, which validate instead of training."""
    parts, offset = [], 0
    held = held_out_names()
    for path in paths:
        z = np.load(path)
        keep = np.ones(len(z["label"]), bool)
        if modality != "all":
            keep = z["modality"] == MODALITY_NAMES.index(modality)
        d = {k: z[k][keep] for k in ("fixed", "moving", "label", "modality", "pair")}
        d["held_out"] = np.isin(z["pair_names"], sorted(held))[d["pair"]]
        d["pair"] = d["pair"] + offset
        offset += len(z["pair_names"])
        parts.append(d)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def seed_variant(path: Path, seed: int) -> Path:
    """``.../train_vis-nir_seed0.npz`` -> ``.../train_vis-nir_seed<seed>.npz``."""
    stem, sep, _ = path.stem.rpartition("_seed")
    if not sep:
        raise ValueError(f"expected a patch file named *_seed<N>.npz (pipelines.patches), got "
                         f"{path.name}")
    return path.with_name(f"{stem}_seed{seed}{path.suffix}")


def augment_batch(fixed: np.ndarray, moving: np.ndarray, rng: np.random.Generator, *,
                  invert: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """On-the-fly augmentation of a batch of (B, 64, 64) uint8 patch pairs (new arrays).

    One horizontal flip (probability 0.5) and one rotation by a multiple of 90 deg for the
    whole batch, applied to both sides alike so every pair keeps its geometry; then each side
    of each pair has its intensities inverted (255 - x) with probability ``invert`` (contrast
    reversals between modalities; matches and non-matches alike). The inversion draws come from
    ``rng`` after the flip and rotation draws.
    """
    if rng.random() < 0.5:
        fixed, moving = fixed[:, :, ::-1], moving[:, :, ::-1]
    k = int(rng.integers(4))
    fixed = np.array(np.rot90(fixed, k, (1, 2)), order="C")
    moving = np.array(np.rot90(moving, k, (1, 2)), order="C")
    if invert > 0:
        for side in (fixed, moving):
            flip = rng.random(len(side)) < invert
            side[flip] = 255 - side[flip]
    return fixed, moving


def batches(n: int, bs: int, rng: np.random.Generator):
    idx = rng.permutation(n)
    for i in range(0, n - bs + 1, bs):
        yield idx[i:i + bs]


def to_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).float().div_(255.0).unsqueeze(1)


@torch.inference_mode()
def evaluate_fpr95(model: SSMLQNet, data: dict, bs: int = 1024) -> dict[str, float]:
    """FPR95 in % per modality present in ``data`` (and overall)."""
    model.eval()
    dev = next(model.parameters()).device
    probs = []
    for i in range(0, len(data["label"]), bs):
        logits = model(to_t(data["fixed"][i:i + bs]).to(dev),
                       to_t(data["moving"][i:i + bs]).to(dev))
        probs.append(torch.softmax(logits.float(), 1)[:, 1].cpu().numpy())
    p = np.concatenate(probs)
    out = {"all": fpr_at_recall(p, data["label"])}
    for m, name in enumerate(MODALITY_NAMES):
        sel = data["modality"] == m
        if sel.any():
            out[name] = fpr_at_recall(p[sel], data["label"][sel])
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__.split("\n")[0])
    p.add_argument("--modality", choices=MODALITY_NAMES + ("all",), default="all")
    p.add_argument("--preset", choices=("lite", "paper"), default="lite")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--patches", type=Path, nargs="+", default=None,
                   help="patch files from pipelines.patches (built into the cache when absent)")
    p.add_argument("--epochs", type=int, default=30,
                   help="0 only validates the --init (and --teacher) weights: config.json gets "
                        "their validation FPR95")
    p.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--patch-seeds", type=int, nargs="+", default=[0], metavar="SEED",
                   help="epoch e trains on the patch files of seed SEED[e %% len(SEED)]: the "
                        "--patches files (whose seed comes first) with _seed<N> replaced, built "
                        "by pipelines.patches --seed; fresh jitter, negatives and augmentation "
                        "each epoch. Validation always uses the --patches files' held-out pairs")
    p.add_argument("--invert", type=float, default=0.0,
                   help="probability of inverting the intensities of each side of a training "
                        "pair (contrast reversals between modalities; applied alike to matches "
                        "and non-matches)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--amp", action="store_true",
                   help="train under bfloat16 autocast (for GPUs; the weights stay float32)")
    p.add_argument("--teacher", type=Path, default=None,
                   help="distil from these weights (any preset): the loss mixes the labels' "
                        "cross-entropy with the teacher's softened scores on the same batch")
    p.add_argument("--distill-alpha", type=float, default=0.7,
                   help="weight of the teacher's term in the loss (with --teacher)")
    p.add_argument("--distill-temperature", type=float, default=2.0,
                   help="softmax temperature of the distillation term (with --teacher)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from these weights (a best.pt of pipelines.train or a shipped "
                        "file; strict keys, same preset) instead of a random initialisation, "
                        "e.g. to specialise the joint model to one modality")
    return p


class UsageError(ValueError):
    """Bad options or inputs: ``main`` prints the message and exits 2."""


def _check_options(args: argparse.Namespace) -> None:
    if not 0.0 <= args.invert <= 1.0:
        raise UsageError(f"--invert is a probability, between 0 and 1; got {args.invert:g}")
    if not 0.0 <= args.distill_alpha <= 1.0 or args.distill_temperature <= 0:
        raise UsageError(f"--distill-alpha is a weight in [0, 1] and --distill-temperature is "
                         f"positive; got {args.distill_alpha:g} and {args.distill_temperature:g}")
    if args.init is not None and args.resume:
        raise UsageError("--init starts a new run and --resume continues one in --out; pass "
                         "one of them")


def _patch_files(args: argparse.Namespace) -> list[Path]:
    """The patch files of the first seed (built when missing), checked against --patch-seeds."""
    patches = args.patches or [DEFAULT_CACHE / "train_seed0.npz"]
    if not all(p.exists() for p in patches):
        patches = [build("train", DEFAULT_CACHE, seed=0, per_image=96,
                         log=lambda s: print(s, file=sys.stderr))]
    if len(args.patch_seeds) > 1:
        try:
            first = [seed_variant(p, args.patch_seeds[0]) for p in patches]
        except ValueError as exc:
            raise UsageError(f"--patch-seeds: {exc}") from None
        if first != list(patches):
            raise UsageError(f"--patch-seeds starts with {args.patch_seeds[0]}, but the "
                             f"--patches files are not of that seed "
                             f"({', '.join(p.name for p in patches)}); put their seed first")
    return patches


def _datasets(args: argparse.Namespace, patches: list[Path]) -> tuple[dict, list[dict]]:
    """(validation pairs, one training set per patch seed): the held-out image pairs'
    patches validate, the others train."""
    data = load_patches(patches, args.modality)
    val_sel = data["held_out"]
    val = {k: v[val_sel] for k, v in data.items()}
    tr_sets = [{k: v[~val_sel] for k, v in data.items()}]
    del data
    for seed in args.patch_seeds[1:]:  # the same keypoints, cut and augmented afresh
        files = [seed_variant(p, seed) for p in patches]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise UsageError(f"--patch-seeds {seed}: no patch files {missing}; build them with "
                             f"`python -m pipelines.patches --seed {seed} --modality M --out DIR`")
        more = load_patches(files, args.modality)
        tr_sets.append({k: v[~more["held_out"]] for k, v in more.items()})
    return val, tr_sets


def _model(args: argparse.Namespace, mcfg: ModelConfig, device: torch.device) -> SSMLQNet:
    """A new network of the preset, or the --init weights (which must be of that preset)."""
    if args.init is None:
        return SSMLQNet(mcfg).to(device)
    try:
        model = load_model(args.init, device)  # weights_only, strict keys
    except InputError as exc:
        raise UsageError(f"--init: {exc}") from None
    if model.config != mcfg:
        raise UsageError(f"--init {args.init} is a {model.config.preset} network with config "
                         f"{model.config.to_dict()}, not the {args.preset} preset; pass --preset "
                         f"{model.config.preset}")
    return model


def batch_loss(model: SSMLQNet, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, args, *,
               teacher: SSMLQNet | None = None) -> torch.Tensor:
    """Cross-entropy of the model's logits on a batch ((B, 1, 64, 64) float each, labels (B,)
    int64), under bf16 autocast with ``--amp``. With a ``teacher`` (``--teacher``) it is mixed
    with distillation: ``(1 - alpha) CE + alpha T^2 KL(teacher_T || model_T)``, the teacher's and
    the model's softmax at temperature T (Hinton et al. 2015), alpha and T from
    ``--distill-alpha`` and ``--distill-temperature``."""
    with torch.autocast(a.device.type, dtype=torch.bfloat16, enabled=args.amp):
        logits = model(a, b)
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(a, b)
    logits = logits.float()
    loss = F.cross_entropy(logits, y)
    if teacher is None:
        return loss
    T, alpha = args.distill_temperature, args.distill_alpha
    kl = F.kl_div(F.log_softmax(logits / T, 1), F.log_softmax(t_logits.float() / T, 1),
                  reduction="batchmean", log_target=True)
    return (1 - alpha) * loss + alpha * T * T * kl


def _train_epoch(model, opt, sched, tr: dict, args, epoch: int, steps: int,
                 device: torch.device, teacher: SSMLQNet | None = None) -> float:
    """One epoch of at most ``steps`` batches; the mean training loss."""
    model.train()
    rng = np.random.default_rng(args.seed * 1000 + epoch)
    tot, n = 0.0, 0
    for step, b in enumerate(batches(len(tr["label"]), args.batch_size, rng)):
        if step == steps:
            break
        fa, fb = augment_batch(tr["fixed"][b], tr["moving"][b], rng, invert=args.invert)
        a, bb = to_t(fa).to(device), to_t(fb).to(device)
        y = torch.from_numpy(tr["label"][b].astype(np.int64)).to(device)
        loss = batch_loss(model, a, bb, y, args, teacher=teacher)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        tot += loss.item() * len(b)
        n += len(b)
        if step % 50 == 0:
            print(f"\repoch {epoch} step {step}/{steps} loss {tot / n:.4f}",
                  end="", file=sys.stderr, flush=True)
    return tot / max(n, 1)


def _fit(model, opt, sched, tr_sets: list[dict], val: dict, args, mcfg: ModelConfig,
         steps: int, device: torch.device, out: Path, teacher: SSMLQNet | None = None) -> None:
    """Train for the remaining epochs (resuming from ``last.pt`` with --resume), validating
    and saving ``best.pt`` / ``last.pt`` after each, logging to ``log.jsonl``."""
    start_epoch, best, elapsed = 0, float("inf"), 0.0
    if args.resume and (out / "last.pt").exists():
        ck = torch.load(out / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(ck["model"], strict=True)
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        start_epoch, best, elapsed = int(ck["epoch"]) + 1, float(ck["best"]), float(ck["elapsed"])
    with open(out / "log.jsonl", "a") as log:
        for epoch in range(start_epoch, args.epochs):
            t0 = time.time()
            loss = _train_epoch(model, opt, sched, tr_sets[epoch % len(tr_sets)], args, epoch,
                                steps, device, teacher)
            elapsed += time.time() - t0
            fpr = evaluate_fpr95(model, val)
            rec = {"epoch": epoch, "loss": loss, "val_fpr95": fpr, "elapsed_s": elapsed,
                   "lr": sched.get_last_lr()[0]}
            print(f"\repoch {epoch} loss {loss:.4f} val FPR95 {fpr} ({elapsed:.0f} s)",
                  file=sys.stderr, flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            if fpr["all"] < best:
                best = fpr["all"]
                torch.save({"model": state, "config": mcfg.to_dict(), "epoch": epoch,
                            "val_fpr95": fpr, "train_seconds": elapsed}, out / "best.pt")
            torch.save({"model": state, "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "epoch": epoch, "best": best, "elapsed": elapsed}, out / "last.pt")
            if args.minutes and elapsed > 60 * args.minutes:
                print(f"stopping after {elapsed / 60:.1f} min (--minutes)", file=sys.stderr)
                break


def _teacher(args: argparse.Namespace, device: torch.device) -> SSMLQNet | None:
    if args.teacher is None:
        return None
    try:
        return load_model(args.teacher, device)  # eval mode, weights_only, strict keys
    except InputError as exc:
        raise UsageError(f"--teacher: {exc}") from None


def _starting_points(args, model, teacher, val: dict, resolved: dict) -> None:
    """Validation FPR95 of the --init weights and of the --teacher, into ``resolved``."""
    for key, net, flag in (("init_val_fpr95", model if args.init else None, "--init"),
                           ("teacher_val_fpr95", teacher, "--teacher")):
        if net is not None:
            resolved[key] = evaluate_fpr95(net, val)
            print(f"{flag} weights: val FPR95 {resolved[key]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_options(args)
        torch.manual_seed(args.seed)
        if args.threads:
            torch.set_num_threads(args.threads)
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        patches = _patch_files(args)
        val, tr_sets = _datasets(args, patches)
        mcfg = ModelConfig.from_preset(args.preset)
        model = _model(args, mcfg, device)
        teacher = _teacher(args, device)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = min(len(t["label"]) for t in tr_sets) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, pct_start=0.15,
                                                total_steps=max(args.epochs * steps, 1))
    resolved = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "patches": [str(p) for p in patches], "model": mcfg.to_dict(),
                "flops_per_pair": count_flops(model), "train_pairs": int(len(tr_sets[0]["label"])),
                "val_pairs": int(len(val["label"])), "device": str(device),
                "torch": torch.__version__}
    _starting_points(args, model, teacher, val, resolved)  # where a specialisation or student starts
    (out / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
    _fit(model, opt, sched, tr_sets, val, args, mcfg, steps, device, out, teacher)
    return 0


if __name__ == "__main__":
    sys.exit(main())
