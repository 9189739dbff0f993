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
import torch
from numpy.lib.stride_tricks import sliding_window_view

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

    def pick(self, rows: np.ndarray, cols: np.ndarray) -> "Candidates":
        """One candidate per entry: keypoint ``rows[i]``'s candidate ``cols[i]`` (K = 1)."""
        rows, cols = np.asarray(rows, np.intp), np.asarray(cols, np.intp)
        return Candidates(self.xy_fixed[rows], self.xy_cand[rows, cols][:, None],
                          self.structural[rows, cols][:, None])


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


#: keypoints per batch of FFTs in :func:`correlation_surfaces`: 64 keeps a batch's spectra
#: (64 x 6 x 80 x 41 complex64, 10 MB at the 16 px window) under glibc's 32 MB mmap limit;
#: all 300 keypoints at once took 133 ms against 48 ms (16 px window, a throwaway timing)
FFT_CHUNK = 64


def _fft_side(n: int) -> int:
    """The smallest even 5-smooth number >= ``n``: a fast FFT length (73 -> 80, 49 -> 50)."""
    m = n + (n % 2)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 2


def correlation_surfaces(feat_fixed: np.ndarray, feat_moving: np.ndarray, xy: np.ndarray, *,
                         radius: int, half: int) -> np.ndarray:
    """Channel-summed cross-correlation of each keypoint's template with the moving channels
    over its search window, by batched FFTs (what ``cv2.matchTemplate(..., TM_CCORR)`` gives
    per keypoint, to float rounding; 300 keypoints took about a third of the time of one
    ``matchTemplate`` per keypoint at 16 and at 4 px, throwaway timings).

    Args:
        feat_fixed, feat_moving: (C, H, W) float32 channels.
        xy: (N, 2) int keypoints (x = column, y = row, 0-based), each at least
            ``radius + half`` px inside the image.
        radius: half-size of the search window; half: of the template (px).

    Returns:
        (N, 2 radius + 1, 2 radius + 1) float32: ``[i, radius + dy, radius + dx]`` correlates
        the template around ``xy[i]`` with the moving channels around ``xy[i] + (dx, dy)``.
    """
    side_t, side_r = 2 * half + 1, 2 * (half + radius) + 1
    n = _fft_side(side_r)
    tw = sliding_window_view(feat_fixed, (side_t, side_t), axis=(1, 2))
    rw = sliding_window_view(feat_moving, (side_r, side_r), axis=(1, 2))
    out = []
    for i in range(0, len(xy), FFT_CHUNK):
        x, y = xy[i:i + FFT_CHUNK, 0], xy[i:i + FFT_CHUNK, 1]
        t = torch.from_numpy(np.ascontiguousarray(tw[:, y - half, x - half].swapaxes(0, 1)))
        r = torch.from_numpy(np.ascontiguousarray(
            rw[:, y - half - radius, x - half - radius].swapaxes(0, 1)))
        spec = (torch.fft.rfft2(r, s=(n, n)) * torch.fft.rfft2(t, s=(n, n)).conj()).sum(1)
        out.append(torch.fft.irfft2(spec, s=(n, n))[:, :2 * radius + 1, :2 * radius + 1])
    if not out:
        return np.zeros((0, 2 * radius + 1, 2 * radius + 1), np.float32)
    return torch.cat(out).numpy()


def top_peaks(surfaces: np.ndarray, k: int, min_distance: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Each surface's ``k`` highest local maxima (as :func:`local_maxima`, ties in row-major
    order), located to a fraction of a pixel by a parabola through the peak and its two
    neighbours on each axis (0 on an axis where the peak lies on the border or the parabola
    does not open down; within [-0.5, 0.5]).

    Args:
        surfaces: (N, S, S) float32.

    Returns:
        (N, k, 2) float32 peak (x, y) in surface px, and (N, k) float32 values; ``-inf``
        where a surface has fewer than ``k`` maxima (the position then repeats its last).
    """
    n, side, _ = surfaces.shape
    s = torch.from_numpy(surfaces)[:, None]
    dil = torch.nn.functional.max_pool2d(s, 2 * min_distance + 1, 1, min_distance)
    vals = np.where((s >= dil)[:, 0].numpy(), surfaces, -np.inf).reshape(n, -1)
    order = np.argsort(-vals, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(vals, order, 1).astype(np.float32)
    ok = np.isfinite(best)
    last = np.maximum(ok.sum(1) - 1, 0)
    order = np.where(ok, order, np.take_along_axis(order, last[:, None], 1))
    py, px = np.divmod(order, side)
    rows = np.arange(n)[:, None]

    def vertex(lo, mid, hi, inside):
        den = lo - 2.0 * mid + hi
        off = 0.5 * (lo - hi) / np.where(den < 0, den, -1.0)
        return np.where(inside & (den < 0), np.clip(off, -0.5, 0.5), 0.0)

    def at(dy, dx):
        return surfaces[rows, np.clip(py + dy, 0, side - 1), np.clip(px + dx, 0, side - 1)]

    mid = surfaces[rows, py, px]
    dx = vertex(at(0, -1), mid, at(0, 1), (px > 0) & (px < side - 1))
    dy = vertex(at(-1, 0), mid, at(1, 0), (py > 0) & (py < side - 1))
    xy = np.stack([px + dx, py + dy], -1).astype(np.float32)
    return xy, best


def shortlist(feat_fixed: np.ndarray, feat_moving: np.ndarray, xy_fixed: np.ndarray, *,
              radius: int, k: int, half: int = 20) -> Candidates:
    """Top-``k`` structural-correlation peaks within ``radius`` px of each keypoint, each
    located to a fraction of a pixel (:func:`top_peaks`).

    Args:
        feat_fixed: (C, H, W) float32 channels of the fixed image.
        feat_moving: (C, H, W) float32 channels of the moving image in the fixed frame.
        xy_fixed: (N, 2) float32 keypoints (x = column, y = row, 0-based), integer-valued,
            at least ``radius + half`` px inside the image (others get no candidate).
        radius: half-size of the search window, in pixels.
        k: candidates kept per keypoint.
        half: half-size of the correlated template, in pixels.
    """
    xy_fixed = check_points(xy_fixed, "keypoints")
    n = len(xy_fixed)
    xy = np.round(xy_fixed).astype(int)
    _, h, w = feat_fixed.shape
    m = half + radius
    inside = ((xy >= m) & (xy < np.array([w, h]) - m)).all(1)
    cand = np.repeat(xy[:, None].astype(np.float32), k, 1)
    struct = np.full((n, k), -np.inf, np.float32)
    if inside.any():
        surf = correlation_surfaces(feat_fixed, feat_moving, xy[inside], radius=radius, half=half)
        peaks, best = top_peaks(surf, k)
        tw = sliding_window_view(feat_fixed, (2 * half + 1,) * 2, axis=(1, 2))
        t = tw[:, xy[inside, 1] - half, xy[inside, 0] - half]
        norm = np.sqrt((t.astype(np.float32) ** 2).sum((0, 2, 3))) + 1e-6
        cand[inside] = xy[inside, None] + peaks - radius
        struct[inside] = best / norm[:, None]
    return Candidates(xy_fixed, cand, struct)


def candidates_to_score(prob_top: np.ndarray, structural: np.ndarray, *, ratio: float,
                        mode: str) -> np.ndarray:
    """Which candidates' probabilities can change :func:`select`'s result, once each keypoint's
    structurally best candidate (the ``argmax`` of its row of ``structural``) is scored.

    Fused, a candidate c scores ``prob_c x rel_c <= rel_c`` and the structural best t scores
    ``prob_t``; when ``max(ratio, 1) x rel_c <= prob_t``, c can neither outrank t nor be the
    runner-up that stops t, so :func:`select` gives the same ``keep`` and ``best`` with its
    probability set to 0 (ties aside). Ranked by the structural correlation, only the best's
    probability is read; ranked by probability alone, every candidate counts.

    Args:
        prob_top: (N,) float32 probability of each keypoint's structurally best candidate.
        structural: (N, K) float32 structural correlations (``-inf`` = no candidate).
        ratio, mode: as in :func:`select`.

    Returns:
        (N, K) bool, True at the candidates to score (the structural best excluded, being
        scored already; never at a missing candidate).
    """
    st = np.asarray(structural, np.float32)
    n, k = st.shape
    finite = np.isfinite(st)
    top = np.zeros((n, k), bool)
    top[np.arange(n), st.argmax(1)] = True
    if mode == "structural":
        return np.zeros((n, k), bool)
    if mode == "network":
        return finite & ~top
    if mode != "fused":
        raise ValueError(f"mode must be 'network', 'structural' or 'fused', got {mode!r}")
    bound = np.asarray(prob_top, np.float32)[:, None] / max(float(ratio), 1.0)
    return finite & ~top & (_relative(st) > bound)


def _relative(structural: np.ndarray) -> np.ndarray:
    """(N, K) float32 structural correlations relative to each row's best, clipped to [0, 1];
    0 at missing (``-inf``) candidates: the structural factor of the fused selection."""
    st = np.where(np.isfinite(structural), structural, -np.inf).astype(np.float32)
    top = np.max(st, axis=1, keepdims=True)
    rel = np.clip(st / np.where(top > 0, top, 1.0), 0.0, 1.0)
    return np.where(np.isfinite(st), rel, 0.0)


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
            score = prob * _relative(st)
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
