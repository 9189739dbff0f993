"""Diagnostic figures: matches between the two images, and a checkerboard before / after.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global state,
no GUI backend) and saved as PNG atomically. Images are (H, W) float32 grayscale in [0, 1], as
returned by :func:`register.io.to_gray`; they are downscaled for display so figures stay at most
:data:`MAX_WIDTH_PX` pixels wide.
"""
from __future__ import annotations

import math
import os

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .checks import InputError, check_homography, check_points
from .geometry import resize_map
from .io import atomic_path
from .patches import warp_image

#: Widest figure written, in pixels.
MAX_WIDTH_PX = 1600
#: Images are downscaled so their displayed height / longer side is at most this, in pixels.
DISPLAY_SIDE_PX = 800
_DPI = 100
_TITLE_IN = 0.5  # room for titles, inches
_INLIER_COLOR = "#00c000"
_OUTLIER_COLOR = "#e00000"


def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise InputError(f"{name}: expected an (H, W) grayscale image, got shape {arr.shape}; "
                         "use register.io.to_gray(...).image")
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(arr, 0.0, 1.0)


def _points(xy: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(xy, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), np.float64)
    return check_points(arr, name).astype(np.float64)


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-9:
        return img
    h, w = img.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=interp)


def _new_figure(width_px: float, height_px: float) -> Figure:
    """Figure whose content area is ``width_px`` x ``height_px`` (shrunk to fit MAX_WIDTH_PX),
    plus room for titles on top."""
    scale = min(1.0, MAX_WIDTH_PX / width_px)
    w_in = width_px * scale / _DPI
    h_in = height_px * scale / _DPI + _TITLE_IN
    fig = Figure(figsize=(w_in, h_in), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, dest: str | os.PathLike) -> None:
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    fig.clear()


def plot_matches(dest: str | os.PathLike, fixed_img: np.ndarray, moving_img: np.ndarray,
                 xy_fixed: np.ndarray, xy_moving: np.ndarray, inlier_mask: np.ndarray | None, *,
                 title: str = "") -> None:
    """Draw the two images side by side with a line per match, and save it as PNG atomically.

    Args:
        dest: output .png path.
        fixed_img: (H, W) float32 fixed image in [0, 1] (left).
        moving_img: (h, w) float32 moving image in [0, 1] (right); both are scaled to the same
            displayed height.
        xy_fixed: (N, 2) fixed-image pixel coordinates (x = column, y = row, 0-based).
        xy_moving: (N, 2) matching moving-image pixel coordinates.
        inlier_mask: (N,) bool, True for inliers (green), False for rejected matches (red, drawn
            underneath); None = all inliers. N may be 0.
        title: text put before the counts in the figure title.

    Raises:
        InputError: bad image shapes, point arrays or mask length.
    """
    fixed = _check_image(fixed_img, "fixed_img")
    moving = _check_image(moving_img, "moving_img")
    pf = _points(xy_fixed, "xy_fixed")
    pm = _points(xy_moving, "xy_moving")
    if len(pf) != len(pm):
        raise InputError(f"xy_fixed has {len(pf)} points but xy_moving has {len(pm)}; give one "
                         "moving point per fixed point")
    if inlier_mask is None:
        inl = np.ones(len(pf), bool)
    else:
        inl = np.asarray(inlier_mask).astype(bool).reshape(-1)
        if len(inl) != len(pf):
            raise InputError(f"inlier_mask has {len(inl)} entries for {len(pf)} matches; give one "
                             "bool per match")

    height = min(DISPLAY_SIDE_PX, max(fixed.shape[0], moving.shape[0]))
    sf, sm = height / fixed.shape[0], height / moving.shape[0]
    left, right = _resize(fixed, sf), _resize(moving, sm)
    gap = max(4, height // 50)
    canvas = np.ones((height, left.shape[1] + gap + right.shape[1]), np.float32)
    canvas[:left.shape[0], :left.shape[1]] = left[:height]
    x0 = left.shape[1] + gap
    canvas[:right.shape[0], x0:] = right[:height]

    # pixel centres scale about the pixel edge: x' = (x + 0.5) s - 0.5
    scale_f = np.array([left.shape[1] / fixed.shape[1], left.shape[0] / fixed.shape[0]])
    scale_m = np.array([right.shape[1] / moving.shape[1], right.shape[0] / moving.shape[0]])
    a = (pf + 0.5) * scale_f - 0.5
    b = (pm + 0.5) * scale_m - 0.5
    b[:, 0] += x0
    segs = np.stack([a, b], axis=1)  # (N, 2, 2)

    fig = _new_figure(canvas.shape[1], canvas.shape[0])
    ax = fig.add_axes((0, 0, 1, 1 - _TITLE_IN / fig.get_figheight()))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    lw = 0.8 if len(segs) > 200 else 1.2
    n_in, n_out = int(inl.sum()), int((~inl).sum())
    if n_out:
        ax.add_collection(LineCollection(segs[~inl], colors=_OUTLIER_COLOR, linewidths=lw,
                                         alpha=0.7, zorder=2))
    if n_in:
        ax.add_collection(LineCollection(segs[inl], colors=_INLIER_COLOR, linewidths=lw,
                                         zorder=3))
        ax.scatter(a[inl, 0], a[inl, 1], s=6, c=_INLIER_COLOR, zorder=4, linewidths=0)
        ax.scatter(b[inl, 0], b[inl, 1], s=6, c=_INLIER_COLOR, zorder=4, linewidths=0)
    ax.set_xlim(-0.5, canvas.shape[1] - 0.5)
    ax.set_ylim(canvas.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    handles = [Line2D([], [], color=_INLIER_COLOR, lw=2, label=f"inliers: {n_in}"),
               Line2D([], [], color=_OUTLIER_COLOR, lw=2, label=f"rejected: {n_out}")]
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8)
    head = f"{title} — " if title else ""
    fig.suptitle(f"{head}fixed (left) / moving (right): {n_in} inliers of {len(pf)} matches",
                 fontsize=10, y=1 - 0.1 / fig.get_figheight(), va="top")
    _save(fig, dest)


def checkerboard(a: np.ndarray, b: np.ndarray, *, tiles: int = 8) -> np.ndarray:
    """Interleave two (H, W) images in square tiles, ``tiles`` of them along the longer side.

    Returns:
        (H, W) array: ``a`` on tiles where (row + col) is even, ``b`` elsewhere.
    """
    if a.shape != b.shape:
        raise InputError(f"checkerboard: images of shapes {a.shape} and {b.shape}; give images "
                         "of the same shape")
    if int(tiles) < 1:
        raise InputError(f"tiles: expected a positive integer, got {tiles!r}")
    h, w = a.shape
    side = max(1, math.ceil(max(h, w) / int(tiles)))
    rows = (np.arange(h) // side)[:, None]
    cols = (np.arange(w) // side)[None, :]
    return np.where((rows + cols) % 2 == 0, a, b)


def plot_overlay(dest: str | os.PathLike, fixed_img: np.ndarray, moving_img: np.ndarray,
                 H_moving_to_fixed: np.ndarray | None, *, tiles: int = 8) -> None:
    """Checkerboards of fixed and moving before and after registration, saved as PNG atomically.

    "before": the moving image simply resized to the fixed image's size (scale only).
    "after": the moving image warped onto the fixed grid by ``H_moving_to_fixed``
    (:func:`register.patches.warp_image`); outside its footprint the moving tiles are black.

    Args:
        dest: output .png path.
        fixed_img: (H, W) float32 fixed image in [0, 1].
        moving_img: (h, w) float32 moving image in [0, 1].
        H_moving_to_fixed: (3, 3) homography moving px -> fixed px, or None for a figure with
            only the "before" panel.
        tiles: number of checkerboard squares along the longer side.

    Raises:
        InputError: bad images, homography or ``tiles``.
    """
    fixed = _check_image(fixed_img, "fixed_img")
    moving = _check_image(moving_img, "moving_img")
    if H_moving_to_fixed is not None:
        H = check_homography(H_moving_to_fixed, "H_moving_to_fixed")
    # display frame = fixed frame scaled by s
    s = min(1.0, DISPLAY_SIDE_PX / max(fixed.shape))
    fixed_d = _resize(fixed, s)
    h, w = fixed_d.shape
    before = cv2.resize(moving, (w, h), interpolation=cv2.INTER_AREA
                        if moving.shape[0] * moving.shape[1] > h * w else cv2.INTER_LINEAR)
    panels = [("before", checkerboard(fixed_d, before, tiles=tiles))]
    if H_moving_to_fixed is not None:
        S = resize_map(fixed.shape, (h, w))  # fixed px -> display px (cv2.resize's centres)
        after = warp_image(moving, S @ H, (h, w))
        panels.append(("after", checkerboard(fixed_d, np.clip(after, 0, 1), tiles=tiles)))

    gap = 0.05 * w
    fig = _new_figure(len(panels) * w + (len(panels) - 1) * gap, h)
    top = 1 - _TITLE_IN / fig.get_figheight()
    width_frac = w / (len(panels) * w + (len(panels) - 1) * gap)
    for i, (name, img) in enumerate(panels):
        ax = fig.add_axes((i * width_frac * (1 + gap / w), 0, width_frac, top))
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.set_axis_off()
    _save(fig, dest)
