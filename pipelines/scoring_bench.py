"""Network scoring throughput: patch pairs per second and the fraction of the device's peak.

    python -m pipelines.scoring_bench [--device cuda] [--preset paper] [--batch-sizes 1024 4096]
        [--variants library eager_bf16 channels_last compile compile_graphs compile_bf16]
        [--compile-backend inductor] [--out runs/scoring_bench]

Measures, on one device and in one process:

* the device's dense matrix-multiply peak, bf16 on CUDA (fp32 on the CPU), on random data
  (``--matmul-size`` cubed, the mean of timed products after warm-ups);
* ``register.score.score_pairs`` as the library runs it (``library``: uint8 patches on the host,
  copied to the device, bf16 autocast on CUDA, per-patch features then the pair head);
* the network alone on device-resident patches, as variants: ``eager_bf16`` (plain forward under
  the library's autocast), ``channels_last`` (model and input in NHWC), ``compile``
  (``torch.compile`` of the forward; its compile time is reported apart), ``compile_graphs``
  (compiled with ``mode="reduce-overhead"``: CUDA graphs replay a fixed batch shape's kernels
  on CUDA), ``compile_bf16`` (weights and input in bfloat16, no autocast and its casts,
  compiled).

A variant that fails is recorded with its error and the others still run.

Each figure is pairs/s and TFLOP/s (pairs/s x :func:`register.nn.ssml_qnet.count_flops`' pair
FLOPs) and that as a fraction of the measured peak. Random weights (speed does not depend on
them), an explicit seed. Results go to ``--out``/``scoring_bench.json`` (rewritten after every
measurement, so a run stopped early keeps what it measured) with the resolved config.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from register.nn.ssml_qnet import count_flops
from register.patches import to_tensor
from register.score import load_model, resolve_device, score_pairs

VARIANTS = ("library", "eager_bf16", "channels_last", "compile", "compile_graphs", "compile_bf16")
COMPILED = ("compile", "compile_graphs", "compile_bf16")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.scoring_bench",
                                description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--preset", choices=("lite", "paper"), default="paper")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend of the compiled variants (eager: a quick check "
                        "of the code path)")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    p.add_argument("--matmul-size", type=int, default=8192)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/scoring_bench"))
    return p


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, seconds: float, *, warmup: int = 2) -> float:
    """Mean seconds per call of ``fn`` over at least ``seconds`` (and 3 calls), after warm-ups."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
        if n % 4 == 0:
            _sync(dev)
    _sync(dev)
    return (time.perf_counter() - t0) / n


def matmul_peak(dev: torch.device, size: int, seconds: float) -> dict:
    """Measured dense matrix-multiply rate: bf16 on CUDA, fp32 on the CPU (TFLOP/s)."""
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(size, size, device=dev, dtype=dtype, generator=g)
    b = torch.randn(size, size, device=dev, dtype=dtype, generator=g)
    dt = timed(lambda: a @ b, dev, seconds, warmup=3)
    return {"dtype": str(dtype).replace("torch.", ""), "size": size,
            "tflops": 2 * size ** 3 / dt / 1e12}


def _variant_fn(name: str, model, a: torch.Tensor, b: torch.Tensor, dev: torch.device, *,
                backend: str = "inductor"):
    """(callable scoring the batch (a, b), seconds spent preparing it) for a network variant."""
    auto = torch.autocast("cuda", dtype=torch.bfloat16,
                          enabled=dev.type == "cuda" and name != "compile_bf16")
    t0 = time.perf_counter()
    net = model
    if name == "channels_last":
        net = copy.deepcopy(model).to(memory_format=torch.channels_last)  # model stays NCHW
        a, b = (x.contiguous(memory_format=torch.channels_last) for x in (a, b))
    elif name == "compile_bf16":
        net = copy.deepcopy(model).to(torch.bfloat16)
        a, b = a.to(torch.bfloat16), b.to(torch.bfloat16)
    if name in COMPILED:
        torch.compiler.reset()  # each variant compiles afresh (not against another's guards)
        mode = "reduce-overhead" if name == "compile_graphs" else None
        net = torch.compile(net, backend=backend, mode=mode)

    @torch.inference_mode()
    def run():
        with auto:
            return net(a, b)
    if name in COMPILED:
        run()  # compiles (and, for compile_graphs, records the graph on a later call)
        _sync(dev)
    return run, time.perf_counter() - t0


def random_patches(batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two (batch, 64, 64) uint8 arrays of random patches (speed does not depend on content)."""
    return tuple(rng.integers(0, 256, (batch, 64, 64), dtype=np.uint8) for _ in range(2))


def pair_rate(fn, dev: torch.device, batch: int, flops: float, seconds: float) -> dict:
    """``pairs_per_s`` and ``tflops`` of ``fn``, which scores ``batch`` pairs of ``flops`` each
    (:func:`timed` over ``seconds``)."""
    dt = timed(fn, dev, seconds)
    return {"pairs_per_s": batch / dt, "tflops": batch / dt * flops / 1e12}


def measure(args: argparse.Namespace, dev: torch.device, record) -> None:
    """Every (variant, batch size) measurement, each passed to ``record`` as it completes."""
    model = load_model(f"random-{args.preset}", dev, seed=args.seed)
    flops = count_flops(model)["pair"]
    rng = np.random.default_rng(args.seed)
    for bs in args.batch_sizes:
        pf, pm = random_patches(bs, rng)
        for name in args.variants:
            prep = 0.0
            try:
                if name == "library":
                    fn = lambda: score_pairs(model, pf, pm, batch_size=bs)  # noqa: E731
                else:
                    a, b = to_tensor(pf).to(dev), to_tensor(pm).to(dev)
                    fn, prep = _variant_fn(name, model, a, b, dev, backend=args.compile_backend)
                rate = pair_rate(fn, dev, bs, flops, args.seconds)
            except Exception as exc:  # noqa: BLE001 - one variant's failure is a result too
                record({"variant": name, "batch": bs, "error": f"{type(exc).__name__}: {exc}"})
                continue
            record({"variant": name, "batch": bs, **rate, "prepare_s": round(prep, 2)})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda"
           else platform.processor() or platform.machine(),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "runs": []}
    dest = args.out / "scoring_bench.json"

    def save() -> None:
        dest.write_text(json.dumps(doc, indent=2) + "\n")

    doc["peak"] = matmul_peak(dev, args.matmul_size, args.seconds)
    print(f"peak {doc['peak']['tflops']:.1f} TFLOP/s ({doc['peak']['dtype']})", file=sys.stderr)
    save()

    def record(row: dict) -> None:
        doc["runs"].append(row)
        if "error" in row:
            print(f"{row['variant']:>14} batch {row['batch']:>5}: failed: {row['error']}",
                  file=sys.stderr, flush=True)
        else:
            row["fraction_of_peak"] = row["tflops"] / doc["peak"]["tflops"]
            print(f"{row['variant']:>14} batch {row['batch']:>5}: {row['pairs_per_s']:9.0f} "
                  f"pairs/s {row['tflops']:7.2f} TFLOP/s ({100 * row['fraction_of_peak']:.1f} % "
                  "of peak)", file=sys.stderr, flush=True)
        save()

    measure(args, dev, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
