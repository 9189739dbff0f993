"""Coarse transform hypotheses for inputs without usable georeferencing.

The network stage needs a starting transform: it scores patch pairs that were resampled in the
frame of a hypothesis, so rotation and scale must be roughly right before it runs. When both
inputs are georeferenced the georeferencing gives that start; otherwise this module searches
rotations of any angle and scales in ``cfg.search_scales`` at low resolution.

For each (angle, scale) the moving image is resampled into the fixed frame and the translation
is found by FFT cross-correlation of dense *oriented-gradient channels* (unsigned gradient
orientation histograms, smoothed; the structural descriptor family of CFOG/HOPC, which survives
the contrast reversals between optical, SAR and thermal images). The peaks are ranked by their
height over the correlation surface's spread, and the best distinct ones are returned.

All transforms are 3x3 float64 homographies mapping a moving pixel (x = column, y = row,
0-based) to a fixed pixel, in the coordinates of the arrays handed in.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from .config import Config

N_ORIENTATIONS = 6


@dataclass(frozen=True)
class Hypothesis:
    """A candidate transform: ``H`` (3x3 float64, moving px -> fixed px) and its search score."""

    H: np.ndarray
    score: float
    angle_deg: float
    scale: float


def oriented_gradient_channels(image: np.ndarray, mask: np.ndarray | None = None,
                               *, sigma: float = 1.5) -> np.ndarray:
    """Dense unsigned-orientation gradient channels.

    Args:
        image: (H, W) float32 image.
        mask: (H, W) bool, True where valid; invalid pixels get all-zero channels.
        sigma: Gaussian smoothing of the channels, in pixels.

    Returns:
        (C, H, W) float32 channels, C = ``N_ORIENTATIONS``, L2-normalised per pixel and then
        zero-mean per channel over valid pixels.
    """
    img = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.8)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    theta = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation in [0, pi)
    pos = theta / np.pi * N_ORIENTATIONS
    lo = np.floor(pos).astype(np.int32) % N_ORIENTATIONS
    w_hi = (pos - np.floor(pos)).astype(np.float32)
    hi = (lo + 1) % N_ORIENTATIONS
    chans = np.zeros((N_ORIENTATIONS,) + img.shape, np.float32)
    for k in range(N_ORIENTATIONS):
        chans[k] = mag * ((lo == k) * (1 - w_hi) + (hi == k) * w_hi)
    for k in range(N_ORIENTATIONS):
        chans[k] = cv2.GaussianBlur(chans[k], (0, 0), sigma)
    norm = np.sqrt((chans ** 2).sum(0)) + 1e-3 * (mag.mean() + 1e-6)
    chans /= norm
    if mask is not None:
        valid = mask.astype(bool)
        if valid.any():
            chans -= chans[:, valid].mean(1)[:, None, None]
        chans[:, ~valid] = 0
    else:
        chans -= chans.mean((1, 2), keepdims=True)
    return chans


def similarity(angle_deg: float, scale: float, center_from: tuple[float, float],
               center_to: tuple[float, float]) -> np.ndarray:
    """3x3 similarity rotating by ``angle_deg`` (counter-clockwise on screen) and scaling by
    ``scale`` about ``center_from`` (x, y), then moving that point to ``center_to``."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    # y points down, so a counter-clockwise on-screen rotation is [c s; -s c]
    R = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    T1 = np.array([[1, 0, -center_from[0]], [0, 1, -center_from[1]], [0, 0, 1.0]])
    T2 = np.array([[1, 0, center_to[0]], [0, 1, center_to[1]], [0, 0, 1.0]])
    return T2 @ R @ T1


def correlation_surface(fixed_fft: np.ndarray, fixed_energy: float, moving: np.ndarray,
                        canvas: tuple[int, int]) -> np.ndarray:
    """Normalised cross-correlation of channels over all cyclic shifts.

    Args:
        fixed_fft: ``np.fft.rfft2`` of the (C, h, w) fixed channels on ``canvas``.
        fixed_energy: sum of squares of the fixed channels.
        moving: (C, h, w) float32 channels of the moving image in the fixed frame.
        canvas: (rows, cols) of the zero-padded FFT canvas, at least twice the image.

    Returns:
        (rows, cols) float64 surface; element [dy, dx] scores fixed(p + d) ~ moving(p).
    """
    m_energy = float((moving ** 2).sum())
    corr = np.fft.irfft2((fixed_fft * np.conj(np.fft.rfft2(moving, s=canvas))).sum(0), s=canvas)
    return corr / (math.sqrt(fixed_energy * m_energy) + 1e-9)


def surface_peak(corr: np.ndarray) -> tuple[float, tuple[float, float]]:
    """(z, (dx, dy)): the highest peak of a :func:`correlation_surface` in standard deviations
    of the surface, and its sub-pixel shift such that fixed(p + d) ~ moving(p)."""
    ph, pw = corr.shape
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    peak = float(corr[iy, ix])
    z = (peak - float(corr.mean())) / (float(corr.std()) + 1e-9)
    sub = []
    for axis, n in ((0, ph), (1, pw)):
        i0 = (iy, ix)[axis]
        lo, hi = [iy, ix], [iy, ix]
        lo[axis], hi[axis] = (i0 - 1) % n, (i0 + 1) % n
        cm, cp = float(corr[tuple(lo)]), float(corr[tuple(hi)])
        den = cm - 2 * peak + cp
        sub.append(0.5 * (cm - cp) / den if abs(den) > 1e-12 else 0.0)
    dy = (iy if iy < ph // 2 else iy - ph) + sub[0]
    dx = (ix if ix < pw // 2 else ix - pw) + sub[1]
    return z, (float(dx), float(dy))


def correlation_peak(fixed_fft: np.ndarray, fixed_energy: float, moving: np.ndarray,
                     canvas: tuple[int, int]) -> tuple[float, tuple[float, float]]:
    """Translation that best aligns ``moving`` channels to the fixed ones (see
    :func:`correlation_surface` for the arguments and :func:`surface_peak` for the result)."""
    return surface_peak(correlation_surface(fixed_fft, fixed_energy, moving, canvas))


def _resize_factor(shape: tuple[int, int], side: int) -> float:
    return min(1.0, side / max(shape))


def coarse_hypotheses(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                      moving_mask: np.ndarray, cfg: Config) -> list[Hypothesis]:
    """Search rotation (full circle) x scale (``cfg.search_scales``) x translation.

    Args:
        fixed, moving: (H, W) float32 images, normalised to [0, 1].
        fixed_mask, moving_mask: (H, W) bool validity masks.
        cfg: reads ``search_side``, ``search_angle_step_deg``, ``search_scales``, ``search_top_k``.

    Returns:
        Up to ``cfg.search_top_k`` hypotheses, best first; ``H`` maps moving px -> fixed px in the
        coordinates of ``moving`` and ``fixed`` (x = column, y = row, 0-based).
    """
    df = _resize_factor(fixed.shape, cfg.search_side)
    fs = cv2.resize(fixed, None, fx=df, fy=df, interpolation=cv2.INTER_AREA) if df < 1 else fixed
    fm = cv2.resize(fixed_mask.astype(np.uint8), (fs.shape[1], fs.shape[0]),
                    interpolation=cv2.INTER_NEAREST).astype(bool)
    fm = cv2.erode(fm.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    F = oriented_gradient_channels(fs, fm)
    hf, wf = fs.shape
    # canvas: fixed padded so that any translation with some overlap is seen
    ph, pw = cv2.getOptimalDFTSize(2 * hf), cv2.getOptimalDFTSize(2 * wf)
    Ff = np.fft.rfft2(F, s=(ph, pw))
    f_energy = float((F ** 2).sum())

    hm, wm = moving.shape
    cm = ((wm - 1) / 2.0, (hm - 1) / 2.0)
    angles = np.arange(0.0, 360.0, cfg.search_angle_step_deg)
    mask_u8 = moving_mask.astype(np.uint8)

    def one_scale(scale: float) -> list[tuple[float, float, float, np.ndarray]]:
        total = df * scale  # moving px -> coarse fixed px
        # pre-smooth the moving image once per scale so the warp does not alias
        src = cv2.GaussianBlur(moving, (0, 0), 0.5 / total) if total < 0.7 else moving
        found = []
        for angle in angles:
            A = similarity(angle, total, cm, ((wf - 1) / 2.0, (hf - 1) / 2.0))
            # moving is warped onto a canvas of the fixed size, centred; parts that fall outside
            # are lost, which bounds the search to overlaps of at least half the fixed image
            warped = cv2.warpAffine(src, A[:2], (wf, hf), flags=cv2.INTER_LINEAR)
            wmask = cv2.warpAffine(mask_u8, A[:2], (wf, hf), flags=cv2.INTER_NEAREST)
            wmask = cv2.erode(wmask, np.ones((5, 5), np.uint8)).astype(bool)
            if wmask.sum() < 0.1 * hf * wf:
                continue
            M = oriented_gradient_channels(warped, wmask)
            z, t = correlation_peak(Ff, f_energy, M, (ph, pw))
            T = np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1.0]])
            found.append((z, float(angle), float(scale), T @ A))  # moving px -> coarse fixed
        return found

    # scales are independent and numpy's FFT and OpenCV release the GIL: run them on threads;
    # results are sorted by (score, angle, scale) so the outcome does not depend on timing
    with ThreadPoolExecutor(max_workers=min(len(cfg.search_scales), os.cpu_count() or 1)) as ex:
        results = [r for part in ex.map(one_scale, cfg.search_scales) for r in part]
    if not results:
        return []
    results.sort(key=lambda r: (-r[0], r[1], r[2]))
    out: list[Hypothesis] = []
    seen: list[np.ndarray] = []
    D = np.diag([1 / df, 1 / df, 1.0])
    for score, angle, scale, Hc in results:
        if len(out) >= cfg.search_top_k:
            break
        Hc = D @ Hc
        if any(_close(Hc, h, fixed.shape) for h in seen):
            continue
        seen.append(Hc)
        hyp = _refine(fixed, fixed_mask, moving, moving_mask, angle, scale, cfg)
        if any(_close(hyp.H, h.H, fixed.shape) for h in out):
            continue
        out.append(hyp)
    return out


def _refine(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
            moving_mask: np.ndarray, angle: float, scale: float, cfg: Config) -> Hypothesis:
    """Finer angle / scale search around a coarse peak, at twice the search resolution."""
    side = min(2 * cfg.search_side, max(fixed.shape))
    df = _resize_factor(fixed.shape, side)
    fs = cv2.resize(fixed, None, fx=df, fy=df, interpolation=cv2.INTER_AREA) if df < 1 else fixed
    fm = cv2.resize(fixed_mask.astype(np.uint8), (fs.shape[1], fs.shape[0]),
                    interpolation=cv2.INTER_NEAREST).astype(bool)
    F = oriented_gradient_channels(fs, fm)
    hf, wf = fs.shape
    canvas = (cv2.getOptimalDFTSize(2 * hf), cv2.getOptimalDFTSize(2 * wf))
    Ff = np.fft.rfft2(F, s=canvas)
    fe = float((F ** 2).sum())
    hm, wm = moving.shape
    cm = ((wm - 1) / 2.0, (hm - 1) / 2.0)
    step = cfg.search_angle_step_deg / 3.0
    ratio = max(b / a for a, b in zip(cfg.search_scales[:-1], cfg.search_scales[1:])) \
        if len(cfg.search_scales) > 1 else 1.1
    best = None
    for da in (-step, 0.0, step):
        for ds in (ratio ** -0.33, 1.0, ratio ** 0.33):
            total = df * scale * ds
            src = cv2.GaussianBlur(moving, (0, 0), 0.5 / total) if total < 0.7 else moving
            A = similarity(angle + da, total, cm, ((wf - 1) / 2.0, (hf - 1) / 2.0))
            warped = cv2.warpAffine(src, A[:2], (wf, hf), flags=cv2.INTER_LINEAR)
            wmask = cv2.warpAffine(moving_mask.astype(np.uint8), A[:2], (wf, hf),
                                   flags=cv2.INTER_NEAREST)
            wmask = cv2.erode(wmask, np.ones((5, 5), np.uint8)).astype(bool)
            if wmask.sum() < 0.05 * hf * wf:
                continue
            z, t = correlation_peak(Ff, fe, oriented_gradient_channels(warped, wmask), canvas)
            if best is None or z > best[0]:
                T = np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1.0]])
                best = (z, angle + da, scale * ds, np.diag([1 / df, 1 / df, 1.0]) @ T @ A)
    if best is None:
        raise ValueError("hypothesis refinement found no overlap")
    z, a, s, H = best
    return Hypothesis(H=H / H[2, 2], score=float(z), angle_deg=float(a % 360), scale=float(s))


def corner_distance(H1: np.ndarray, H2: np.ndarray, shape: tuple[int, int]) -> float:
    """Largest distance, in moving pixels, between where two moving -> fixed transforms place
    the corners of a fixed image of ``shape`` (H, W)."""
    h, w = shape
    pts = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1.0]]).T
    a = np.linalg.inv(H1) @ pts
    b = np.linalg.inv(H2) @ pts
    return float(np.abs(a[:2] / a[2] - b[:2] / b[2]).max())


def _close(H1: np.ndarray, H2: np.ndarray, shape: tuple[int, int], tol_frac: float = 0.08) -> bool:
    """Whether two transforms agree at the fixed corners within ``tol_frac`` of its size."""
    return corner_distance(H1, H2, shape) < tol_frac * max(shape)


def _frame_channels(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                    moving_mask: np.ndarray, H: np.ndarray, side: int):
    """Oriented-gradient channels of the fixed image and of the moving image resampled with
    ``H`` (moving px -> fixed px) into the fixed frame, both at ``side`` px on the longer side.

    Returns:
        (F, M, valid_moving, d): (C, h, w) channels, the (h, w) bool footprint of the moving
        image there, and the scale factor d from ``fixed`` pixels to that resolution.
    """
    d = _resize_factor(fixed.shape, side)
    fs = cv2.resize(fixed, None, fx=d, fy=d, interpolation=cv2.INTER_AREA) if d < 1 else fixed
    hf, wf = fs.shape
    fm = cv2.resize(fixed_mask.astype(np.uint8), (wf, hf), interpolation=cv2.INTER_NEAREST)
    A = np.diag([d, d, 1.0]) @ np.asarray(H, np.float64)
    scale = math.sqrt(abs(np.linalg.det(A[:2, :2] / A[2, 2])))
    src = cv2.GaussianBlur(moving, (0, 0), 0.45 / scale) if scale < 0.8 else moving
    warped = cv2.warpPerspective(src, A, (wf, hf), flags=cv2.INTER_LINEAR)
    wm = cv2.warpPerspective(moving_mask.astype(np.uint8), A, (wf, hf), flags=cv2.INTER_NEAREST)
    wm = cv2.erode(wm, np.ones((5, 5), np.uint8)).astype(bool)
    F = oriented_gradient_channels(fs, fm.astype(bool))
    return F, oriented_gradient_channels(warped, wm), wm, d


def _canvas(shape: tuple[int, ...]) -> tuple[int, int]:
    return cv2.getOptimalDFTSize(2 * shape[-2]), cv2.getOptimalDFTSize(2 * shape[-1])


def translation_hypothesis(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                           moving_mask: np.ndarray, H0: np.ndarray, cfg: Config) -> Hypothesis:
    """Correct a start transform ``H0`` (e.g. from georeferencing) by a global shift.

    The moving image is resampled into the fixed frame with ``H0`` at the search resolution of
    ``2 * cfg.search_side`` and the shift with the highest oriented-gradient correlation is
    composed onto ``H0``. Used when georeferencing gives rotation and scale but may be off by
    more than the network stage's search window.

    Returns:
        Hypothesis with ``H`` = shift @ ``H0`` (moving px -> fixed px) and the peak's z-score.
    """
    side = min(2 * cfg.search_side, max(fixed.shape))
    F, M, _, d = _frame_channels(fixed, fixed_mask, moving, moving_mask, H0, side)
    canvas = _canvas(F.shape)
    z, t = correlation_peak(np.fft.rfft2(F, s=canvas), float((F ** 2).sum()), M, canvas)
    T = np.array([[1, 0, t[0] / d], [0, 1, t[1] / d], [0, 0, 1.0]])
    H = T @ H0
    return Hypothesis(H=H / H[2, 2], score=float(z), angle_deg=0.0, scale=1.0)


def verify_alignment(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                     moving_mask: np.ndarray, H: np.ndarray, side: int) -> tuple[float, float]:
    """Global check of a final transform, independent of the matches that produced it.

    The moving image is resampled into the fixed frame with ``H`` (moving px -> fixed px) at a
    resolution of ``side`` px on the longer side, and the oriented-gradient correlation surface
    over all shifts is computed. A right transform puts a sharp peak at zero shift; a wrong one
    that RANSAC fitted to chance inliers does not.

    Returns:
        (z, shift): the z-score of the correlation at zero shift, and the distance in pixels of
        ``fixed`` from zero shift to the surface's highest peak.
    """
    F, M, wm, d = _frame_channels(fixed, fixed_mask, moving, moving_mask, H, side)
    if wm.sum() < 0.02 * wm.size:
        return 0.0, float("inf")
    canvas = _canvas(F.shape)
    corr = correlation_surface(np.fft.rfft2(F, s=canvas), float((F ** 2).sum()), M, canvas)
    z0 = (float(corr[0, 0]) - float(corr.mean())) / (float(corr.std()) + 1e-9)
    _, t = surface_peak(corr)
    return z0, math.hypot(*t) / d
