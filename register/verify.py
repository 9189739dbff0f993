"""The global checks of a transform, independent of the matches that produced it: the moving
image resampled with the transform must correlate with the fixed image at zero shift
(:func:`verify_alignment`), and, asked only where that is not enough, SSML-QNet must find the
patch pairs matching at zero shift rather than around it (:func:`network_check`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import PATCH_SIZE, VerifyConfig
from .detect import detect
from .geometry import translation
from .io import GrayImage
from .patches import warp_to_frame
from .structural import (Spectrum, correlation_surface, fixed_channels, moving_channels,
                         spectrum, surface_peak)


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


@dataclass(frozen=True)
class CheckFrame:
    """The fixed side of the check, the same for every transform of a pair: the check frame's
    (h, w), the (3, 3) map from fixed px to it, the factor d from fixed px to its resolution
    and the spectrum of the fixed channels there."""

    shape: tuple[int, int]
    to_frame: np.ndarray
    d: float
    ref: Spectrum


def check_frame(fixed: np.ndarray, fixed_mask: np.ndarray, side: int) -> CheckFrame:
    """:class:`CheckFrame` of an (h, w) float32 fixed image and bool mask at ``side`` px on the
    longer side, for :func:`verify_alignment` to reuse across transforms."""
    F, to_frame, d = fixed_channels(fixed, fixed_mask, side)
    return CheckFrame(F.shape[1:], to_frame, d, spectrum(F))


def verify_alignment(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                     moving_mask: np.ndarray, H: np.ndarray, side: int, *,
                     frame: CheckFrame | None = None) -> Check:
    """Global check of a final transform, independent of the matches that produced it.

    The moving image is resampled into the fixed frame with ``H`` (moving px -> fixed px) at a
    resolution of ``side`` px on the longer side, and the oriented-gradient correlation surface
    over all shifts is computed. A right transform puts a sharp peak at zero shift; a wrong one
    that RANSAC fitted to chance inliers does not.

    Args: (h, w) float32 images and bool masks; ``H`` (3, 3) moving px -> fixed px (x = column,
    y = row, 0-based); ``side`` the longer side in px of the frame the check runs in;
    ``frame``: :func:`check_frame` of ``fixed`` at ``side``, computed once for many checks
    (the same numbers; computed here when None).
    Returns a :class:`Check`.
    """
    frame = frame or check_frame(fixed, fixed_mask, side)
    M, wm = moving_channels(moving, moving_mask, frame.to_frame @ np.asarray(H, np.float64),
                            frame.shape)
    d = frame.d
    if wm.sum() < 0.02 * wm.size:
        return Check(0.0, (math.inf, math.inf))
    corr = correlation_surface(frame.ref, M)
    z0 = (float(corr[0, 0]) - float(corr.mean())) / (float(corr.std()) + 1e-9)
    _, t = surface_peak(corr)
    return Check(z0, (t[0] / d, t[1] / d))


@dataclass(frozen=True)
class NetworkVote:
    """Result of :func:`network_check`: ``keypoints`` voted, the ``share`` whose best-scored
    shift is zero shift, and ``z``, that share's binomial z-score against chance."""

    keypoints: int
    share: float
    z: float


def shift_grid(radius: int, step: int) -> tuple[np.ndarray, int]:
    """The shifts a network vote scores, (S, 2) float32 (dx, dy) px on a square grid of
    ``step`` px out to ``radius`` px, and the index of zero shift among them."""
    r = np.arange(-int(radius), int(radius) + 1, int(step), dtype=np.float32)
    grid = np.stack(np.meshgrid(r, r), -1).reshape(-1, 2)
    zero = np.flatnonzero((grid == 0).all(1))
    if len(zero) != 1:
        raise ValueError(f"shift_grid: expected a radius that is a multiple of the step (e.g. 8 "
                         f"and 4), got radius {radius} and step {step}")
    return grid, int(zero[0])


def network_vote(prob: np.ndarray, zero: int) -> NetworkVote:
    """The vote of (N, S) match probabilities, keypoint by shift: each keypoint votes for its
    best-scored shift; under a wrong transform zero shift wins 1 / S of the votes by chance."""
    n, s = prob.shape
    if n == 0 or s < 2:
        return NetworkVote(n, 0.0, 0.0)
    share = float((prob.argmax(1) == zero).mean())
    q = 1.0 / s
    return NetworkVote(n, share, (share - q) * math.sqrt(n / (q * (1.0 - q))))


def network_check(scorer, frame: GrayImage, moving: GrayImage, H: np.ndarray,
                  cfg: VerifyConfig, timer) -> NetworkVote | None:
    """The network's vote on ``H`` (3, 3; working moving px -> ``frame`` px): at up to
    ``cfg.network_keypoints`` keypoints of ``frame`` where the resampled moving image is valid,
    the fixed patch against moving patches at every shift of :func:`shift_grid`; None when the
    scorer has no network (``scorer.votes`` False; :mod:`register.scorers`)."""
    if not scorer.votes:
        return None
    offsets, zero = shift_grid(cfg.network_radius, cfg.network_step)
    mi, mm = warp_to_frame(moving.image, moving.mask, H, frame.image.shape)
    kp = detect(frame.image, frame.mask & mm, max_keypoints=cfg.network_keypoints,
                border=PATCH_SIZE // 2 + cfg.network_radius + 1)
    return network_vote(scorer.score_shifts(frame.image, mi, np.round(kp.xy), offsets, timer),
                        zero)
