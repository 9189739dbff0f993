"""Registration metrics of ``pipelines.evaluate``: checkpoints, per-pair error, success rate
and AUC. Points are pixel (x = column, y = row), 0-based; errors are in fixed-image pixels.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from pipelines.datasets import Pair, gt_map
from register.geometry import transfer

THRESHOLDS = (3.0, 5.0, 10.0)
GRID = 10  # checkpoints per side
DENSE_MARGIN = 32  # px kept free at the border of the moving image for dense-field pairs



def _apply(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """:func:`register.geometry.transfer` without warnings for points mapped to infinity."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return transfer(H, xy)


def homography_checkpoints(H_gt: np.ndarray, fixed_shape: tuple[int, int],
                           moving_shape: tuple[int, int], grid: int = GRID
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Checkpoints of a pair with a homography ground truth ``H_gt`` (moving px -> fixed px).

    A ``grid`` x ``grid`` lattice of cell centres over the fixed image (``c``) is mapped back to
    the moving image by ``inv(H_gt)`` (``m``); checkpoints whose ``m`` falls outside the moving
    image are dropped (all are kept if none is inside). Returns ``(m, c)``, each (N, 2) float64.
    """
    hf, wf = fixed_shape[:2]
    hm, wm = moving_shape[:2]
    xs = (np.arange(grid) + 0.5) * wf / grid - 0.5
    ys = (np.arange(grid) + 0.5) * hf / grid - 0.5
    c = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    m = _apply(np.linalg.inv(np.asarray(H_gt, np.float64)), c)
    inside = (np.isfinite(m).all(1) & (m[:, 0] >= 0) & (m[:, 0] <= wm - 1)
              & (m[:, 1] >= 0) & (m[:, 1] <= hm - 1))
    if inside.any():
        m, c = m[inside], c[inside]
    return m, c


def dense_checkpoints(moving_shape: tuple[int, int], grid: int = GRID,
                      margin: float = DENSE_MARGIN) -> np.ndarray:
    """(grid*grid, 2) lattice over the moving image, ``margin`` px inside its border."""
    hm, wm = moving_shape[:2]
    xs = np.linspace(margin, wm - 1 - margin, grid)
    ys = np.linspace(margin, hm - 1 - margin, grid)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def checkpoints(pair: Pair, fixed_shape: tuple[int, int], moving_shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(xy_moving, xy_fixed_true)`` checkpoints of a test pair (homography or dense GT)."""
    if pair.H is not None:
        return homography_checkpoints(pair.H_array, fixed_shape, moving_shape)
    q = dense_checkpoints(moving_shape)
    return q, gt_map(pair, q)


def pair_error(H_est: np.ndarray | None, xy_moving: np.ndarray, xy_fixed: np.ndarray) -> float:
    """Mean distance (fixed px) between ``H_est(xy_moving)`` and the true ``xy_fixed``;
    ``inf`` when ``H_est`` is None or not a finite 3x3 matrix, or maps a point to infinity."""
    if H_est is None:
        return math.inf
    H = np.asarray(H_est, np.float64)
    if H.shape != (3, 3) or not np.isfinite(H).all():
        return math.inf
    p = _apply(H, np.asarray(xy_moving, np.float64))
    if not np.isfinite(p).all():
        return math.inf
    d = np.linalg.norm(p - np.asarray(xy_fixed, np.float64), axis=1)
    return float(d.mean()) if len(d) else math.inf


def auc(errors: Iterable[float], threshold: float) -> float:
    """Area under the recall-vs-error curve on [0, threshold], divided by threshold
    (SuperGlue / LightGlue pose AUC). Infinite errors never count as recalled."""
    e = np.asarray(list(errors), np.float64)
    if len(e) == 0:
        return math.nan
    e = np.sort(np.where(np.isnan(e), np.inf, e))
    recall = np.arange(1, len(e) + 1) / len(e)
    e = np.r_[0.0, e]
    recall = np.r_[0.0, recall]
    last = int(np.searchsorted(e, threshold))
    r = np.r_[recall[:last], recall[last - 1]]
    x = np.r_[e[:last], threshold]
    area = float(np.sum((x[1:] - x[:-1]) * (r[1:] + r[:-1]) / 2.0))
    return area / threshold


def summarise(errors: Sequence[float], seconds: Sequence[float] | None = None,
              thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """Per-method summary: ``n``, ``ok`` (finite errors), ``success@t`` (fraction of pairs with
    error <= t), ``auc@t``, ``median_error`` (inf when more than half failed) and
    ``median_seconds``."""
    e = np.asarray(list(errors), np.float64)
    e = np.where(np.isnan(e), np.inf, e)
    out: dict = {"n": int(len(e)), "ok": int(np.isfinite(e).sum())}
    for t in thresholds:
        out[f"success@{t:g}"] = float((e <= t).mean()) if len(e) else math.nan
    for t in thresholds:
        out[f"auc@{t:g}"] = auc(e, t)
    out["median_error"] = float(np.median(e)) if len(e) else math.nan
    s = np.asarray(list(seconds or []), np.float64)
    out["median_seconds"] = float(np.median(s)) if len(s) else math.nan
    return out
