"""Where the tiles of :mod:`pipelines.tiles` run: the per-tile task (:func:`tile_task`, a plain
dict in, a plain dict out, so it pickles to worker processes and Dask workers) and the three
executors: in-process, a local process pool, a Dask cluster (:func:`execute`).
"""
from __future__ import annotations

import resource
import sys
import threading
import time
from typing import Callable

from rasterio.windows import Window

from register.checks import InputError
from register.config import config_from_dict
from register.geometry import translation
from register.io import read_image
from register.memory import hold_freed_memory
from register.scorers import needs_network

_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _model(name: str, device: str, seed: int):
    """The network for these settings, loaded once per process and shared by its threads."""
    from register.score import load_model

    with _MODELS_LOCK:
        key = (name, device, seed)
        if key not in _MODELS:
            _MODELS[key] = load_model(name, device, seed=seed)
        return _MODELS[key]


def _init_worker(model: tuple | None, threads: int) -> None:
    """Process-pool initializer: limit the process's threads (torch, OpenCV and the search's
    pool: :func:`register.threads.limit_threads`) and load the network once (``model`` None:
    the scorer needs none)."""
    from register.threads import limit_threads

    limit_threads(threads)
    if model is not None:
        _model(*model)


def blank_record(job: dict, reason: str = "") -> dict:
    """A failed record of ``job``: its identity fields, no transform."""
    rec = {k: job[k] for k in ("key", "pair", "tile", "fixed", "moving", "fixed_window",
                               "moving_window")}
    rec.update(status="failed", reason=reason, H=None, num_inliers=0, num_matches=0,
               rmse_px=None, hypothesis="", seconds=0.0)
    return rec


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MB (``getrusage``: KB on Linux,
    bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)


def tile_task(job: dict) -> dict:
    """Register one tile (in the driver, a worker process or a Dask worker).

    ``job`` is a plain dict from :func:`plan_jobs`. Returns the tile record: the job's identity
    plus status, reason, H (3x3 nested list or None), num_inliers, num_matches, rmse_px (fixed
    px), hypothesis, seconds and peak_rss_mb (the peak resident memory of the process that ran
    it, so far: a worker's, or the driver's with one local worker). Errors become ``status="failed"`` with the reason; only
    KeyboardInterrupt escapes.
    """
    from register.api import register_pair
    from register.frames import is_sar
    from register.io import to_gray

    t0 = time.perf_counter()
    hold_freed_memory()  # in every worker, hand-started Dask ones too (idempotent, cheap)
    rec = blank_record(job)
    try:
        if job["moving_window"] is None:
            raise InputError("the moving raster covers under 64 px a side of this tile; "
                             "nothing to register")
        cfg = config_from_dict(job["config"])
        fw, mw = Window(*job["fixed_window"]), Window(*job["moving_window"])
        fr, mr = read_image(job["fixed"], window=fw), read_image(job["moving"], window=mw)
        net = (_model(cfg.model, job["device"], cfg.seed)
               if needs_network(cfg.match) else None)
        res = register_pair(fr, mr, cfg, model=net, device=job["device"])
        rec.update(status=res.status, reason=res.reason, hypothesis=res.hypothesis,
                   num_inliers=int(res.counts.get("num_inliers", 0)),
                   num_matches=int(res.counts.get("num_matches", 0)))
        if res.ok:
            H = (translation(fw.col_off, fw.row_off) @ res.H
                 @ translation(-mw.col_off, -mw.row_off))
            rec.update(H=(H / H[2, 2]).tolist(), rmse_px=float(res.rmse_px))
            if job["figure"]:
                from register.plot import plot_matches

                fg = to_gray(fr, band=cfg.band_fixed).image
                mg = to_gray(mr, band=cfg.band_moving, sar=is_sar(mr, cfg.modality),
                             sar_db=cfg.sar_db).image
                m = res.matches
                plot_matches(job["figure"], fg, mg, m.xy_fixed, m.xy_moving, res.inliers,
                             title=job["tile"])
    except InputError as exc:
        rec["reason"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a failed tile must not stop the batch
        rec["reason"] = f"error: {type(exc).__name__}: {exc}"
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["peak_rss_mb"] = peak_rss_mb()
    return rec


class Progress:
    """One updating stderr line: ``tiles: done N / failed N / skipped N of T``."""

    def __init__(self, total: int, *, enabled: bool = True):
        self.total, self.enabled, self.t0 = total, enabled, time.perf_counter()
        self.n = {"done": 0, "failed": 0, "skipped": 0}

    def add(self, what: str) -> None:
        self.n[what] += 1
        self.draw()

    def draw(self, end: str = "") -> None:
        n = self.n
        if self.enabled:
            print(f"\rtiles: done {n['done']} / failed {n['failed']} / skipped {n['skipped']} "
                  f"of {self.total} [{time.perf_counter() - self.t0:.1f}s]", end=end,
                  file=sys.stderr, flush=True)


def execute(jobs: list[dict], on_result: Callable[[dict], None], *, workers: int,
             scheduler: str | None, model: tuple | None, threads: int) -> None:
    """Run :func:`tile_task` on every job in-process (``workers`` 1), in a local process pool or
    on a Dask cluster (one task per tile); ``on_result`` runs in the driver as each finishes."""
    import importlib

    module = importlib.import_module("pipelines.tiles_exec")  # pickled by name, not __main__
    task = module.tile_task
    if not jobs:
        return
    if scheduler:
        from distributed import Client, LocalCluster, as_completed

        local = _local_cluster(LocalCluster, workers, threads) if scheduler == "local" else None
        try:
            with Client(local or scheduler, timeout="30s") as client:
                if local is not None:  # like the local pool: threads set, network loaded once
                    client.run(module._init_worker, model, threads)
                keys = [f"register-tile-{j['key']}" for j in jobs]
                _drain(dict(zip(client.map(task, jobs, key=keys, pure=False), jobs)),
                       as_completed, on_result)
        finally:
            if local is not None:
                local.close()
    elif workers <= 1:
        from register.threads import thread_limit

        with thread_limit(threads):
            if model is not None:
                _model(*model)
            for job in jobs:
                on_result(task(job))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(model, threads)) as ex:
            try:
                _drain({ex.submit(task, j): j for j in jobs}, as_completed, on_result)
            finally:
                ex.shutdown(wait=True, cancel_futures=True)


def _local_cluster(cluster_class, workers: int, threads: int):
    """A Dask LocalCluster of ``workers`` single-task processes of ``threads`` threads each.

    Dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting any glibc
    malloc threshold turns off glibc's dynamic mmap threshold (mallopt(3)), so every buffer
    over 128 kB is mapped and page-faulted afresh: a registration took 2.1x longer (MIFNet
    optical-NIR, one torch thread: 1.79 -> 3.69 s; 3.71 s with the threshold at 256 MB, run in
    a thread with MALLOC_ARENA_MAX=1). These workers start without it."""
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    env = {k: v for k, v in dask.config.get(key, {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    with dask.config.set({key: env}):
        return cluster_class(n_workers=workers, threads_per_worker=1, processes=True,
                             dashboard_address=None)


def _drain(futs: dict, as_completed: Callable, on_result: Callable[[dict], None]) -> None:
    """``on_result`` of each future of ``futs`` (future -> job) as it finishes; a future that
    raised (e.g. its worker died) gives a failed record."""
    for fut in as_completed(futs):
        try:
            rec = fut.result()
        except Exception as exc:  # noqa: BLE001
            rec = blank_record(futs[fut], f"error: {type(exc).__name__}: {exc}")
        on_result(rec)
