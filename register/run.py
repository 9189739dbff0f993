"""Command line: ``python -m register.run FIXED MOVING [options]``.

Exit status: 0 registered, 1 registration failed (``report.json`` still written), 2 bad input or
usage (one line on stderr saying what was wrong and what to do).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import (DEVICES, MODALITIES, PRECISIONS, SELECTIONS, TRANSFORMS, Config,
                     MatchConfig)
from .memory import hold_freed_memory


def _prog() -> str:
    """How the user called the command: the ``register`` console script or the module."""
    return "register" if Path(sys.argv[0]).stem == "register" else "python -m register.run"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_prog(),
        description="Register MOVING onto FIXED (optical/SAR, VIS/NIR, VIS/thermal) and write "
                    "aligned.tif, matches.png, overlay.png and report.json.")
    p.add_argument("fixed", type=Path, help="reference image (its grid and CRS are kept)")
    p.add_argument("moving", type=Path, help="image to align onto FIXED")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="output folder (default: registered/<moving stem>/)")
    p.add_argument("--modality", choices=MODALITIES, default="auto",
                   help="what MOVING is against FIXED: opt-sar scales MOVING as SAR (auto "
                        "does when MOVING is a float raster with negative values, i.e. in dB); "
                        "also picks the network weights, of which only a joint model ships")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the network runs (auto: CUDA when available)")
    p.add_argument("--transform", choices=TRANSFORMS, default=Config.transform,
                   help="model fitted by RANSAC; auto fits a homography and an affine "
                        "transform and keeps the homography only when the matches support its "
                        "perspective terms; with --modality opt-sar it fits an affine transform "
                        "and a similarity first and keeps a homography only when the global "
                        "check clearly prefers it (default: %(default)s)")
    p.add_argument("--max-keypoints", type=int, default=Config.max_keypoints,
                   help="keypoints detected in FIXED (default: %(default)s; at least 8)")
    p.add_argument("--band-fixed", type=int, default=None, help="1-based band of FIXED")
    p.add_argument("--band-moving", type=int, default=None, help="1-based band of MOVING")
    p.add_argument("--band", type=int, default=None, help="same band for both inputs")
    p.add_argument("--speckle-filter", action="store_true", help="median-filter SAR input")
    p.add_argument("--scorer", choices=SELECTIONS, default=MatchConfig.selection,
                   help="how candidate matches are ranked: structural correlation, the "
                        "SSML-QNet network, or both fused (default: %(default)s)")
    p.add_argument("--model", default="auto",
                   help="network weights for --scorer network|fused: 'auto' (the shipped lite "
                        "preset), 'lite', 'paper' (the shipped paper width: 56x the cost, for "
                        "GPUs), a .pt path, or 'random' (plumbing tests only); the structural "
                        "scorer loads none")
    p.add_argument("--precision", choices=PRECISIONS, default=Config.precision,
                   help="the network's arithmetic: auto uses bfloat16 where the device "
                        "multiplies it natively (a CUDA GPU, a CPU with AVX-512 BF16 or AMX), "
                        "float32 elsewhere; float32 gives the same result on every CPU "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=Config.seed,
                   help="seed of RANSAC's sampling (default: %(default)s)")
    p.add_argument("--georef-fallback", action="store_true",
                   help="for georeferenced inputs whose registration confirms no correction: "
                        "still write aligned.tif, resampled by the georeferencing alone "
                        "(the exit status stays 1)")
    p.add_argument("--no-figures", action="store_true", help="skip matches.png / overlay.png")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def _check_args(args: argparse.Namespace, out: Path) -> None:
    """Raise InputError for what can be checked before reading any image."""
    from .checks import InputError, check_output_dir
    from .outputs import OUTPUTS

    if args.max_keypoints < 8:
        raise InputError(f"--max-keypoints must be at least 8, got {args.max_keypoints}")
    for name in ("fixed", "moving"):
        path = getattr(args, name)
        if path.is_dir():
            raise InputError(f"{name} image {path} is a folder; give one image file (a folder "
                             "of images: examples/register_folder.py or python -m pipelines.tiles)")
        if not path.is_file():
            raise InputError(f"{name} image {path} does not exist; check the path")
    check_output_dir(out)  # before any work: a file in the way, or no write permission
    existing = [n for n in OUTPUTS if (out / n).exists()]
    if existing and not args.overwrite:
        raise InputError(f"{out} already holds {', '.join(existing)}; pass --overwrite or "
                         "choose another --out-dir")


def _config(args: argparse.Namespace) -> Config:
    return Config(modality=args.modality, transform=args.transform,
                  max_keypoints=args.max_keypoints, band_fixed=args.band_fixed or args.band,
                  band_moving=args.band_moving or args.band, speckle_filter=args.speckle_filter,
                  model=args.model, precision=args.precision, seed=args.seed,
                  make_figures=not args.no_figures).replace(selection=args.scorer)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hold_freed_memory()  # buffers reused, not page-faulted afresh (register.memory)
    # heavy imports after argument parsing so --help is instant
    from .api import check_inputs, register_pair
    from .checks import InputError
    from .io import READ_MAX_SIDE, read_image
    from .outputs import write_outputs
    from .process import preload
    from .score import resolve_device
    from .scorers import make_scorer

    start = time.perf_counter()

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - start:5.1f}s] {msg}", file=sys.stderr, flush=True)

    out = args.out_dir or Path("registered") / args.moving.stem
    try:
        _check_args(args, out)
        cfg = _config(args)
        device = resolve_device(args.device)
        # every input check runs before the first progress line, so that bad input gives
        # exactly one line on stderr
        # scenes larger than READ_MAX_SIDE are read decimated (bounded memory); aligned.tif is
        # still written at full resolution, block by block
        fixed = read_image(args.fixed, max_side=READ_MAX_SIDE)
        moving = read_image(args.moving, max_side=READ_MAX_SIDE)
        check_inputs(fixed, moving, cfg)
        scorer = make_scorer(cfg, device=device)  # loads weights only for a network scorer
        if cfg.make_figures:  # matplotlib's import (0.3 s) overlaps the registration
            preload("register.plot")
        say(f"registering {args.moving.name} onto {args.fixed.name} ({scorer.name} scorer"
            f"{', ' + str(device) if scorer.name != 'structural' else ''})")
        result = register_pair(fixed, moving, cfg, model=getattr(scorer, "model", None),
                               device=device, progress=say)
        say("writing outputs")
        write_outputs(result, fixed, moving, out, cfg, overwrite=args.overwrite,
                      georef_fallback=args.georef_fallback, progress=say)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no output was written", file=sys.stderr)
        return 2
    return _summary(result, out, say)


def _summary(result, out: Path, say) -> int:
    """The last line of a run, and its exit status."""
    if result.ok:
        c = result.counts
        kept = (", the georeferencing confirmed and kept"
                if result.verification.get("transform") == "georeferencing" else "")
        say(f"ok: {c['num_inliers']} inliers of {c['num_matches']} matches, RMSE "
            f"{result.rmse_px:.2f} px{kept} -> {out}")
        return 0
    fallback = ("; aligned.tif is resampled by the georeferencing alone (--georef-fallback)"
                if (out / "aligned.tif").exists() else "")
    print(f"registration failed: {result.reason} (report in {out / 'report.json'}{fallback})",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    from .process import exit_after

    exit_after(main)
