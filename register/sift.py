"""SIFT: a cheap similarity hypothesis for pairs that look alike (often VIS-NIR), and the
support its correspondences give to any later transform (the keypoint confirmation of
:mod:`register.decide`).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .config import SearchConfig
from .geometry import transfer, transform_scale
from .search import Hypothesis


def sift_correspondences(fixed_u8: np.ndarray, moving_u8: np.ndarray,
                         fixed_mask: np.ndarray | None = None,
                         moving_mask: np.ndarray | None = None, *, max_keypoints: int = 0,
                         ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """SIFT matches of the moving image in the fixed one that pass Lowe's ratio test.

    Args:
        fixed_u8, moving_u8: (H, W) uint8 images.
        fixed_mask, moving_mask: (H, W) bool, True where keypoints may lie; None = anywhere.
        max_keypoints: keypoints kept per image (0 = all).

    Returns:
        (xy_moving, xy_fixed): (N, 2) float32 pixel positions (x = column, y = row, 0-based).
    """
    det = cv2.SIFT_create(nfeatures=max_keypoints)
    mask = (lambda m: None if m is None else m.astype(np.uint8))
    kf, df = det.detectAndCompute(fixed_u8, mask(fixed_mask))
    km, dm = det.detectAndCompute(moving_u8, mask(moving_mask))
    empty = np.zeros((0, 2), np.float32)
    if df is None or dm is None or len(kf) < 2 or len(km) < 2:
        return empty, empty
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dm, df, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if not good:
        return empty, empty
    return (np.float32([km[m.queryIdx].pt for m in good]),
            np.float32([kf[m.trainIdx].pt for m in good]))


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
