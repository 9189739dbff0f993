"""Assemble the folder that ``pipelines/gpu_recipe.sh`` trains from on a GPU machine.

    python -m pipelines.gpu_bundle --out gpu_bundle [--test-sets opt-sar,opt-ir]
        [--init PATH] [--wheels DIR] [--no-training] [--max-mb 60]

The GPU machine this is for has CUDA torch, numpy, OpenCV, Pillow and scikit-image but no
rasterio, kornia or internet, so the bundle carries everything else the recipe reads:

* ``code/``: the ``register`` and ``pipelines`` packages (without the shipped weights) and
  ``data/splits.json``;
* ``data/``: ``MANIFEST.md``, the ground-truth files, every image of the training split (not
  with ``--no-training``, which carries the three pairs of ``pipelines.benchmark`` instead), the
  images of the ``--test-sets`` whose test FPR95 the recipe should report (VIS-LWIR: the
  aligned MSRS originals the patch evaluation cuts); folders the dataset lists scan are made
  even when empty. Images are copied byte for byte; without rasterio they are decoded by
  Pillow / OpenCV (:func:`register.io.read_image`);
* ``init/``: optional starting weights (``--init``), stored float16;
* ``wheels/``: optional wheels for packages missing there (none are needed by the recipe);
* ``recipe.sh``: a copy of ``pipelines/gpu_recipe.sh``; ``bundle.json``: what is in it.

``pipelines/gpu_e2e.sh`` registers pairs end to end on the GPU from such a bundle (its data and
wheels, the repository's own code and shipped weights): ``--no-training --test-sets opt-ir
--wheels DIR`` with kornia's wheels for the machine's Python makes a small one.

The bundle is refused (nothing written) when it would exceed ``--max-mb``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from pipelines.datasets import LWIR_FIELD, all_pairs
from register.config import data_root
from register.score import read_weights, save_weights

REPO = Path(__file__).resolve().parents[1]
TEST_SETS = ("opt-sar", "opt-ir", "vis-nir", "vis-lwir")
#: ground-truth and metadata files the dataset lists read (relative to the data root)
META_GLOBS = ("MANIFEST.md", "srif_multimodal/gt_homographies.csv",
              "vis_nir_epfl_registration/gt_affine.csv",
              "geotiff/bigearthnet_s1_s2_examples/S1/*/*_labels_metadata.json")
#: folders that the dataset lists iterate (made empty when no image of theirs is bundled)
SCANNED_DIRS = ("vis_lwir_roadscene/vi", "vis_lwir_roadscene/ir", "vis_lwir_tno/vi",
                "vis_lwir_tno/ir", f"{LWIR_FIELD}/vi", f"{LWIR_FIELD}/ir", f"{LWIR_FIELD}/ir_warp")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.gpu_bundle",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="bundle folder (must not exist)")
    p.add_argument("--test-sets", default="opt-sar,opt-ir",
                   help=f"comma-separated test sets to carry images of ({', '.join(TEST_SETS)}; "
                        "'' for none)")
    p.add_argument("--init", type=Path, default=None, help="weights to start training from")
    p.add_argument("--wheels", type=Path, default=None, help="folder of .whl files to carry")
    p.add_argument("--no-training", action="store_true",
                   help="carry no training images (for pipelines/gpu_e2e.sh)")
    p.add_argument("--max-mb", type=float, default=60.0)
    return p


def data_files(test_sets: list[str], *, training: bool = True) -> list[str]:
    """Relative paths under the data root: metadata, the chosen test images, and the training
    images (``training``) or else the benchmark's pairs."""
    from pipelines.benchmark import PAIRS

    root = data_root()
    files = {str(f.relative_to(root)) for g in META_GLOBS for f in root.glob(g)}
    if not training:  # for pipelines/gpu_e2e.sh (1.5 MB; a training bundle stays under 60 MB)
        files.update(f for _, fixed, moving in PAIRS for f in (fixed, moving))
    splits = all_pairs(str(root))
    keys = [k for k in splits if k.startswith("train/")] if training else []
    keys += [f"test/{s}" for s in test_sets if s != "vis-lwir"]
    for k in keys:
        for pair in splits[k]:
            files.update((pair.fixed, pair.moving))
    if "vis-lwir" in test_sets:  # the patch evaluation cuts the aligned MSRS originals
        files.update(str(f.relative_to(root)) for d in ("vi", "ir")
                     for f in (root / LWIR_FIELD / d).iterdir())
    return sorted(files)


def _plan(args: argparse.Namespace, tests: list[str]) -> list[tuple[Path, Path]]:
    """(source, destination relative to the bundle) of every file to copy."""
    root = data_root()
    plan = [(root / f, Path("data") / f) for f in data_files(tests,
                                                            training=not args.no_training)]
    for pkg in ("register", "pipelines"):
        plan += [(f, Path("code") / f.relative_to(REPO)) for f in sorted((REPO / pkg).rglob("*"))
                 if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"
                 and f.suffix != ".pt"]  # not the shipped weights (23 MB): the recipe trains

    plan.append((REPO / "data" / "splits.json", Path("code/data/splits.json")))
    plan.append((REPO / "pipelines" / "gpu_recipe.sh", Path("recipe.sh")))
    if args.wheels is not None:
        plan += [(w, Path("wheels") / w.name) for w in sorted(args.wheels.glob("*.whl"))]
    return plan


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tests = [s for s in args.test_sets.split(",") if s]
    bad = sorted(set(tests) - set(TEST_SETS))
    if bad or args.out.exists() or (args.init is not None and not args.init.exists()):
        why = (f"unknown test sets {bad}; choose from {', '.join(TEST_SETS)}" if bad else
               f"{args.out} exists; pass a new folder" if args.out.exists() else
               f"--init {args.init} does not exist")
        print(f"error: {why}", file=sys.stderr)
        return 2
    plan = _plan(args, tests)
    init = None if args.init is None else read_weights(args.init)  # parts merged
    init_mb = 0.0 if init is None else sum(  # float16 floating tensors
        v.numel() * (2 if v.is_floating_point() else v.element_size())
        for v in init["model"].values()) / 1e6
    total = sum(src.stat().st_size for src, _ in plan) / 1e6 + init_mb
    if total > args.max_mb:
        print(f"error: the bundle would hold {total:.1f} MB, over --max-mb {args.max_mb:g}; "
              "carry fewer --test-sets, or no --init", file=sys.stderr)
        return 2
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for src, rel in plan:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp / rel)
    for d in SCANNED_DIRS:
        (tmp / "data" / d).mkdir(parents=True, exist_ok=True)
    if init is not None:
        save_weights(init["model"], init["config"], tmp / "init" / "init.pt",
                     meta={"from": args.init.name, "val_fpr95": init.get("val_fpr95")})
    size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) / 1e6
    doc = {"test_sets": tests, "training": not args.no_training, "init": str(args.init) if args.init else None, "files": len(plan),
           "mb": round(size, 2), "by": "pipelines.gpu_bundle", "argv": argv or sys.argv[1:]}
    (tmp / "bundle.json").write_text(json.dumps(doc, indent=2) + "\n")
    tmp.rename(args.out)
    print(f"{args.out}: {size:.1f} MB, {len(plan)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
