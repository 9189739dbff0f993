"""Peak memory and time of the command line on a 12000 x 12000 px pair.

    python -m pipelines.bigscene [--side 12000] [--work DIR] [--results docs/results.md]

Builds the pair from the MIFNet optical / NIR demo images (``mifnet_examples/opt_nir_1.png``
and ``opt_nir_2.png`` of the data root) enlarged to ``--side`` px as tiled uint8 GeoTIFFs with a
little noise (written strip by strip, never whole in memory), runs ``python -m register.run``
on it in a child process and reports the child's peak resident memory (``getrusage``), its
wall time and the lines it printed. The pair, the outputs and ``config.json`` go to ``--work``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from pipelines.report import command_line, write_section
from register.config import data_root

STRIP = 1000


def make_pair(work: Path, side: int) -> tuple[Path, Path]:
    """The two enlarged images (fixed, moving) in ``work``."""
    import rasterio
    from rasterio.windows import Window

    out = []
    for name in ("opt_nir_1", "opt_nir_2"):
        img = cv2.imread(str(data_root() / "mifnet_examples" / f"{name}.png"),
                         cv2.IMREAD_GRAYSCALE)
        dest = work / f"{name}_{side}.tif"
        prof = dict(driver="GTiff", height=side, width=side, count=1, dtype="uint8",
                    tiled=True, blockxsize=512, blockysize=512, compress="deflate")
        xs = ((np.arange(side) + 0.5) * img.shape[1] / side - 0.5).astype(np.float32)
        with rasterio.open(dest, "w", **prof) as dst:
            for r in range(0, side, STRIP):
                n = min(STRIP, side - r)
                ys = ((np.arange(r, r + n) + 0.5) * img.shape[0] / side - 0.5).astype(np.float32)
                mx, my = np.meshgrid(xs, ys)
                block = cv2.remap(img, mx, my, cv2.INTER_LINEAR).astype(np.int16)
                block += np.random.default_rng(r).integers(-3, 4, block.shape, dtype=np.int16)
                dst.write(np.clip(block, 0, 255).astype(np.uint8)[None],
                          window=Window(0, r, side, n))
        out.append(dest)
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.bigscene",
                                description=__doc__.split("\n")[0])
    p.add_argument("--side", type=int, default=12000, help="side of the pair, px")
    p.add_argument("--work", type=Path, default=Path("runs/bigscene"))
    p.add_argument("--results", type=Path, default=None, help="markdown file to update")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    fixed, moving = make_pair(args.work, args.side)
    cmd = [sys.executable, "-m", "register.run", str(fixed), str(moving), "--out-dir",
           str(args.work / "out"), "--overwrite"]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    doc = {"command": command_line("pipelines.bigscene", argv), "side": args.side,
           "cli": " ".join(cmd[1:]), "exit_status": run.returncode,
           "wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb)}
    (args.work / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("[")]
    print(f"exit {run.returncode}, {wall:.1f} s, peak resident memory {peak_mb:.0f} MB",
          file=sys.stderr)
    if args.results:
        body = (f"`python -m register.run` on a {args.side} x {args.side} px uint8 pair: exit "
                f"status {run.returncode}, **{wall:.1f} s** wall time, **peak resident memory "
                f"{peak_mb:.0f} MB**. Its progress lines:\n\n```\n" + "\n".join(lines) + "\n```\n")
        write_section(args.results, "bigscene", body, command=doc["command"])
    return 0 if run.returncode in (0, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
