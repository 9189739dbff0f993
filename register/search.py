"""Coarse transform hypotheses for inputs without usable georeferencing.

The network stage needs a starting transform: it scores patch pairs that were resampled in the
frame of a hypothesis, so rotation and scale must be roughly right before it runs. When both
inputs are georeferenced the georeferencing gives that start; otherwise this module searches
rotations of any angle and scales in ``cfg.search_scales`` at low resolution.

For each (angle, scale) the moving image is resampled into the fixed frame and the translation
is found by FFT cross-correlation of dense *oriented-gradient channels* (unsigned gradient
orientation histograms, smoothed; the structural descriptor family of CFOG/HOPC, which survives
the contrast reversals between optical, SAR and thermal images). Each peak's height over its
correlation surface's spread (a z-score) is standardised against the other angles at the same
scale, the best distinct peaks are rescored at twice the resolution, and the best of those are
refined in angle and scale and returned.

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
import torch

from .config import Config
from .estimate import frame_corners, resize_map, transfer, transform_scale, translation
from .patches import warp_image
from .threads import torch_threads

N_ORIENTATIONS = 6


@dataclass(frozen=True)
class Hypothesis:
    """A candidate transform: ``H`` (3x3 float64, moving px -> fixed px) and its search score.

    ``support``: for the SIFT hypothesis, its ratio-test correspondences ``(xy_moving,
    xy_fixed)``, each (N, 2) float32 pixels (x = column, y = row, 0-based), which
    :func:`keypoint_support` counts for any later transform; None otherwise.
    """

    H: np.ndarray
    score: float
    angle_deg: float
    scale: float
    support: tuple[np.ndarray, np.ndarray] | None = None


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
    mag, theta = cv2.cartToPolar(gx, gy)  # theta in [0, 2 pi); bins fold it to [0, pi)
    # each pixel's magnitude is split linearly between its two nearest orientation bins
    pos = theta.ravel() * np.float32(N_ORIENTATIONS / np.pi)
    floor = np.floor(pos)
    w_hi = pos - floor
    lo = floor.astype(np.intp) % N_ORIENTATIONS
    hi = (lo + 1) % N_ORIENTATIONS
    m = mag.ravel()
    idx = np.arange(m.size)
    chans = np.zeros((N_ORIENTATIONS, m.size), np.float32)
    chans[lo, idx] = m * (1 - w_hi)
    chans[hi, idx] += m * w_hi  # hi != lo, so no pixel index repeats
    chans = chans.reshape((N_ORIENTATIONS,) + img.shape)
    for k in range(N_ORIENTATIONS):
        cv2.GaussianBlur(chans[k], (0, 0), sigma, dst=chans[k])
    chans /= np.sqrt((chans ** 2).sum(0)) + 1e-3 * (float(mag.mean()) + 1e-6)
    if mask is not None:
        valid = mask.astype(np.float32)
        n = float(valid.sum())
        if n > 0:
            chans -= ((chans.reshape(N_ORIENTATIONS, -1) @ valid.ravel()) / n)[:, None, None]
        chans *= valid
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
    return translation(*center_to) @ R @ translation(-center_from[0], -center_from[1])


@dataclass(frozen=True)
class Spectrum:
    """Fixed-image channels prepared for correlation (see :func:`spectrum`).

    ``fft``: (C, rows, cols // 2 + 1) complex64 conjugated real FFT of the channels zero-padded to
    ``canvas`` = (rows, cols); ``energy``: sum of squares of the channels.
    """

    fft: torch.Tensor
    energy: float
    canvas: tuple[int, int]


def fft_canvas(shape: tuple[int, ...]) -> tuple[int, int]:
    """FFT-friendly (rows, cols) of at least twice the last two dimensions of ``shape``, so that
    every shift with some overlap is seen without cyclic wrap-around."""
    return cv2.getOptimalDFTSize(2 * shape[-2]), cv2.getOptimalDFTSize(2 * shape[-1])


def spectrum(channels: np.ndarray, canvas: tuple[int, int] | None = None) -> Spectrum:
    """Prepare (C, h, w) float32 fixed channels for :func:`correlation_surface`; ``canvas``
    defaults to :func:`fft_canvas` of their shape. The FFTs run in float32 with torch, which
    is several times faster than numpy's on CPU."""
    canvas = canvas or fft_canvas(channels.shape)
    t = torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32))
    return Spectrum(fft=torch.conj_physical(torch.fft.rfft2(t, s=canvas)),
                    energy=float(np.square(channels, dtype=np.float64).sum()), canvas=canvas)


def correlation_surface(ref: Spectrum, moving: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of channels over all cyclic shifts.

    Args:
        ref: the fixed channels' :class:`Spectrum`.
        moving: (C, h, w) float32 channels of the moving image in the fixed frame.

    Returns:
        (rows, cols) float32 surface on ``ref.canvas``; element [dy, dx] scores
        fixed(p + d) ~ moving(p).
    """
    m_energy = float(np.square(moving, dtype=np.float64).sum())
    mf = torch.fft.rfft2(torch.from_numpy(np.ascontiguousarray(moving, dtype=np.float32)),
                         s=ref.canvas)
    # sum_p fixed(p + d) moving(p) has the spectrum F * conj(M) = conj(conj(F) * M)
    prod = torch.conj_physical((ref.fft * mf).sum(0))
    corr = torch.fft.irfft2(prod, s=ref.canvas).numpy()
    return corr / np.float32(math.sqrt(ref.energy * m_energy) + 1e-9)


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


def correlation_peak(ref: Spectrum, moving: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Translation that best aligns ``moving`` channels to the fixed ones (see
    :func:`correlation_surface` for the arguments and :func:`surface_peak` for the result)."""
    return surface_peak(correlation_surface(ref, moving))


def _resize_factor(shape: tuple[int, int], side: int) -> float:
    return min(1.0, side / max(shape))


@dataclass(frozen=True)
class _Level:
    """The fixed image at one search resolution: its (h, w), the factor ``d`` from full-size
    fixed pixels to it, and the spectrum of its channels."""

    shape: tuple[int, int]
    d: float
    ref: Spectrum
    half_turn: torch.Tensor  # spectrum factor of a half-turn about the frame centre


def _half_turn_phase(shape: tuple[int, int], canvas: tuple[int, int]) -> torch.Tensor:
    """exp(2 pi i (k1 (h - 1) / N1 + k2 (w - 1) / N2)) on the rfft2 half-plane of ``canvas``.

    A channel image turned by 180 degrees about the centre of its (h, w) frame,
    M'(x, y) = M(w - 1 - x, h - 1 - y), has the spectrum exp(-i phi) conj(M^); so the
    correlation spectrum with it is exp(i phi) conj(conj(F^) conj(M^)). This lets one FFT of
    the moving channels score both an angle and the angle + 180 degrees.
    """
    n1, n2 = canvas
    k1 = torch.arange(n1, dtype=torch.float64)[:, None]
    k2 = torch.arange(n2 // 2 + 1, dtype=torch.float64)[None, :]
    phi = 2 * math.pi * (k1 * (shape[0] - 1) / n1 + k2 * (shape[1] - 1) / n2)
    return torch.polar(torch.ones_like(phi), phi).to(torch.complex64)


def _downsized(fixed: np.ndarray, fixed_mask: np.ndarray, side: int
               ) -> tuple[np.ndarray, np.ndarray, float]:
    """(image, uint8 mask, d): ``fixed`` and its mask at ``side`` px on the longer side (never
    enlarged), and the factor d from full-size pixels to that resolution."""
    d = _resize_factor(fixed.shape, side)
    fs = cv2.resize(fixed, None, fx=d, fy=d, interpolation=cv2.INTER_AREA) if d < 1 else fixed
    fm = cv2.resize(fixed_mask.astype(np.uint8), (fs.shape[1], fs.shape[0]),
                    interpolation=cv2.INTER_NEAREST)
    return fs, fm, d


def _fixed_level(fixed: np.ndarray, fixed_mask: np.ndarray, side: int, *,
                 erode: bool = False) -> _Level:
    fs, fm, d = _downsized(fixed, fixed_mask, side)
    if erode:
        fm = cv2.erode(fm, np.ones((3, 3), np.uint8))
    ref = spectrum(oriented_gradient_channels(fs, fm.astype(bool)))
    return _Level(shape=fs.shape, d=d, ref=ref, half_turn=_half_turn_phase(fs.shape, ref.canvas))


def _antialiased(moving: np.ndarray, total_scale: float) -> np.ndarray:
    """``moving`` smoothed so that resampling it by ``total_scale`` does not alias."""
    return cv2.GaussianBlur(moving, (0, 0), 0.5 / total_scale) if total_scale < 0.7 else moving


def _similarity_peaks(level: _Level, src: np.ndarray, mask_u8: np.ndarray, angle: float,
                      total_scale: float, min_cover: float, *, half_turn: bool = False):
    """Resample ``src`` (the moving image, maybe pre-smoothed) by a similarity of ``angle`` and
    ``total_scale`` about its centre onto the centre of ``level``'s frame, and find the best
    shift there; with ``half_turn`` also for ``angle + 180`` from the same FFT (exact: a
    half-turn about the frame centre maps pixels onto pixels, and unsigned orientation
    channels are unchanged by it). Parts that fall outside the frame are lost, which bounds the
    search to overlaps of at least about half the fixed image.

    Returns:
        List of (z, angle, A): the peak's z-score, the angle in degrees and the 3x3 transform
        moving px -> level px (shift included); empty when less than ``min_cover`` of the
        frame is covered.
    """
    hf, wf = level.shape
    hm, wm = src.shape
    centre_m, centre_f = ((wm - 1) / 2.0, (hm - 1) / 2.0), ((wf - 1) / 2.0, (hf - 1) / 2.0)
    A = similarity(angle, total_scale, centre_m, centre_f)
    warped = cv2.warpAffine(src, A[:2], (wf, hf), flags=cv2.INTER_LINEAR)
    wmask = cv2.warpAffine(mask_u8, A[:2], (wf, hf), flags=cv2.INTER_NEAREST)
    wmask = cv2.erode(wmask, np.ones((5, 5), np.uint8)).astype(bool)
    if wmask.sum() < min_cover * hf * wf:
        return []
    M = oriented_gradient_channels(warped, wmask)
    norm = np.float32(math.sqrt(level.ref.energy * float(np.square(M, dtype=np.float64).sum()))
                      + 1e-9)
    mf = torch.fft.rfft2(torch.from_numpy(M), s=level.ref.canvas)
    spectra = [(angle, A, torch.conj_physical((level.ref.fft * mf).sum(0)))]
    if half_turn:
        turned = torch.conj_physical((level.ref.fft * torch.conj_physical(mf)).sum(0))
        spectra.append((angle + 180.0, similarity(angle + 180.0, total_scale, centre_m, centre_f),
                        turned * level.half_turn))
    out = []
    for a, Aa, spec in spectra:
        z, t = surface_peak(torch.fft.irfft2(spec, s=level.ref.canvas).numpy() / norm)
        out.append((z, a, translation(*t) @ Aa))
    return out


def coarse_hypotheses(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                      moving_mask: np.ndarray, cfg: Config) -> list[Hypothesis]:
    """Search rotation (full circle) x scale (``cfg.search_scales``) x translation.

    Args:
        fixed, moving: (H, W) float32 images, normalised to [0, 1].
        fixed_mask, moving_mask: (H, W) bool validity masks.
        cfg: reads ``search_side``, ``search_angle_step_deg``, ``search_scales``,
            ``search_calibrate``, ``search_rescore`` and ``search_top_k``.

    Returns:
        Up to ``cfg.search_top_k`` hypotheses in the order of their score at twice the search
        resolution, best first; ``H`` maps moving px -> fixed px in the coordinates of
        ``moving`` and ``fixed`` (x = column, y = row, 0-based); ``score`` is the refined
        peak's z-score.
    """
    # many small FFTs on a thread pool of our own: one torch thread each (register.threads)
    with torch_threads(1):
        return _search(fixed, fixed_mask, moving, moving_mask, cfg)


def _search(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
            moving_mask: np.ndarray, cfg: Config) -> list[Hypothesis]:
    coarse = _fixed_level(fixed, fixed_mask, cfg.search_side, erode=True)
    angles = np.arange(0.0, 360.0, cfg.search_angle_step_deg)
    # when the angle grid is symmetric under a half-turn, one FFT scores a and a + 180
    pair = abs(180.0 / cfg.search_angle_step_deg - round(180.0 / cfg.search_angle_step_deg)) < 1e-9
    if pair:
        angles = angles[angles < 180.0 - 1e-9]
    mask_u8 = moving_mask.astype(np.uint8)

    def one_scale(scale: float) -> list[tuple[float, float, float, np.ndarray]]:
        total = coarse.d * scale  # moving px -> coarse fixed px
        src = _antialiased(moving, total)  # once per scale
        found = []
        for angle in angles:
            for z, a, A in _similarity_peaks(coarse, src, mask_u8, float(angle), total, 0.1,
                                             half_turn=pair):
                found.append((z, float(a), float(scale), A))
        return found

    # scales are independent and the FFTs and OpenCV release the GIL: run them on threads;
    # results are sorted by (score, angle, scale) so the outcome does not depend on timing
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = [r for part in pool.map(one_scale, cfg.search_scales) for r in part]
        return _best_refined(results, fixed, fixed_mask, moving, mask_u8, coarse, cfg, pool)


def _calibrated(results):
    """Peak z-scores standardised against the other angles at the same scale.

    A small moving footprint (a small scale) is matched at more positions than a large one, so
    its best chance peak is higher: raw peak z-scores favour the smallest scales. At each scale
    almost all angles are wrong, so their z-scores sample that scale's chance distribution; a
    peak is scored by how far it stands above it (median and MAD over the angles).
    """
    by_scale: dict[float, list[float]] = {}
    for z, _, scale, _ in results:
        by_scale.setdefault(scale, []).append(z)
    stats = {}
    for scale, zs in by_scale.items():
        med = float(np.median(zs))
        mad = 1.4826 * float(np.median(np.abs(np.asarray(zs) - med)))
        stats[scale] = (med, max(mad, 1e-3))
    return [((z - stats[sc][0]) / stats[sc][1], a, sc, A) for z, a, sc, A in results]


def _best_refined(results, fixed, fixed_mask, moving, mask_u8, coarse: _Level, cfg: Config,
                  pool: ThreadPoolExecutor) -> list[Hypothesis]:
    """From the coarse peaks (z, angle, scale, A), the best distinct ones are rescored at twice
    the search resolution (``cfg.search_rescore`` of them), and refined in that order until
    ``cfg.search_top_k`` distinct hypotheses are found."""
    if not results:
        return []
    results = _calibrated(results) if cfg.search_calibrate else results
    results.sort(key=lambda r: (-r[0], r[1], r[2]))
    fine = _fixed_level(fixed, fixed_mask, min(2 * cfg.search_side, max(fixed.shape)))
    D = np.diag([1 / coarse.d, 1 / coarse.d, 1.0])
    distinct: list[tuple[float, float, np.ndarray]] = []  # (angle, scale, H full-res)
    limit = max(cfg.search_rescore, cfg.search_top_k)
    for _, angle, scale, Hc in results:
        if len(distinct) >= limit:
            break
        Hc = D @ Hc
        if not any(_close(Hc, h, fixed.shape) for _, _, h in distinct):
            distinct.append((angle, scale, Hc))
    smoothed: dict[float, np.ndarray] = {}  # the moving image pre-smoothed per coarse scale
    for _, scale, _ in distinct:
        if scale not in smoothed:
            smoothed[scale] = _antialiased(moving, fine.d * scale)
    centre: dict[int, list] = {}  # _similarity_peaks at each candidate's own angle and scale
    if cfg.search_rescore > 0:
        peaks = list(pool.map(lambda c: _similarity_peaks(
            fine, smoothed[c[1]], mask_u8, c[0], fine.d * c[1], 0.05), distinct))
        order = sorted(range(len(distinct)),
                       key=lambda i: (-(peaks[i][0][0] if peaks[i] else -np.inf), i))
        distinct = [distinct[i] for i in order]
        centre = {k: peaks[i] for k, i in enumerate(order)}
    out: list[Hypothesis] = []
    for k, (angle, scale, _) in enumerate(distinct):
        if len(out) >= cfg.search_top_k:
            break
        hyp = _refine(fine, smoothed[scale], mask_u8, angle, scale, cfg, pool, centre.get(k))
        if any(_close(hyp.H, h.H, fixed.shape) for h in out):
            continue
        out.append(hyp)
    return out


def _refine(level: _Level, src: np.ndarray, mask_u8: np.ndarray, angle: float, scale: float,
            cfg: Config, pool: ThreadPoolExecutor, centre: list | None = None) -> Hypothesis:
    """Finer angle / scale search around a coarse peak, at ``level`` (twice the search
    resolution): a third of the angle step and of the scale step either way. ``src`` is the
    moving image smoothed for ``scale`` (:func:`_antialiased`); ``centre``, when given, is
    :func:`_similarity_peaks` at ``angle`` and ``scale`` themselves, already computed."""
    step = cfg.search_angle_step_deg / 3.0
    ratio = max(b / a for a, b in zip(cfg.search_scales[:-1], cfg.search_scales[1:])) \
        if len(cfg.search_scales) > 1 else 1.1
    grid = [(da, ds) for da in (-step, 0.0, step) for ds in (ratio ** -0.33, 1.0, ratio ** 0.33)]

    def peaks_at(g):
        found = centre if g == (0.0, 1.0) and centre is not None else _similarity_peaks(
            level, src, mask_u8, angle + g[0], level.d * scale * g[1], 0.05)
        return [(z, a, scale * g[1], A) for z, a, A in found]

    peaks = pool.map(peaks_at, grid)
    # first best in grid order, so the outcome does not depend on thread timing
    best = None
    for found in peaks:
        for cand in found:
            if best is None or cand[0] > best[0]:
                best = cand
    if best is None:
        raise ValueError("hypothesis refinement found no overlap")
    z, a, s, A = best
    H = np.diag([1 / level.d, 1 / level.d, 1.0]) @ A
    return Hypothesis(H=H / H[2, 2], score=float(z), angle_deg=float(a % 360), scale=float(s))


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
                        moving_mask: np.ndarray, cfg: Config) -> Hypothesis | None:
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
    lo, hi = min(cfg.search_scales), max(cfg.search_scales)
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


def corner_distance(H1: np.ndarray, H2: np.ndarray, shape: tuple[int, int]) -> float:
    """Largest distance, in moving pixels, between where two moving -> fixed transforms place
    the corners of a fixed image of ``shape`` (H, W)."""
    corners = frame_corners(shape)
    a = transfer(np.linalg.inv(H1), corners)
    b = transfer(np.linalg.inv(H2), corners)
    return float(np.abs(a - b).max())


def _close(H1: np.ndarray, H2: np.ndarray, shape: tuple[int, int], tol_frac: float = 0.08) -> bool:
    """Whether two transforms agree at the fixed corners within ``tol_frac`` of its size."""
    return corner_distance(H1, H2, shape) < tol_frac * max(shape)


def _frame_channels(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                    moving_mask: np.ndarray, H: np.ndarray, side: int):
    """Oriented-gradient channels of the fixed image and of the moving image resampled with
    ``H`` (moving px -> fixed px) into the fixed frame, both at ``side`` px on the longer side.

    Returns:
        (F, M, valid_moving, d): (C, h, w) channels, the (h, w) bool footprint of the moving
        image there, and the scale factor d from ``fixed`` pixels to that resolution (the
        moving image is resampled with the exact pixel-centre map of the resize,
        :func:`register.estimate.resize_map`).
    """
    fs, fm, d = _downsized(fixed, fixed_mask, side)
    hf, wf = fs.shape
    A = resize_map(fixed.shape, fs.shape) @ np.asarray(H, np.float64)
    warped = warp_image(moving, A, (hf, wf))  # anti-aliased when shrinking
    # the footprint: nearest, then eroded so that the edge's gradients do not count
    wm = cv2.warpPerspective(moving_mask.astype(np.uint8), A, (wf, hf), flags=cv2.INTER_NEAREST)
    wm = cv2.erode(wm, np.ones((5, 5), np.uint8)).astype(bool)
    F = oriented_gradient_channels(fs, fm.astype(bool))
    return F, oriented_gradient_channels(warped, wm), wm, d


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
    z, t = correlation_peak(spectrum(F), M)
    H = translation(t[0] / d, t[1] / d) @ H0
    return Hypothesis(H=H / H[2, 2], score=float(z), angle_deg=0.0, scale=1.0)


@dataclass(frozen=True)
class Check:
    """Result of :func:`verify_alignment`: ``z``, the z-score of the correlation at zero shift,
    and ``offset``, the (dx, dy) in pixels of ``fixed`` of the surface's highest peak (the moving
    image resampled with ``H`` lines up best when moved by it; infinite when its footprint
    covers too little of the fixed frame to check)."""

    z: float
    offset: tuple[float, float]

    @property
    def shift(self) -> float:
        """Distance in pixels of ``fixed`` from zero shift to the highest peak."""
        return math.hypot(*self.offset)

    def recentred(self, H: np.ndarray) -> np.ndarray:
        """``H`` (moving px -> fixed px) moved by the peak's offset: (3, 3) float64."""
        return translation(*self.offset) @ np.asarray(H, np.float64)


def verify_alignment(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                     moving_mask: np.ndarray, H: np.ndarray, side: int) -> Check:
    """Global check of a final transform, independent of the matches that produced it.

    The moving image is resampled into the fixed frame with ``H`` (moving px -> fixed px) at a
    resolution of ``side`` px on the longer side, and the oriented-gradient correlation surface
    over all shifts is computed. A right transform puts a sharp peak at zero shift; a wrong one
    that RANSAC fitted to chance inliers does not.

    Args: (h, w) float32 images and bool masks; ``H`` (3, 3) moving px -> fixed px (x = column,
    y = row, 0-based); ``side`` the longer side in px of the frame the check runs in.
    Returns a :class:`Check`.
    """
    F, M, wm, d = _frame_channels(fixed, fixed_mask, moving, moving_mask, H, side)
    if wm.sum() < 0.02 * wm.size:
        return Check(0.0, (math.inf, math.inf))
    corr = correlation_surface(spectrum(F), M)
    z0 = (float(corr[0, 0]) - float(corr.mean())) / (float(corr.std()) + 1e-9)
    _, t = surface_peak(corr)
    return Check(z0, (t[0] / d, t[1] / d))
