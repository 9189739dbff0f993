"""SIFT: a cheap similarity hypothesis for pairs that look alike (often VIS-NIR), and the
support its correspondences give to any later transform (the keypoint confirmation of
:mod:`register.decide`).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from .config import SearchConfig
from .geometry import transfer, transform_scale
from .search import Hypothesis


def sift_correspondences(fixed_u8: np.ndarray, moving_u8: np.ndarray,
                         fixed_mask: np.ndarray | None = None,
                         moving_mask: np.ndarray | None = None, *, max_keypoints: int = 0,
                         ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """SIFT matches of the moving image in the fixed one that pass Lowe's ratio test
    (:func:`ratio_matches`).

    Args:
        fixed_u8, moving_u8: (H, W) uint8 images.
        fixed_mask, moving_mask: (H, W) bool, True where keypoints may lie; None = anywhere.
        max_keypoints: keypoints kept per image (0 = all).

    Returns:
        (xy_moving, xy_fixed): (N, 2) float32 pixel positions (x = column, y = row, 0-based).
    """
    # OpenCV's SIFT already runs on every core: detecting the two images on two threads was
    # slower (125 against 112 ms on the MIFNet pair, 2 cores)
    kf, df = _detect(fixed_u8, fixed_mask, max_keypoints)
    km, dm = _detect(moving_u8, moving_mask, max_keypoints)
    empty = np.zeros((0, 2), np.float32)
    if df is None or dm is None or len(kf) < 2 or len(km) < 2:
        return empty, empty
    query, train = ratio_matches(dm, df, ratio=ratio)
    return (np.float32([km[i].pt for i in query]).reshape(-1, 2),
            np.float32([kf[i].pt for i in train]).reshape(-1, 2))


def _detect(image: np.ndarray, mask: np.ndarray | None, max_keypoints: int) -> tuple:
    """OpenCV SIFT keypoints and (K, 128) float32 descriptors (None without keypoints)."""
    return cv2.SIFT_create(nfeatures=max_keypoints).detectAndCompute(
        image, None if mask is None else mask.astype(np.uint8))


#: query descriptors x train descriptors compared at once by :func:`ratio_matches` (64 MB)
RATIO_BLOCK = 1 << 24


def ratio_matches(query: np.ndarray, train: np.ndarray, *, ratio: float = 0.8
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Lowe's ratio test by brute force: each query descriptor's nearest train descriptor
    (Euclidean), kept when it is nearer than ``ratio`` times the second nearest.

    The squared distances come from one matrix product (|q|^2 + |t|^2 - 2 q.t, float32), in
    blocks of query rows of at most :data:`RATIO_BLOCK` distances: twice as fast as
    OpenCV's ``BFMatcher.knnMatch`` on 2,000 x 2,000 SIFT descriptors (18 against 36 ms on 2
    cores) and the same matches on the MIFNet pair (distances within 3e-5 of OpenCV's).

    Args:
        query: (Q, D) float32 descriptors (e.g. the moving image's).
        train: (T, D) float32 descriptors, T >= 2.

    Returns:
        (query_index, train_index): (M,) int64 each, the matches that pass, in query order.
    """
    t = torch.from_numpy(np.ascontiguousarray(train, np.float32))
    if len(t) < 2:
        raise ValueError(f"expected at least 2 train descriptors, got {len(t)}")
    t2 = (t * t).sum(1)
    step = max(1, RATIO_BLOCK // len(t))
    keep, nearest = [], []
    for s in range(0, len(query), step):
        q = torch.from_numpy(np.ascontiguousarray(query[s:s + step], np.float32))
        d2 = torch.addmm(t2[None] + (q * q).sum(1, keepdim=True), q, t.T, alpha=-2.0)
        best, idx = torch.topk(d2, 2, dim=1, largest=False)  # ascending
        best = best.clamp_min(0)
        keep.append((best[:, 0] < ratio * ratio * best[:, 1]).numpy())
        nearest.append(idx[:, 0].numpy())
    ok = np.concatenate(keep) if keep else np.zeros(0, bool)
    idx = np.concatenate(nearest) if nearest else np.zeros(0, np.int64)
    return np.flatnonzero(ok).astype(np.int64), idx[ok].astype(np.int64)


def to_u8(image: np.ndarray) -> np.ndarray:
    """A working image (float32 in [0, 1], as :func:`register.io.to_gray` gives) as uint8 for
    OpenCV's SIFT."""
    return np.clip(image * 255.0, 0, 255).astype(np.uint8)


def keypoint_hypothesis(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                        moving_mask: np.ndarray, cfg: SearchConfig) -> Hypothesis | None:
    """A similarity from SIFT keypoints, for pairs whose appearance is close enough (often
    VIS-NIR): up to ``cfg.keypoint_max`` keypoints per image, Lowe's ratio test at 0.8, a
    RANSAC similarity at 3 px with at least ``cfg.keypoint_min_inliers`` inliers. It is only a
    hypothesis: the matching stage and the global check decide, as for the search's.

    Returns:
        The hypothesis (``H`` moving px -> fixed px, x = column, y = row, 0-based; ``score`` =
        inlier count; ``support`` = all ratio-test correspondences) or None when the keypoints
        do not agree on one.
    """
    src, dst = sift_correspondences(to_u8(fixed), to_u8(moving), fixed_mask, moving_mask,
                                    max_keypoints=cfg.keypoint_max)
    if len(src) < cfg.keypoint_min_inliers:
        return None
    A, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0,
                                         maxIters=2000, confidence=0.999, refineIters=10)
    if A is None or inl is None or int(inl.sum()) < cfg.keypoint_min_inliers:
        return None
    H = np.vstack([A, [0.0, 0.0, 1.0]])
    scale = transform_scale(A)
    lo, hi = min(cfg.scales), max(cfg.scales)
    if not lo / 1.25 <= scale <= hi * 1.25:
        return None  # degenerate, or outside the scales the search would consider
    angle = math.degrees(math.atan2(A[0, 1], A[0, 0])) % 360
    return Hypothesis(H=H, score=float(inl.sum()), angle_deg=float(angle), scale=float(scale),
                      support=(src, dst))


def keypoint_support(H: np.ndarray, xy_moving: np.ndarray, xy_fixed: np.ndarray,
                     threshold: float) -> int:
    """How many correspondences a transform explains: pairs with ``|H(xy_moving) - xy_fixed|``
    at most ``threshold`` px, counting each keypoint once (the ratio test lets several moving
    keypoints match one fixed keypoint, and a transform collapsing them onto it must not
    count them all).

    Args:
        H: (3, 3) homography, moving px -> fixed px.
        xy_moving, xy_fixed: (N, 2) float32 pixel positions (x = column, y = row, 0-based), e.g.
            the ``support`` of :func:`keypoint_hypothesis`.
        threshold: distance in fixed pixels.

    Returns:
        min(distinct fixed keypoints, distinct moving keypoints) among the explained pairs.
    """
    if len(xy_moving) == 0:
        return 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.linalg.norm(transfer(H, xy_moving) - xy_fixed, axis=1) <= threshold
    return min(len(np.unique(np.round(xy_fixed[ok], 1), axis=0)),
               len(np.unique(np.round(xy_moving[ok], 1), axis=0)))
