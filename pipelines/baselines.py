"""Baseline registration methods for ``pipelines.evaluate``.

Every baseline is ``fn(fixed_gray, moving_gray) -> H or None``: the inputs are (H, W) float32
images in [0, 1] (from ``register.io.to_gray``), the output a 3x3 float64 homography mapping a
*moving* pixel to a *fixed* pixel (x = column, y = row, 0-based), or ``None`` when the method
fails. Exceptions are left to the caller (the evaluation counts them as failures).

* ``identity``: ``eye(3)`` (also when the two images differ in size).
* ``sift``: OpenCV SIFT, Lowe ratio 0.8, ``cv2.findHomography`` RANSAC at 3 px; fails with
  fewer than 8 inliers.
* ``mi``: SimpleITK affine registration maximising Mattes mutual information, 3 resolution
  levels, initialised by the geometric centres, on images downscaled to at most 512 px (a local
  optimiser: it cannot recover the large rotations of the SRIF sets). SimpleITK is optional: without it ``mi`` is
  unavailable (see :func:`available`).
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from register.sift import sift_correspondences

try:  # optional dependency
    import SimpleITK as sitk
except ImportError:  # pragma: no cover - depends on the environment
    sitk = None

Baseline = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]

SIFT_RATIO = 0.8
SIFT_RANSAC_PX = 3.0
SIFT_MIN_INLIERS = 8


def identity(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """H = identity."""
    return np.eye(3)


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(img, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def sift(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray | None:
    """SIFT + ratio test + RANSAC homography; None with fewer than 8 inliers."""
    src, dst = sift_correspondences(_u8(fixed), _u8(moving), ratio=SIFT_RATIO)
    if len(src) < SIFT_MIN_INLIERS:
        return None
    cv2.setRNGSeed(0)
    H, inl = cv2.findHomography(src, dst, cv2.RANSAC, SIFT_RANSAC_PX)
    if H is None or inl is None or int(inl.sum()) < SIFT_MIN_INLIERS:
        return None
    return H.astype(np.float64)


MI_MAX_SIDE = 512  # images are downscaled so their longer side is at most this


def _shrink(img: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image scaled so its longer side is at most ``side``, and the 3x3 pixel scaling used
    (the exact per-axis factors after rounding, for cv2's pixel-centre convention)."""
    f = min(1.0, side / max(img.shape[:2]))
    if f >= 1.0:
        return np.ascontiguousarray(img, np.float32), np.eye(3)
    h, w = img.shape[:2]
    size = (max(1, int(round(w * f))), max(1, int(round(h * f))))
    out = cv2.resize(np.asarray(img, np.float32), size, interpolation=cv2.INTER_AREA)
    sx, sy = size[0] / w, size[1] / h
    # cv2.resize maps pixel centres: x' = (x + 0.5) * sx - 0.5
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
    return out, S


def mi(fixed: np.ndarray, moving: np.ndarray, *, seed: int = 1,
       max_side: int = MI_MAX_SIDE) -> np.ndarray | None:
    """Affine Mattes-MI registration with SimpleITK (3 levels); None if SimpleITK is missing.

    Both images are downscaled (area) so their longer side is at most ``max_side`` and built
    with unit spacing and zero origin, so physical coordinates equal (scaled) pixel coordinates
    (x = column, y = row, pixel centres at integers). SimpleITK's result maps a *fixed* point to
    a *moving* point, ``T(p) = A (p - c) + c + t``; it is inverted and rescaled to give the
    moving -> fixed full-resolution pixel homography. Regular-step gradient descent (initial
    step 4 px, relaxation 0.7, at most 500 iterations per level). Runs single-threaded with a
    fixed sampling seed (``seed`` must be non-zero: 0 means "wall clock" to SimpleITK), so the
    result is repeatable.
    """
    if sitk is None:
        return None
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # repeatable metric sampling
    try:
        return _mi(fixed, moving, seed=seed, max_side=max_side)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _mi(fixed: np.ndarray, moving: np.ndarray, *, seed: int, max_side: int) -> np.ndarray | None:
    fs, kf = _shrink(fixed, max_side)
    ms, km = _shrink(moving, max_side)
    f = sitk.GetImageFromArray(fs)
    m = sitk.GetImageFromArray(ms)
    tx = sitk.CenteredTransformInitializer(f, m, sitk.AffineTransform(2),
                                           sitk.CenteredTransformInitializerFilter.GEOMETRY)
    tx = sitk.AffineTransform(tx)
    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(1)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, max(1, int(seed)))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=4.0, minStep=1e-3,
                                                 numberOfIterations=500, relaxationFactor=0.7,
                                                 gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(f, m)
    A = np.asarray(tx.GetMatrix(), np.float64).reshape(2, 2)
    c = np.asarray(tx.GetCenter(), np.float64)
    t = np.asarray(tx.GetTranslation(), np.float64)
    fixed_to_moving = np.eye(3)
    fixed_to_moving[:2, :2] = A
    fixed_to_moving[:2, 2] = c + t - A @ c
    H = np.linalg.inv(kf) @ np.linalg.inv(fixed_to_moving) @ km
    return H if np.isfinite(H).all() else None


BASELINES: dict[str, Baseline] = {"identity": identity, "sift": sift, "mi": mi}


def available(name: str) -> tuple[bool, str]:
    """Whether baseline ``name`` can run here, and why not."""
    if name not in BASELINES:
        return False, f"unknown baseline {name!r}; known: {sorted(BASELINES)}"
    if name == "mi" and sitk is None:
        return False, "SimpleITK is not installed (pip install SimpleITK)"
    return True, ""
