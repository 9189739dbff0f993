"""The structural evidence shared by the search, the matching and the check: dense
oriented-gradient channels and their FFT correlation.

*Oriented-gradient channels* are unsigned gradient-orientation histograms, smoothed (the
structural descriptor family of CFOG/HOPC, which survives the contrast reversals between
optical, SAR and thermal images). Correlating the channels of two images over all shifts with
FFTs gives a surface whose highest peak, in standard deviations of the surface (a z-score),
says how well and where they line up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .geometry import resize_map
from .patches import warp_image


N_ORIENTATIONS = 6


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
    n = m.size
    # scattered through flat indices: the same numbers as chans[lo, arange(n)] = ..., faster
    # (the whole function on a 320 px image 3.4-4.0 -> 2.7-2.9 ms, docs/results.md)
    at = np.arange(n)
    flat = np.zeros(N_ORIENTATIONS * n, np.float32)
    flat[lo * n + at] = m * (1 - w_hi)
    flat[hi * n + at] += m * w_hi  # hi != lo, so no pixel index repeats
    chans = flat.reshape((N_ORIENTATIONS,) + img.shape)
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


def channel_product_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_c a[c] * b[c]`` of two (C, ...) complex tensors, C >= 1 (channel spectra): the
    spectrum of the channel-summed correlation.

    Accumulated channel by channel (``addcmul_`` into the first product): the same numbers as
    ``(a * b).sum(0)`` (``tests/test_structural.py``), without its (C, ...) temporary and
    torch's slow complex sum over the first axis: the search's four products per coarse moving
    FFT (6 channels, 320 x 161 bins) took 0.86 against 4.7 ms on the MIFNet optical-SAR pair,
    one thread.

    Returns:
        (...) complex tensor, a new one.
    """
    out = a[0] * b[0]
    for c in range(1, a.shape[0]):
        out.addcmul_(a[c], b[c])
    return out


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
    prod = torch.conj_physical(channel_product_sum(ref.fft, mf))
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


def resize_factor(shape: tuple[int, int], side: int) -> float:
    return min(1.0, side / max(shape))


def downsized(fixed: np.ndarray, fixed_mask: np.ndarray, side: int
               ) -> tuple[np.ndarray, np.ndarray, float]:
    """(image, uint8 mask, d): ``fixed`` and its mask at ``side`` px on the longer side (never
    enlarged), and the factor d from full-size pixels to that resolution."""
    d = resize_factor(fixed.shape, side)
    fs = cv2.resize(fixed, None, fx=d, fy=d, interpolation=cv2.INTER_AREA) if d < 1 else fixed
    fm = cv2.resize(fixed_mask.astype(np.uint8), (fs.shape[1], fs.shape[0]),
                    interpolation=cv2.INTER_NEAREST)
    return fs, fm, d


def frame_channels(fixed: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
                    moving_mask: np.ndarray, H: np.ndarray, side: int):
    """Oriented-gradient channels of the fixed image and of the moving image resampled with
    ``H`` (moving px -> fixed px) into the fixed frame, both at ``side`` px on the longer side.

    Returns:
        (F, M, valid_moving, d): (C, h, w) channels, the (h, w) bool footprint of the moving
        image there, and the scale factor d from ``fixed`` pixels to that resolution (the
        moving image is resampled with the exact pixel-centre map of the resize,
        :func:`register.geometry.resize_map`).
    """
    F, to_frame, d = fixed_channels(fixed, fixed_mask, side)
    M, wm = moving_channels(moving, moving_mask, to_frame @ np.asarray(H, np.float64),
                            F.shape[1:])
    return F, M, wm, d


def fixed_channels(fixed: np.ndarray, fixed_mask: np.ndarray, side: int
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """The fixed half of :func:`frame_channels`, the same for every transform of a pair:
    (C, h, w) channels of ``fixed`` at ``side`` px on the longer side, the (3, 3) map from
    ``fixed`` px to that frame (:func:`register.geometry.resize_map`) and the factor d."""
    fs, fm, d = downsized(fixed, fixed_mask, side)
    return (oriented_gradient_channels(fs, fm.astype(bool)), resize_map(fixed.shape, fs.shape),
            d)


def moving_channels(moving: np.ndarray, moving_mask: np.ndarray, A: np.ndarray,
                    shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The moving half of :func:`frame_channels`: the moving image resampled with ``A``
    (3x3, moving px -> px of a frame of ``shape`` (h, w)) and its (C, h, w) channels, with the
    (h, w) bool footprint they are valid on."""
    h, w = shape
    warped = warp_image(moving, A, (h, w))  # anti-aliased when shrinking
    # the footprint: nearest, then eroded so that the edge's gradients do not count
    wm = cv2.warpPerspective(moving_mask.astype(np.uint8), A, (w, h), flags=cv2.INTER_NEAREST)
    wm = cv2.erode(wm, np.ones((5, 5), np.uint8)).astype(bool)
    return oriented_gradient_channels(warped, wm), wm
