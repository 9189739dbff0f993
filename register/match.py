"""Candidate pairs and their selection.

Candidates: for each fixed keypoint ``p`` the moving image, already resampled into the fixed
frame under the current hypothesis, is searched in a window of ``radius`` pixels around ``p``.
Scoring every position of that window with the network would cost thousands of pairs per
keypoint, so a cheap structural correlation (oriented-gradient channels, see
:func:`register.structural.oriented_gradient_channels`) proposes a *shortlist* of its ``k`` best
local maxima; only those are scored, by the scorer the config selects (:mod:`register.scorers`:
SSML-QNet by default, or the structural correlation itself).

Selection: a keypoint keeps its best-scoring candidate (by ``mode``: structural correlation,
network probability, or both fused) when its probability reaches ``min_probability`` and its
score beats ``ratio`` times the best among the other candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .checks import check_points


@dataclass(frozen=True)
class Candidates:
    """Shortlisted candidate positions.

    Attributes:
        xy_fixed: (N, 2) float32 keypoints in the fixed image (x = column, y = row, 0-based).
        xy_cand: (N, K, 2) float32 candidate positions in the fixed frame (the moving image
            resampled under the hypothesis), sub-pixel; rows with fewer than K candidates
            repeat the last.
        structural: (N, K) float32 structural correlation of each candidate.
    """

    xy_fixed: np.ndarray
    xy_cand: np.ndarray
    structural: np.ndarray

    def __len__(self) -> int:
        return int(self.xy_fixed.shape[0])


@dataclass(frozen=True)
class Matches:
    """Selected correspondences.

    Attributes:
        xy_fixed: (M, 2) float32 fixed-image pixels.
        xy_moving: (M, 2) float32 moving-image pixels (x = column, y = row, 0-based).
        probability: (M,) float32 match probability.
    """

    xy_fixed: np.ndarray
    xy_moving: np.ndarray
    probability: np.ndarray

    def __len__(self) -> int:
        return int(self.xy_fixed.shape[0])


def local_maxima(surface: np.ndarray, k: int, min_distance: int = 2) -> list[tuple[int, int]]:
    """Up to ``k`` (row, col) local maxima of a 2-D surface, highest first."""
    s = surface.astype(np.float32)
    ker = np.ones((2 * min_distance + 1,) * 2, np.uint8)
    peaks = s >= cv2.dilate(s, ker)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-s[ys, xs])
    return [(int(ys[i]), int(xs[i])) for i in order[:k]]


def _subpixel(surf: np.ndarray, py: int, px: int) -> tuple[float, float]:
    """Offset (dx, dy) in px of the vertex of the parabola through a local maximum of ``surf``
    at (row ``py``, column ``px``) and its two neighbours on each axis, within [-0.5, 0.5];
    0 on an axis where the maximum lies on the border or the parabola does not open down."""
    def vertex(lo: float, mid: float, hi: float) -> float:
        den = lo - 2.0 * mid + hi
        return float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5)) if den < 0 else 0.0

    h, w = surf.shape
    dx = vertex(surf[py, px - 1], surf[py, px], surf[py, px + 1]) if 0 < px < w - 1 else 0.0
    dy = vertex(surf[py - 1, px], surf[py, px], surf[py + 1, px]) if 0 < py < h - 1 else 0.0
    return dx, dy


def shortlist(feat_fixed: np.ndarray, feat_moving: np.ndarray, xy_fixed: np.ndarray, *,
              radius: int, k: int, half: int = 20) -> Candidates:
    """Top-``k`` structural-correlation peaks within ``radius`` px of each keypoint, each
    located to a fraction of a pixel by a parabola through the peak and its neighbours on each
    axis, rather than to the whole pixel (up to half a pixel off).

    Args:
        feat_fixed: (C, H, W) float32 channels of the fixed image.
        feat_moving: (C, H, W) float32 channels of the moving image in the fixed frame.
        xy_fixed: (N, 2) float32 keypoints (x = column, y = row, 0-based), integer-valued,
            at least ``radius + half`` px inside the image.
        radius: half-size of the search window, in pixels.
        k: candidates kept per keypoint.
        half: half-size of the correlated template, in pixels.
    """
    xy_fixed = check_points(xy_fixed, "keypoints")
    n = len(xy_fixed)
    cand = np.zeros((n, k, 2), np.float32)
    struct = np.full((n, k), -np.inf, np.float32)
    # channels last: one multi-channel matchTemplate sums the channels' correlations (the
    # same numbers as one call per channel, in a third of the time)
    ff = np.ascontiguousarray(np.moveaxis(feat_fixed, 0, -1))
    fm = np.ascontiguousarray(np.moveaxis(feat_moving, 0, -1))
    for i, (x, y) in enumerate(np.round(xy_fixed).astype(int)):
        t = ff[y - half:y + half + 1, x - half:x + half + 1]
        r = fm[y - half - radius:y + half + radius + 1, x - half - radius:x + half + radius + 1]
        if t.shape[:2] != (2 * half + 1,) * 2 or r.shape[:2] != (2 * (half + radius) + 1,) * 2:
            cand[i] = (x, y)
            continue
        surf = cv2.matchTemplate(r, t, cv2.TM_CCORR)
        norm = np.sqrt((t ** 2).sum()) + 1e-6
        peaks = local_maxima(surf, k)
        for j, (py, px) in enumerate(peaks):
            dx, dy = _subpixel(surf, py, px)
            cand[i, j] = (x + px + dx - radius, y + py + dy - radius)
            struct[i, j] = surf[py, px] / norm
        for j in range(len(peaks), k):
            cand[i, j] = cand[i, max(len(peaks) - 1, 0)]
    return Candidates(xy_fixed, cand, struct)


def select(prob: np.ndarray, structural: np.ndarray | None = None, *, min_probability: float,
           ratio: float, mode: str = "fused") -> tuple[np.ndarray, np.ndarray]:
    """Pick each keypoint's best candidate.

    Args:
        prob: (N, K) float32 match probabilities of the shortlisted candidates.
        structural: (N, K) float32 structural correlations (``-inf`` = no candidate).
        min_probability: the chosen candidate's probability must reach this.
        ratio: the chosen candidate's score must exceed ``ratio`` x the runner-up's.
        mode: ``"network"`` ranks by probability alone; ``"structural"`` by the structural
            correlation alone (the network then only gates by ``min_probability``);
            ``"fused"`` by probability x structural correlation relative to the keypoint's
            best, so the network overrules the correlation only when it is confident.

    Returns:
        keep: (N,) bool, and best: (N,) int index of the chosen candidate per keypoint.
    """
    prob = np.asarray(prob, np.float32)
    if mode == "network" or structural is None:
        score = prob.copy()
    else:
        st = np.where(np.isfinite(structural), structural, -np.inf).astype(np.float32)
        if mode == "structural":
            score = st
        elif mode == "fused":
            top = np.max(st, axis=1, keepdims=True)
            rel = np.clip(st / np.where(top > 0, top, 1.0), 0.0, 1.0)
            score = prob * np.where(np.isfinite(st), rel, 0.0)
        else:
            raise ValueError(f"mode must be 'network', 'structural' or 'fused', got {mode!r}")
    rows = np.arange(len(score))
    best = score.argmax(1)
    s_best = score[rows, best]
    if score.shape[1] > 1:
        other = score.copy()
        other[rows, best] = -np.inf
        runner = other.max(1)
        runner = np.where(np.isfinite(runner), runner, -np.inf)
    else:
        runner = np.full(len(score), -np.inf, np.float32)
    keep = (prob[rows, best] >= min_probability) & (s_best > ratio * np.maximum(runner, 0)) \
        & np.isfinite(s_best)
    return keep, best
