"""Build balanced 64x64 match / non-match patch pairs from aligned image pairs.

    python -m pipelines.patches --split train --out ~/.cache/register/patches [--seed 0]
        [--protocol pipeline|paper]

For every pair of a split the fixed image is shrunk so its longer side is at most the
pipeline's working size (as ``register_pair`` does), the moving image is resampled onto that
grid with the ground truth composed with the exact map of the shrink, and keypoints are
detected in the fixed image exactly as the pipeline does. Around each keypoint ``p``:

* positives: moving patch at ``p`` + sub-pixel jitter, with a small residual rotation and scale
  (the pipeline's hypotheses leave such residuals);
* hard negatives, *nearby*: moving patch 6-32 px off ``p``;
* hard negatives, *look-alike*: the strongest structural-correlation peaks within 32 px that are
  not at ``p`` (exactly the confusers the pipeline's shortlist offers the network);
* random negatives: moving patch at another keypoint.

Every moving patch, positive or negative, is cut with the same sub-pixel jitter and small
rotation and scale (bilinear resampling), so that sharpness says nothing about the label.

Each pair's ``kind`` (index into ``KINDS``) is stored, so FPR95 can be reported against all
negatives or against random negatives only. ``--protocol paper`` cuts test patches as the
paper's benchmarks do instead: the positive exactly at ``p``, one random negative per keypoint,
no augmentation.

Augmentation: independent contrast / gamma on each side, multiplicative speckle on SAR. The
output is deterministic for a seed and is written (atomically) as one ``.npz`` per split with
``fixed``, ``moving`` (N, 64, 64) uint8, ``label`` (N,) uint8, ``kind`` (N,) uint8, ``modality`` (N,) uint8 index into
``MODALITY_NAMES`` and ``pair`` (N,) int32 index into the stored ``pair_names``; the resolved
config is saved beside it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from pipelines.datasets import MODALITY_NAMES, Pair, all_pairs
from register.frames import downscale
from register.config import PATCH_SIZE, Config, data_root
from register.detect import detect
from register.io import read_image, to_gray
from register.write import atomic_path
from register.match import local_maxima
from register.patches import crop_patches, warp_to_frame
from register.structural import oriented_gradient_channels

#: ``kind`` of a patch pair: positive, nearby (6-32 px) negative, look-alike, random negative
KINDS = ("positive", "nearby", "look-alike", "random")
#: how patch pairs are cut: ``pipeline`` (what the pipeline meets) or ``paper`` (aligned, random)
PROTOCOLS = ("pipeline", "paper")
#: version of the builder, recorded beside each file; bump it by hand whenever a change to this
#: module (or to what it calls) changes the patches a seed gives. 2: the fixed image is shrunk
#: with its exact pixel map (load_aligned); 3: the paper protocol's negatives are a patch side
#: away; 4: look-alike and random negatives are resampled like the positives (they were plain
#: crops, sharper than the resampled positives: a cue the network learned)
BUILDER_VERSION = 4
#: what the two protocols are, for tables and model cards
PROTOCOL_NOTE = (
    "Paper protocol (as the paper's benchmarks): per keypoint one positive at exactly "
    "corresponding points and one random negative (the moving patch of another keypoint of the "
    "same image pair at least 64 px away), no augmentation. Pipeline protocol (what the "
    "pipeline meets, as in training): positives with up to 1 px jitter per axis, 6 deg rotation "
    "and 6 % scale; nearby (6-32 px), look-alike and random negatives; contrast, gamma and SAR "
    "speckle.")
DEFAULT_CACHE = Path.home() / ".cache" / "register" / "patches"


def load_aligned(pair: Pair, work_max_side: int):
    """Fixed image, moving image resampled onto the fixed grid, and the joint validity mask,
    all (H, W) at working resolution (float32, float32, bool).

    The fixed image is shrunk exactly as ``register_pair`` shrinks it
    (:func:`register.frames.downscale`), and the moving image is warped into that frame with the
    exact map of the shrink (``cv2.resize`` aligns pixel centres), so a fixed pixel and the
    moving pixel at the same working coordinates correspond under the ground truth.
    """
    root = data_root()
    fixed = to_gray(read_image(root / pair.fixed))
    mov = to_gray(read_image(root / pair.moving), sar=pair.modality == "opt-sar")
    H = pair.H_array
    if H is None:
        raise ValueError(f"{pair.set}/{pair.name}: dense ground truth cannot train")
    fw, S = downscale(fixed, min(1.0, work_max_side / max(fixed.image.shape)))
    mi, mm = warp_to_frame(mov.image, mov.mask, S @ H, fw.image.shape)
    return fw.image, mi, fw.mask & mm


def _augment(p: np.ndarray, rng: np.random.Generator, sar: bool) -> np.ndarray:
    x = p.astype(np.float32) / 255.0
    if sar and rng.random() < 0.5:
        looks = rng.uniform(2, 8)
        x = x * rng.gamma(looks, 1 / looks, size=x.shape).astype(np.float32)
    gamma = float(np.exp(rng.normal(0, 0.25)))
    x = np.clip(x, 0, 1) ** gamma
    x = x * rng.uniform(0.7, 1.3) + rng.uniform(-0.15, 0.15)
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def _rot_scale(rng: np.random.Generator, max_deg: float, max_scale: float) -> np.ndarray:
    """(2, 2) a random rotation within ``max_deg`` and scale within exp(+-``max_scale``)."""
    a = np.radians(rng.uniform(-max_deg, max_deg))
    s = np.exp(rng.uniform(-max_scale, max_scale))
    return s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _moving_crop(mi: np.ndarray, centre, rng: np.random.Generator) -> np.ndarray:
    """A moving patch near ``centre`` (x, y px), with sub-pixel jitter and a small rotation
    and scale (the residuals the pipeline's hypotheses leave). Positives, look-alike and
    random negatives all come from here, so that sharpness cannot tell them apart."""
    j = rng.uniform(-1.0, 1.0, 2)
    c = np.array([[centre[0] + j[0], centre[1] + j[1]]], np.float32)
    return crop_patches(mi, c, affine=_rot_scale(rng, 6, 0.06))[0]


def _look_alike(Ff: np.ndarray, Fm: np.ndarray, x: float, y: float, *, half: int = 20,
                rad: int = 32) -> tuple[int, int] | None:
    """A look-alike of keypoint (x, y) (px): the strongest structural-correlation peak of its
    template (``Ff``, the fixed channels) in the moving channels ``Fm`` within ``rad`` px that
    is at least 6 px from the truth; None near the border or without one."""
    xi, yi = int(round(x)), int(round(y))
    tpl = Ff[:, yi - half:yi + half + 1, xi - half:xi + half + 1]
    reg = Fm[:, yi - half - rad:yi + half + rad + 1, xi - half - rad:xi + half + rad + 1]
    if tpl.shape[1] != 2 * half + 1 or reg.shape[1] != 2 * (half + rad) + 1:
        return None
    surf = sum(cv2.matchTemplate(np.ascontiguousarray(reg[c]), np.ascontiguousarray(tpl[c]),
                                 cv2.TM_CCORR) for c in range(tpl.shape[0]))
    for py, px in local_maxima(surf, 4):
        if np.hypot(px - rad, py - rad) >= 6:
            return xi + px - rad, yi + py - rad
    return None


def _paper_pairs(fi: np.ndarray, mi: np.ndarray, xy: np.ndarray, rng: np.random.Generator):
    """The paper protocol's pairs at keypoints ``xy`` (N, 2): per keypoint one positive and one
    random negative, the moving patch of another keypoint whose patch does not overlap (the
    farthest if none)."""
    n = len(xy)
    dist = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=2)
    other = np.array([rng.choice(far) if len(far := np.flatnonzero(row >= PATCH_SIZE))
                      else int(np.argmax(row)) for row in dist])
    fix, mov = crop_patches(fi, xy), crop_patches(mi, xy)
    return (np.concatenate([fix, fix]), np.concatenate([mov, mov[other]]),
            np.repeat(np.array([1, 0], np.uint8), n),
            np.repeat(np.array([KINDS.index("positive"), KINDS.index("random")], np.uint8), n))


def pairs_from_image(fi: np.ndarray, mi: np.ndarray, valid: np.ndarray, modality: str,
                     rng: np.random.Generator, cfg: Config, per_image: int, *,
                     protocol: str = "pipeline"):
    """Patch pairs (fixed, moving, label, kind) from one aligned image pair (``kind`` indexes
    ``KINDS``): (N, 64, 64) uint8, (N, 64, 64) uint8, (N,) uint8, (N,) uint8.

    ``protocol``: ``"pipeline"`` (training and the default test patches: jittered, rotated and
    rescaled positives, hard and random negatives, photometric augmentation; see the module
    docstring) or ``"paper"`` (the paper's patch benchmarks: per keypoint one positive cut at
    exactly corresponding points and one random negative, the moving patch of another keypoint
    of the same image pair at least a patch side away, or the farthest one; no augmentation).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    kp = detect(fi, valid, max_keypoints=per_image, nms_radius=cfg.match.nms_radius,
                border=32 + 32)  # room for the 32 px offsets of the negatives
    n = len(kp)
    if n < 4:
        return None
    xy = kp.xy
    if protocol == "paper":
        return _paper_pairs(fi, mi, xy, rng)
    sar = modality == "opt-sar"
    Ff = oriented_gradient_channels(fi, valid)
    Fm = oriented_gradient_channels(mi, valid)
    fixed_p, moving_p, labels, kinds = [], [], [], []

    def moving_crop(centre) -> np.ndarray:
        return _moving_crop(mi, centre, rng)

    fix_crops = crop_patches(fi, xy)
    for i in range(n):
        x, y = xy[i]
        # two positives with sub-pixel jitter and small residual rotation / scale
        for _ in range(2):
            moving_p.append(moving_crop((x, y)))
            fixed_p.append(fix_crops[i])
            labels.append(1)
            kinds.append(0)
        # nearby hard negative
        r, t = rng.uniform(6, 32), rng.uniform(0, 2 * np.pi)
        moving_p.append(crop_patches(mi, np.array([[x + r * np.cos(t), y + r * np.sin(t)]]),
                                     affine=_rot_scale(rng, 6, 0.06))[0])
        fixed_p.append(fix_crops[i])
        labels.append(0)
        kinds.append(1)
        look, kind = _look_alike(Ff, Fm, x, y), 2
        if look is None:
            other = xy[rng.integers(n)]
            look, kind = (float(other[0]), float(other[1])), 3
        moving_p.append(moving_crop(look))
        fixed_p.append(fix_crops[i])
        labels.append(0)
        kinds.append(kind)
    return _random_and_augmented(np.stack(fixed_p), np.stack(moving_p),
                                 np.array(labels, np.uint8), np.array(kinds, np.uint8), mi, xy,
                                 rng, sar=sar)


def _random_and_augmented(fixed_p, moving_p, labels, kinds, mi, xy, rng, *, sar: bool):
    """Random negatives replace a quarter of the nearby ones (the moving patch of another
    keypoint ``xy``), then every patch is augmented (:func:`_augment`)."""
    near = np.nonzero(kinds == 1)[0]
    swap = near[rng.random(len(near)) < 0.25]
    for s in swap:
        other = xy[rng.integers(len(xy))]
        moving_p[s] = _moving_crop(mi, other, rng)
        kinds[s] = 3
    fixed_p = np.stack([_augment(p, rng, False) for p in fixed_p])
    moving_p = np.stack([_augment(p, rng, sar) for p in moving_p])
    return fixed_p, moving_p, labels, kinds


def build(split_prefix: str, out_dir: Path, *, seed: int, per_image: int,
          cfg: Config = Config(), modalities: tuple[str, ...] = MODALITY_NAMES,
          pairs: dict[str, list[Pair]] | None = None, dest: Path | None = None,
          protocol: str = "pipeline", meta: dict | None = None, log=print) -> Path:
    """Build and save the patch pairs of every ``split_prefix/<modality>`` split.

    ``pairs`` (``{"<split>/<modality>": [Pair, ...]}``) replaces the split file's pairs, and
    ``dest`` the default file name, e.g. for extra aligned test sources. ``protocol``: see
    :func:`pairs_from_image` (``paper`` adds ``_paper`` to the default file name).

    Beside the ``.npz`` a ``.config.json`` records how it was built (split, seed, keypoints per
    image, protocol, :data:`BUILDER_VERSION`, the pipeline settings used, and ``meta``), so that
    a cache can tell its files apart (:func:`pipelines.patch_eval.cached_file_matches`).
    """
    rng = np.random.default_rng(seed)
    splits = pairs if pairs is not None else all_pairs(str(data_root()))
    F, M, L, K, MOD, PID, names = [], [], [], [], [], [], []
    for mod in modalities:
        key = f"{split_prefix}/{mod}"
        for pair in splits.get(key, []):
            if pair.H is None:
                continue
            fi, mi, valid = load_aligned(pair, cfg.frames.work_max_side)
            res = pairs_from_image(fi, mi, valid, mod, rng, cfg, per_image, protocol=protocol)
            if res is None:
                continue
            fp, mp, lab, kind = res
            F.append(fp)
            M.append(mp)
            L.append(lab)
            K.append(kind)
            MOD.append(np.full(len(lab), MODALITY_NAMES.index(mod), np.uint8))
            PID.append(np.full(len(lab), len(names), np.int32))
            names.append(f"{pair.set}/{pair.name}")
            log(f"{key} {pair.set}/{pair.name}: {len(lab)} pairs")
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = "" if tuple(modalities) == MODALITY_NAMES else "_" + "+".join(modalities)
    tag += "_paper" if protocol == "paper" else ""
    dest = dest or out_dir / f"{split_prefix}{tag}_seed{seed}.npz"
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, fixed=np.concatenate(F), moving=np.concatenate(M),
                     label=np.concatenate(L), kind=np.concatenate(K),
                     modality=np.concatenate(MOD),
                     pair=np.concatenate(PID), pair_names=np.array(names))
    doc = {"split": split_prefix, "seed": seed, "per_image": per_image, "protocol": protocol,
           "builder_version": BUILDER_VERSION, "modalities": list(modalities),
           "work_max_side": cfg.frames.work_max_side, "nms_radius": cfg.match.nms_radius, **(meta or {})}
    dest.with_suffix(".config.json").write_text(json.dumps(doc, indent=2) + "\n")
    return dest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.patches", description=__doc__.split("\n")[0])
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--out", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-image", type=int, default=96, help="keypoints per image pair")
    p.add_argument("--modality", choices=MODALITY_NAMES + ("all",), default="all")
    p.add_argument("--protocol", choices=PROTOCOLS, default="pipeline",
                   help="pipeline: hard negatives and augmentation (training); paper: aligned "
                        "positives and random negatives, no augmentation (the paper's benchmarks)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mods = MODALITY_NAMES if args.modality == "all" else (args.modality,)
    resolved = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    dest = build(args.split, args.out, seed=args.seed, per_image=args.per_image, modalities=mods,
                 protocol=args.protocol, meta={"by": "pipelines.patches", "args": resolved},
                 log=lambda s: print(s, file=sys.stderr))
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
