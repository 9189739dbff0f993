"""Keypoints with good spatial spread, away from borders and nodata.

Corners that repeat across modalities are rare, so the pipeline does not rely on repeatability:
keypoints are detected in the *fixed* image only and their counterparts are searched in the
moving image (see :mod:`register.match`). What the detector must give is well-spread, textured
locations whose patches are distinctive. The default ``"structure"`` response is the smaller
eigenvalue of the structure tensor (Shi-Tomasi) on a lightly smoothed image, with bucketing
(one strongest point per cell of a grid) so that the points cover the whole image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .checks import InputError
from .config import BORDER_PX


@dataclass(frozen=True)
class Keypoints:
    """Detected keypoints.

    Attributes:
        xy: (N, 2) float32 pixel coordinates (x = column, y = row, 0-based).
        score: (N,) float32 detector response, higher is better.
    """

    xy: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.xy.shape[0])


def response(image: np.ndarray, detector: str = "structure") -> np.ndarray:
    """Detector response map (H, W) float32 of an (H, W) float32 image."""
    img = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
    if detector == "structure":
        return cv2.cornerMinEigenVal(img, blockSize=7, ksize=3)
    if detector == "fast":
        u8 = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        # OpenCV fills in a FAST response only with its own non-maximum suppression on
        fast = cv2.FastFeatureDetector_create(threshold=10, nonmaxSuppression=True)
        r = np.zeros(img.shape, np.float32)
        for kp in fast.detect(u8):
            r[int(kp.pt[1]), int(kp.pt[0])] = kp.response
        return r
    if detector == "grid":
        gx = cv2.Sobel(img, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(img, cv2.CV_32F, 0, 1)
        return cv2.GaussianBlur(np.sqrt(gx * gx + gy * gy), (0, 0), 4.0)
    raise InputError(f"unknown detector {detector!r}; choose 'structure', 'fast' or 'grid'")


def detect(image: np.ndarray, mask: np.ndarray | None = None, *, max_keypoints: int = 300,
           detector: str = "structure", nms_radius: int = 8, border: int = BORDER_PX) -> Keypoints:
    """Detect up to ``max_keypoints`` well-spread keypoints.

    Args:
        image: (H, W) float32 image in [0, 1].
        mask: (H, W) bool, True where valid; points need a fully valid ``2 * border`` square.
        max_keypoints: upper bound on the count.
        detector: ``"structure"``, ``"fast"`` or ``"grid"`` (see :func:`response`).
        nms_radius: minimum distance between two keypoints, in pixels.
        border: distance kept from the image border and from nodata, in pixels.

    Returns:
        Keypoints sorted by decreasing score.
    """
    if image.ndim != 2:
        raise InputError(f"detect: expected an (H, W) image, got shape {image.shape}")
    h, w = image.shape
    r = response(image, detector)
    allowed = np.zeros((h, w), bool)
    if h > 2 * border and w > 2 * border:
        allowed[border:h - border, border:w - border] = True
    if mask is not None:
        allowed &= cv2.erode(mask.astype(np.uint8), np.ones((2 * border + 1,) * 2, np.uint8)
                             ).astype(bool)
    r = np.where(allowed, r, 0).astype(np.float32)
    if max_keypoints <= 0 or not (r > 0).any():
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros(0, np.float32))
    # local maxima within nms_radius
    k = 2 * nms_radius + 1
    dil = cv2.dilate(r, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    peaks = (r > 0) & (r >= dil)
    ys, xs = np.nonzero(peaks)
    scores = r[ys, xs]
    # bucketing: grid cells sized so that about max_keypoints cells cover the allowed area
    area = float(allowed.sum())
    cell = max(nms_radius, int(math.sqrt(area / max_keypoints)))
    cell_id = (ys // cell) * (w // cell + 1) + xs // cell
    order = np.lexsort((-scores, cell_id))
    first = np.r_[True, cell_id[order][1:] != cell_id[order][:-1]]
    best = order[first]
    rest = order[~first]
    # strongest per cell first, then fill with the remaining strongest peaks
    best = best[np.argsort(-scores[best])]
    rest = rest[np.argsort(-scores[rest])]
    pick = np.r_[best, rest][:max_keypoints]
    pick = pick[np.argsort(-scores[pick])]
    xy = np.stack([xs[pick], ys[pick]], 1).astype(np.float32)
    return Keypoints(xy, scores[pick].astype(np.float32))
