"""Rotation/scale hypotheses for inputs without usable georeferencing, and the shift
correction of a georeferencing.

The matching stage needs a starting transform: it locates each keypoint within a small window
of where the hypothesis puts it, so rotation and scale must be roughly right before it runs.
This module searches rotations of any angle and scales in ``SearchConfig.scales`` at low
resolution: for each (angle, scale) the moving image is resampled into the fixed frame and the
translation is found by FFT correlation of oriented-gradient channels
(:mod:`register.structural`); one FFT of the moving channels scores four angles 90 degrees
apart when the frame is square (two otherwise). Each peak's z-score is standardised against the
other angles at the same scale, the best distinct peaks are rescored at twice the resolution,
and the best of those are refined in angle and scale and returned.

All transforms are 3x3 float64 homographies mapping a moving pixel (x = column, y = row,
0-based) to a fixed pixel, in the coordinates of the arrays handed in.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Iterator

import cv2
import numpy as np
import torch

from .config import SearchConfig
from .geometry import corner_distance, similarity, translation
from .structural import (N_ORIENTATIONS, channel_product_sum, correlation_peak, downsized,
                         frame_channels, oriented_gradient_channels, spectrum, surface_peak,
                         Spectrum)
from .threads import pool_size, torch_threads


@dataclass(frozen=True)
class Hypothesis:
    """A candidate transform: ``H`` (3x3 float64, moving px -> fixed px) and its search score.

    ``support``: for the SIFT hypothesis, its ratio-test correspondences ``(xy_moving,
    xy_fixed)``, each (N, 2) float32 pixels (x = column, y = row, 0-based), which
    :func:`keypoint_support` counts for any later transform; None otherwise. ``rank``: the
    hypothesis's 0-based place in the search's list (0 for other sources).
    """

    H: np.ndarray
    score: float
    angle_deg: float
    scale: float
    support: tuple[np.ndarray, np.ndarray] | None = None
    rank: int = 0


@dataclass(frozen=True)
class _Level:
    """The fixed image at one search resolution: its (h, w), the factor ``d`` from full-size
    fixed pixels to it, and the spectrum of its channels; for a square frame, when asked for,
    also that of its channels turned a quarter (:func:`_quarter_turned`)."""

    shape: tuple[int, int]
    d: float
    ref: Spectrum
    half_turn: torch.Tensor  # spectrum factor of a half-turn about the frame centre
    quarter: torch.Tensor | None = None  # conj FFT of _quarter_turned(channels), on ref.canvas


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


def _quarter_turned(channels: np.ndarray) -> np.ndarray:
    """G from the (C, n, n) fixed channels F of a square frame, C even, such that correlating G
    with the channels of a moving image warped at angle a scores a + 90 degrees.

    A similarity at a + 90 is the one at a followed by Q, the quarter-turn about the frame
    centre, Q(x, y) = (y, n - 1 - x) (:func:`register.geometry.similarity`, y down), which maps
    pixels onto pixels; it turns every gradient by 90 degrees, i.e. by C / 2 unsigned
    orientation bins. So the moving channels at a + 90 are M'_j(Q p) = M_(j + C/2)(p), and
    sum_p F_j(p + d) M'_j(p) = sum_q G_j(q + e) M_j(q) with G_j(q) = F_(j + C/2)(Q q) and the
    shift d = (e_y, -e_x): one FFT of the moving channels scores a and a + 90 (and, with the
    half-turn of :func:`_half_turn_phase`, a + 180 and a + 270), the same numbers to float
    rounding as warping the moving image at each angle.
    """
    rolled = np.roll(channels, -(channels.shape[0] // 2), axis=0)
    return np.ascontiguousarray(np.rot90(rolled, 3, axes=(1, 2)))  # [j, y, x] = F[j+C/2, n-1-x, y]


def _fixed_level(fixed: np.ndarray, fixed_mask: np.ndarray, side: int, *,
                 erode: bool = False, quarter: bool = False) -> _Level:
    """``fixed`` at ``side`` px (:class:`_Level`); with ``quarter``, the quarter-turned spectrum
    too when the frame is square and the orientation bins are even in number."""
    fs, fm, d = downsized(fixed, fixed_mask, side)
    if erode:
        fm = cv2.erode(fm, np.ones((3, 3), np.uint8))
    chans = oriented_gradient_channels(fs, fm.astype(bool))
    ref = spectrum(chans)
    turned = None
    if quarter and fs.shape[0] == fs.shape[1] and N_ORIENTATIONS % 2 == 0:
        turned = spectrum(_quarter_turned(chans), ref.canvas).fft
    return _Level(shape=fs.shape, d=d, ref=ref, half_turn=_half_turn_phase(fs.shape, ref.canvas),
                  quarter=turned)


def _antialiased(moving: np.ndarray, total_scale: float) -> np.ndarray:
    """``moving`` smoothed so that resampling it by ``total_scale`` does not alias."""
    return cv2.GaussianBlur(moving, (0, 0), 0.5 / total_scale) if total_scale < 0.7 else moving


def _similarity_peaks(level: _Level, src: np.ndarray, mask_u8: np.ndarray, angle: float,
                      total_scale: float, min_cover: float, *, half_turn: bool = False,
                      quarter_turn: bool = False):
    """Resample ``src`` (the moving image, maybe pre-smoothed) by a similarity of ``angle`` and
    ``total_scale`` about its centre onto the centre of ``level``'s frame, and find the best
    shift there; with ``half_turn`` also for ``angle + 180`` from the same FFT (exact: a
    half-turn about the frame centre maps pixels onto pixels, and unsigned orientation
    channels are unchanged by it); with ``quarter_turn`` too (``level.quarter`` needed) also
    for ``angle + 90`` and ``angle + 270`` (:func:`_quarter_turned`). Parts that fall outside
    the frame are lost, which bounds the search to overlaps of at least about half the fixed
    image.

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
    refs = [(0.0, level.ref.fft)]
    if quarter_turn:
        refs.append((90.0, level.quarter))
    mf_conj = torch.conj_physical(mf) if half_turn else None
    out = []
    for turn, ref in refs:
        spectra = [(angle + turn, torch.conj_physical(channel_product_sum(ref, mf)))]
        if half_turn:
            turned = torch.conj_physical(channel_product_sum(ref, mf_conj))
            spectra.append((angle + turn + 180.0, turned * level.half_turn))
        for a, spec in spectra:
            z, (ex, ey) = surface_peak(torch.fft.irfft2(spec, s=level.ref.canvas).numpy() / norm)
            t = (ex, ey) if turn == 0.0 else (ey, -ex)  # the quarter-turned shift, as above
            out.append((z, a, translation(*t) @ similarity(a, total_scale, centre_m, centre_f)))
    return out


def coarse_hypotheses(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                      moving_mask: np.ndarray, cfg: SearchConfig) -> list[Hypothesis]:
    """Search rotation (full circle) x scale (``cfg.scales``) x translation.

    Args:
        fixed, moving: (H, W) float32 images, normalised to [0, 1].
        fixed_mask, moving_mask: (H, W) bool validity masks.
        cfg: reads ``search_side``, ``search_angle_step_deg``, ``search_scales``,
            ``search_calibrate``, ``search_rescore`` and ``search_top_k``.

    Returns:
        Up to ``cfg.top_k`` hypotheses in the order of their score at twice the search
        resolution, best first; ``H`` maps moving px -> fixed px in the coordinates of
        ``moving`` and ``fixed`` (x = column, y = row, 0-based); ``score`` is the refined
        peak's z-score. :func:`iter_hypotheses` gives the same ones lazily.
    """
    return list(iter_hypotheses(fixed, fixed_mask, moving, moving_mask, cfg))


def iter_hypotheses(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                    moving_mask: np.ndarray, cfg: SearchConfig) -> Iterator[Hypothesis]:
    """:func:`coarse_hypotheses` one at a time: the coarse search and the rescoring run at the
    first request, each refinement (8 correlations at twice the search resolution) only when
    its hypothesis is asked for, so a loop that stops early does not pay for the others."""
    # many small FFTs on a thread pool of our own: one torch thread each (register.threads);
    # entered anew for each piece of work, so a paused generator leaves the caller's setting
    workers = pool_size()
    with torch_threads(1), _pool(workers) as pool:
        ranked = _search(fixed, fixed_mask, moving, moving_mask, cfg, pool)
    if ranked is None:
        return
    fine, smoothed, mask_u8, distinct, centre = ranked
    out: list[Hypothesis] = []
    for k, (angle, scale, _) in enumerate(distinct):
        if len(out) >= cfg.top_k:
            return
        with torch_threads(1), _pool(workers) as pool:
            hyp = _refine(fine, smoothed[scale], mask_u8, angle, scale, cfg, pool, centre.get(k))
        if any(_close(hyp.H, h.H, fixed.shape) for h in out):
            continue
        hyp = replace(hyp, rank=len(out))
        out.append(hyp)
        yield hyp


def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers)


def _search(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
            moving_mask: np.ndarray, cfg: SearchConfig, pool: ThreadPoolExecutor):
    coarse = _fixed_level(fixed, fixed_mask, cfg.side, erode=True, quarter=True)
    angles = np.arange(0.0, 360.0, cfg.angle_step_deg)
    # when the angle grid is symmetric under a half-turn, one FFT scores a and a + 180, and
    # when it is under a quarter-turn and the frame is square, a + 90 and a + 270 as well
    pair = _divides(cfg.angle_step_deg, 180.0)
    quad = pair and coarse.quarter is not None and _divides(cfg.angle_step_deg, 90.0)
    if pair:
        angles = angles[angles < (90.0 if quad else 180.0) - 1e-9]
    mask_u8 = moving_mask.astype(np.uint8)

    # the moving image smoothed once per scale, then every (scale, angle) a task of its own:
    # the FFTs and OpenCV release the GIL, and 9 scales on 2 threads left one idle a ninth
    # of the time; results are sorted by (score, angle, scale), so the outcome does not
    # depend on timing
    smoothed = dict(zip(cfg.scales, pool.map(lambda s: _antialiased(moving, coarse.d * s),
                                             cfg.scales)))

    def one(task: tuple[float, float]) -> list[tuple[float, float, float, np.ndarray]]:
        scale, angle = task
        return [(z, float(a), float(scale), A) for z, a, A in _similarity_peaks(
            coarse, smoothed[scale], mask_u8, angle, coarse.d * scale, 0.1, half_turn=pair,
            quarter_turn=quad)]

    tasks = [(scale, float(angle)) for scale in cfg.scales for angle in angles]
    results = [r for part in pool.map(one, tasks) for r in part]
    return _ranked(results, fixed, fixed_mask, moving, mask_u8, coarse, cfg, pool)


def _divides(step: float, span: float) -> bool:
    """Whether ``span`` degrees is a whole number of angle steps."""
    return abs(span / step - round(span / step)) < 1e-9


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


def _ranked(results, fixed, fixed_mask, moving, mask_u8, coarse: _Level, cfg: SearchConfig,
            pool: ThreadPoolExecutor):
    """From the coarse peaks (z, angle, scale, A), the best distinct ones rescored at twice the
    search resolution (``cfg.rescore`` of them), in that order: (fine level, the moving image
    smoothed per scale, mask, [(angle, scale, H)], {index: its peaks at its own angle and
    scale}) for :func:`_refine`; None without any peak."""
    if not results:
        return None
    results = _calibrated(results) if cfg.calibrate else results
    results.sort(key=lambda r: (-r[0], r[1], r[2]))
    fine = _fixed_level(fixed, fixed_mask, min(cfg.fine_px, max(fixed.shape)))
    D = np.diag([1 / coarse.d, 1 / coarse.d, 1.0])
    distinct: list[tuple[float, float, np.ndarray]] = []  # (angle, scale, H full-res)
    limit = max(cfg.rescore, cfg.top_k)
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
    if cfg.rescore > 0:
        peaks = list(pool.map(lambda c: _similarity_peaks(
            fine, smoothed[c[1]], mask_u8, c[0], fine.d * c[1], 0.05), distinct))
        order = sorted(range(len(distinct)),
                       key=lambda i: (-(peaks[i][0][0] if peaks[i] else -np.inf), i))
        distinct = [distinct[i] for i in order]
        centre = {k: peaks[i] for k, i in enumerate(order)}
    return fine, smoothed, mask_u8, distinct, centre


def _refine(level: _Level, src: np.ndarray, mask_u8: np.ndarray, angle: float, scale: float,
            cfg: SearchConfig, pool: ThreadPoolExecutor, centre: list | None = None) -> Hypothesis:
    """Finer angle / scale search around a coarse peak, at ``level`` (twice the search
    resolution): a third of the angle step and of the scale step either way. ``src`` is the
    moving image smoothed for ``scale`` (:func:`_antialiased`); ``centre``, when given, is
    :func:`_similarity_peaks` at ``angle`` and ``scale`` themselves, already computed."""
    step = cfg.angle_step_deg / 3.0
    ratio = max(b / a for a, b in zip(cfg.scales[:-1], cfg.scales[1:])) \
        if len(cfg.scales) > 1 else 1.1
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


def _close(H1: np.ndarray, H2: np.ndarray, shape: tuple[int, int], tol_frac: float = 0.08) -> bool:
    """Whether two transforms agree at the fixed corners within ``tol_frac`` of its size."""
    return corner_distance(H1, H2, shape) < tol_frac * max(shape)


def translation_hypothesis(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                           moving_mask: np.ndarray, H0: np.ndarray,
                           cfg: SearchConfig) -> Hypothesis:
    """Correct a start transform ``H0`` (e.g. from georeferencing) by a global shift.

    The moving image is resampled into the fixed frame with ``H0`` at the search resolution of
    ``cfg.fine_px`` and the shift with the highest oriented-gradient correlation is
    composed onto ``H0``. Used when georeferencing gives rotation and scale but may be off by
    more than the matching stage's search window.

    Returns:
        Hypothesis with ``H`` = shift @ ``H0`` (moving px -> fixed px) and the peak's z-score.
    """
    side = min(cfg.fine_px, max(fixed.shape))
    F, M, _, d = frame_channels(fixed, fixed_mask, moving, moving_mask, H0, side)
    z, t = correlation_peak(spectrum(F), M)
    H = translation(t[0] / d, t[1] / d) @ H0
    return Hypothesis(H=H / H[2, 2], score=float(z), angle_deg=0.0, scale=1.0)
