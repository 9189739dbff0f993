"""Register every image of a folder onto one reference image with the Python API.

    python examples/register_folder.py REFERENCE FOLDER OUT_DIR [--modality opt-sar]

The scorer (and the network, when it needs one) is made once and reused; each moving image gets its own output folder with
aligned.tif, matches.png, overlay.png and report.json, exactly as ``python -m register.run``
writes them. Failed registrations are listed at the end instead of stopping the loop.
"""
import argparse
import sys
from pathlib import Path

from register import Config, InputError, register_pair, write_outputs
from register.io import read_image
from register.scorers import make_scorer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("reference", type=Path)
    p.add_argument("folder", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--modality", default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace earlier outputs")
    args = p.parse_args(argv)
    cfg = Config(modality=args.modality)
    scorer = make_scorer(cfg, device="auto")  # loads the network only when the scorer needs it
    failed = []
    try:
        reference = read_image(args.reference)  # read once, reused for every moving image
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in sorted(args.folder.iterdir()):
        if (path.resolve() == args.reference.resolve()
                or path.suffix.lower() not in (".tif", ".tiff", ".png", ".jpg", ".jpeg")):
            continue
        try:
            moving = read_image(path)
            result = register_pair(reference, moving, cfg, model=getattr(scorer, "model", None))
            write_outputs(result, reference, moving, args.out_dir / path.stem, cfg,
                          overwrite=args.overwrite)
        except InputError as exc:
            failed.append(f"{path.name}: {exc}")
            continue
        print(f"{path.name}: {result.status} {result.reason}")
        if not result.ok:
            failed.append(f"{path.name}: {result.reason}")
    for line in failed:
        print("failed:", line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
