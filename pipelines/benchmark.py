"""End-to-end speed of ``register_pair`` on 512x512 pairs.

    python -m pipelines.benchmark [--repeats 3] [--cold 3] [--device cpu] [--threads 2]
        [--results docs/results.md]

Times the whole registration (reading, hypotheses, scoring, estimation; not the figure and
GeoTIFF writing, which the CLI adds) on the two 512x512 MIFNet pairs and on 512x512 crops
of EPFL VIS-NIR test images, after one warm-up run, and reports the median. The scorer (and
the network, when it needs one) is made once, as the batch programs do. Then the whole
command line on the demo pair, as a user waits for it: ``--cold`` fresh
``python -m register.run`` processes (imports, figures and aligned.tif included), wall time.
With ``--scoring-batch N`` (the default on CUDA: 4096), also the network's scoring rate
through the library (``register.score.score_pairs`` on N random patch pairs, uint8 on the host
as the pipeline has them) in pairs/s and as a fraction of the same run's measured
matrix-multiply peak (bf16 on CUDA, fp32 on the CPU; :mod:`pipelines.scoring_bench` measures
the network's variants). The resolved config and per-run CSV are saved in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.report import command_line, write_csv, write_section
from pipelines.scoring_bench import matmul_peak, pair_rate, random_patches
from register.api import register_pair
from register.scorers import make_scorer
from register.config import PRECISIONS, Config, config_to_dict, data_root
from register.io import from_array, read_image
from register.memory import hold_freed_memory
from register.nn.ssml_qnet import count_flops
from register.score import score_pairs
from register.threads import limit_threads

PAIRS = [("mifnet opt-sar", "mifnet_examples/opt_sar_1.png", "mifnet_examples/opt_sar_2.png"),
         ("mifnet opt-nir", "mifnet_examples/opt_nir_1.png", "mifnet_examples/opt_nir_2.png"),
         ("epfl field/0001 crop", "vis_nir_epfl_registration/field/0001_rgb.jpg",
          "vis_nir_epfl_registration/field/0001_nir.jpg")]


def crop512(r):
    """The central 512x512 window of a raster (benchmark pairs are at least that large)."""
    h, w = r.shape
    y0, x0 = (h - 512) // 2, (w - 512) // 2
    return from_array(r.data[:, y0:y0 + 512, x0:x0 + 512], path=r.path)


COLD = "cold CLI, mifnet opt-sar"


def cold_runs(root: Path, n: int, *, device: str, model: str,
              precision: str = "auto") -> list[dict]:
    """``n`` whole ``python -m register.run`` runs on the demo pair, each a fresh process with
    the figures and aligned.tif written (wall seconds, as rows of ``runs.csv``)."""
    rows = []
    _, f, m = PAIRS[0]
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(n):
            cmd = [sys.executable, "-m", "register.run", str(root / f), str(root / m),
                   "--out-dir", str(Path(tmp) / "out"), "--overwrite", "--quiet",
                   "--device", device, "--model", model, "--precision", precision]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            dt = time.perf_counter() - t
            status = {0: "ok", 1: "failed"}.get(proc.returncode, f"error {proc.returncode}")
            if proc.returncode not in (0, 1):
                print(proc.stderr, file=sys.stderr)
            rows.append({"pair": COLD, "repeat": rep, "seconds": round(dt, 3),
                         "status": status, "inliers": ""})
            print(f"{COLD} #{rep}: {dt:.2f} s ({status})", file=sys.stderr)
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.benchmark",
                                description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cold", type=int, default=3,
                   help="whole CLI runs on the demo pair, each a fresh process (0: none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for torch, OpenCV and the search (register.threads.limit_threads)")
    p.add_argument("--model", default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the network's arithmetic (register.score.set_precision)")
    p.add_argument("--scoring-batch", type=int, default=None,
                   help="pairs per batch of the scoring-rate measurement (default: 4096 on "
                        "CUDA, 0 = none on the CPU)")
    p.add_argument("--scoring-seconds", type=float, default=2.0,
                   help="timed seconds of the scoring rate and of the peak")
    p.add_argument("--out", type=Path, default=Path("runs/benchmark"))
    p.add_argument("--results", type=Path, default=None, help="markdown file to update")
    return p


def scoring_rate(model, batch: int, seconds: float, *, seed: int = 0) -> dict:
    """The network's scoring rate through :func:`register.score.score_pairs` on ``batch`` random
    (64, 64) uint8 patch pairs (pairs/s, TFLOP/s) against the device's measured peak."""
    dev = next(model.parameters()).device
    pf, pm = random_patches(batch, np.random.default_rng(seed))
    rate = pair_rate(lambda: score_pairs(model, pf, pm, batch_size=batch), dev, batch,
                     count_flops(model)["pair"], seconds)
    peak = matmul_peak(dev, 8192 if dev.type == "cuda" else 1024, seconds)
    return {"batch": batch, **rate, "peak_tflops": peak["tflops"], "peak_dtype": peak["dtype"],
            "fraction_of_peak": rate["tflops"] / peak["tflops"]}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hold_freed_memory()
    limit_threads(args.threads)
    cfg = Config(model=args.model, precision=args.precision)
    scorer = make_scorer(cfg, device=args.device)  # the network only for a network scorer
    model = getattr(scorer, "model", None)
    root = data_root()
    # the fresh processes first, while this one is idle (no thread pool of its own spinning)
    rows = cold_runs(root, args.cold, device=args.device, model=args.model,
                     precision=args.precision)
    for name, f, m in PAIRS:
        fr, mr = read_image(root / f), read_image(root / m)
        if fr.shape != (512, 512):
            fr, mr = crop512(fr), crop512(mr)
        register_pair(fr, mr, cfg, model=model)  # warm-up
        for rep in range(args.repeats):
            t = time.perf_counter()
            res = register_pair(fr, mr, cfg, model=model)
            dt = time.perf_counter() - t
            rows.append({"pair": name, "repeat": rep, "seconds": round(dt, 3), "status": res.status,
                         "inliers": res.counts.get("num_inliers", 0)})
            print(f"{name} #{rep}: {dt:.2f} s ({res.status})", file=sys.stderr)
    med = statistics.median(r["seconds"] for r in rows if r["pair"] != COLD)
    scoring = None
    if model is not None:  # by default on CUDA only (--device cuda, or auto finding a GPU)
        on_cuda = next(model.parameters()).device.type == "cuda"
        batch = (4096 if on_cuda else 0) if args.scoring_batch is None else args.scoring_batch
        scoring = scoring_rate(model, batch, args.scoring_seconds) if batch else None
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "runs.csv", rows)
    info = scorer.info()  # as it ran: the weights and the precision
    resolved = {**{k: str(v) for k, v in vars(args).items()}, "config": config_to_dict(cfg),
                "network_precision": info.get("precision"),
                "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                "median_s": med, "cold_cli_median_s": statistics.median(
                    [r["seconds"] for r in rows if r["pair"] == COLD] or [float("nan")]),
                "scoring": scoring}
    (args.out / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
    print(f"median {med:.2f} s over {sum(r['pair'] != COLD for r in rows)} runs")
    if scoring:
        print(f"scoring {scoring['pairs_per_s']:.0f} pairs/s, "
              f"{100 * scoring['fraction_of_peak']:.1f} % of the measured "
              f"{scoring['peak_dtype']} peak")
    if args.results:
        write_section(args.results, "benchmark", _results(args, rows, med, info, scoring),
                      command=command_line("pipelines.benchmark", argv))
    return 0


def _results(args: argparse.Namespace, rows: list[dict], med: float, info: dict,
             scoring: dict | None) -> str:
    """The benchmark's section of ``--results``: per-pair medians, the cold runs, the scoring
    rate."""
    per = {}
    for r in rows:
        if r["pair"] != COLD:
            per.setdefault(r["pair"], []).append(r["seconds"])
    weights = (f", weights `{info['weights']}` in {info['precision']}"
               if "weights" in info else "")
    lines = [f"Settings: {args.threads} CPU threads, device {args.device}, scorer "
             f"`{info['name']}`{weights}.", "",
             "| pair (512x512) | median s | status |", "|---|---|---|"]
    for k, v in per.items():
        st = {r["status"] for r in rows if r["pair"] == k}
        lines.append(f"| {k} | {statistics.median(v):.2f} | {', '.join(sorted(st))} |")
    lines.append(f"| **all** | **{med:.2f}** | |")
    cold = [r for r in rows if r["pair"] == COLD]
    if cold:
        lines += ["", f"The whole command line on the demo pair, {len(cold)} fresh processes "
                  "(`python -m register.run opt_sar_1.png opt_sar_2.png --out-dir DIR "
                  "--overwrite --quiet`, wall time): "
                  + ", ".join(f"{r['seconds']:.2f}" for r in cold)
                  + f" s, median **{statistics.median(r['seconds'] for r in cold):.2f} s**."]
    if scoring:
        lines += ["", f"Network scoring through the library (batch {scoring['batch']}): "
                  f"**{scoring['pairs_per_s']:.0f} pairs/s**, {scoring['tflops']:.3g} TFLOP/s, "
                  f"{100 * scoring['fraction_of_peak']:.1f} % of this run's measured "
                  f"{scoring['peak_dtype']} matrix-multiply peak ({scoring['peak_tflops']:.1f} "
                  "TFLOP/s)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
