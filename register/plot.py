"""Diagnostic figures: matches between the two images, and a checkerboard before / after.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global state,
no GUI backend) and saved as PNG atomically. Images are (H, W) float32 grayscale in [0, 1], as
returned by :func:`register.io.to_gray`; they are downscaled for display so figures stay at most
:data:`MAX_WIDTH_PX` pixels wide.
"""
from __future__ import annotations

import math
import os
import textwrap

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .checks import InputError, check_homography, check_points
from .geometry import resize_map
from .write import atomic_path
from .patches import warp_image

#: Widest figure written, in pixels.
MAX_WIDTH_PX = 1600
#: Narrowest figure written, in pixels (small inputs keep a readable title and legend).
MIN_WIDTH_PX = 800
#: Images are shown at least this tall, in pixels (smaller ones are enlarged).
MIN_HEIGHT_PX = 360
#: matches.png draws every inlier up to this many, and a sample of this many rejected matches
MAX_INLIERS_SHOWN = 150
MAX_REJECTED_SHOWN = 60
#: Images are downscaled so their displayed height / longer side is at most this, in pixels.
DISPLAY_SIDE_PX = 800
_DPI = 100
_LEGEND_IN = 0.35  # room for the legend below the images, inches
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


def _new_figure(width_px: float, height_px: float, title: str, *,
                bottom_in: float = 0.0) -> tuple[Figure, tuple[float, float, float, float]]:
    """Figure whose content area is ``width_px`` x ``height_px`` (shrunk to fit MAX_WIDTH_PX,
    at least MIN_WIDTH_PX wide), with ``title`` wrapped to the width on top and ``bottom_in``
    inches free below (for a legend outside the images). Returns the figure and the content
    area's (left, bottom, width, height) in figure fractions."""
    scale = min(1.0, MAX_WIDTH_PX / width_px)
    content_w, content_h = width_px * scale / _DPI, height_px * scale / _DPI
    w_in = max(content_w, MIN_WIDTH_PX / _DPI)
    lines = textwrap.wrap(title, width=max(40, int(w_in * _DPI / 8))) or [""]
    top_in = 0.2 + 0.2 * len(lines)
    h_in = content_h + top_in + bottom_in
    fig = Figure(figsize=(w_in, h_in), dpi=_DPI)
    FigureCanvasAgg(fig)
    fig.suptitle("\n".join(lines), fontsize=10, y=1 - 0.08 / h_in, va="top")
    area = ((w_in - content_w) / 2 / w_in, bottom_in / h_in, content_w / w_in, content_h / h_in)
    return fig, area


#: zlib level of the PNGs: 1 instead of the default 6 took the demo pair's two figures from 0.53
#: to 0.25-0.29 s (warm; the encoding was 0.28 s of it) for files 1-2 % larger (830 -> 840 kB)
PNG_COMPRESS_LEVEL = 1


def _save(fig: Figure, dest: str | os.PathLike) -> None:
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    fig.clear()


def shown_subset(inliers: np.ndarray, *, max_inliers: int = MAX_INLIERS_SHOWN,
                 max_rejected: int = MAX_REJECTED_SHOWN) -> np.ndarray:
    """Which matches a figure draws: every inlier up to ``max_inliers`` and a sample of at most
    ``max_rejected`` rejected ones, both spread evenly over the list (deterministic).

    Args:
        inliers: (N,) bool.

    Returns:
        (N,) bool, True for the matches to draw.
    """
    inl = np.asarray(inliers, bool)
    keep = np.zeros(len(inl), bool)
    for group, cap in ((np.flatnonzero(inl), max_inliers), (np.flatnonzero(~inl), max_rejected)):
        if len(group) > cap:
            group = group[np.unique(np.linspace(0, len(group) - 1, cap).round().astype(int))]
        keep[group] = True
    return keep


def _side_by_side(fixed: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, float, tuple]:
    """Both images at one displayed height (at least MIN_HEIGHT_PX: small inputs are enlarged)
    on one canvas; (canvas, x offset of the moving image, (scale_f, scale_m) per axis)."""
    height = max(MIN_HEIGHT_PX, min(DISPLAY_SIDE_PX, max(fixed.shape[0], moving.shape[0])))
    left = _resize(fixed, height / fixed.shape[0])
    right = _resize(moving, height / moving.shape[0])
    gap = max(4, height // 50)
    canvas = np.ones((height, left.shape[1] + gap + right.shape[1]), np.float32)
    canvas[:left.shape[0], :left.shape[1]] = left[:height]
    x0 = left.shape[1] + gap
    canvas[:right.shape[0], x0:] = right[:height]
    scale_f = np.array([left.shape[1] / fixed.shape[1], left.shape[0] / fixed.shape[0]])
    scale_m = np.array([right.shape[1] / moving.shape[1], right.shape[0] / moving.shape[0]])
    return canvas, x0, (scale_f, scale_m)


def _match_arrays(xy_fixed, xy_moving, inlier_mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked (N, 2) float64 fixed and moving points and the (N,) bool inlier mask."""
    pf = _points(xy_fixed, "xy_fixed")
    pm = _points(xy_moving, "xy_moving")
    if len(pf) != len(pm):
        raise InputError(f"xy_fixed has {len(pf)} points but xy_moving has {len(pm)}; give one "
                         "moving point per fixed point")
    inl = np.ones(len(pf), bool) if inlier_mask is None else \
        np.asarray(inlier_mask).astype(bool).reshape(-1)
    if len(inl) != len(pf):
        raise InputError(f"inlier_mask has {len(inl)} entries for {len(pf)} matches; give one "
                         "bool per match")
    return pf, pm, inl


def _draw_matches(ax, canvas: np.ndarray, segs: np.ndarray, inl: np.ndarray,
                  shown: np.ndarray) -> None:
    """The side-by-side canvas with the shown matches' lines ((N, 2, 2) display px): rejected
    in red underneath, inliers in green with their end points."""
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for sel, color, z, alpha in ((~inl & shown, _OUTLIER_COLOR, 2, 0.7),
                                 (inl & shown, _INLIER_COLOR, 3, 1.0)):
        if sel.any():
            ax.add_collection(LineCollection(segs[sel], colors=color, linewidths=1.0,
                                             alpha=alpha, zorder=z))
    ends = segs[inl & shown].reshape(-1, 2)
    ax.scatter(ends[:, 0], ends[:, 1], s=6, c=_INLIER_COLOR, zorder=4, linewidths=0)
    ax.set_xlim(-0.5, canvas.shape[1] - 0.5)
    ax.set_ylim(canvas.shape[0] - 0.5, -0.5)
    ax.set_axis_off()


def plot_matches(dest: str | os.PathLike, fixed_img: np.ndarray, moving_img: np.ndarray,
                 xy_fixed: np.ndarray, xy_moving: np.ndarray, inlier_mask: np.ndarray | None, *,
                 title: str = "") -> None:
    """Draw the two images side by side with a line per shown match (:func:`shown_subset`:
    every inlier up to a cap, a sample of the rejected), and save it as PNG atomically. The
    legend, below the images, says how many of each are shown.

    Args:
        dest: output .png path.
        fixed_img: (H, W) float32 fixed image in [0, 1] (left).
        moving_img: (h, w) float32 moving image in [0, 1] (right); both are scaled to the same
            displayed height.
        xy_fixed: (N, 2) fixed-image pixel coordinates (x = column, y = row, 0-based).
        xy_moving: (N, 2) matching moving-image pixel coordinates.
        inlier_mask: (N,) bool, True for inliers (green), False for rejected matches (red, drawn
            underneath); None = all inliers. N may be 0.
        title: the figure's title (e.g. the status and key numbers); the match counts follow.

    Raises:
        InputError: bad image shapes, point arrays or mask length.
    """
    fixed = _check_image(fixed_img, "fixed_img")
    moving = _check_image(moving_img, "moving_img")
    pf, pm, inl = _match_arrays(xy_fixed, xy_moving, inlier_mask)
    canvas, x0, (scale_f, scale_m) = _side_by_side(fixed, moving)
    # pixel centres scale about the pixel edge: x' = (x + 0.5) s - 0.5
    a = (pf + 0.5) * scale_f - 0.5
    b = (pm + 0.5) * scale_m - 0.5
    b[:, 0] += x0
    segs = np.stack([a, b], axis=1)  # (N, 2, 2)
    shown = shown_subset(inl)
    n_in, n_out = int(inl.sum()), int((~inl).sum())
    head = f"{title} — " if title else ""
    fig, area = _new_figure(canvas.shape[1], canvas.shape[0],
                            f"{head}fixed (left) / moving (right): {n_in} inliers of {len(pf)} "
                            "matches", bottom_in=_LEGEND_IN)
    _draw_matches(fig.add_axes(area), canvas, segs, inl, shown)

    def label(name: str, n: int, sel: np.ndarray) -> str:
        k = int(sel.sum())
        return f"{name}: {n}" + ("" if k == n else f" ({k} shown)")

    fig.legend(handles=[Line2D([], [], color=_INLIER_COLOR, lw=2,
                               label=label("inliers", n_in, inl & shown)),
                        Line2D([], [], color=_OUTLIER_COLOR, lw=2,
                               label=label("rejected", n_out, ~inl & shown))],
               loc="lower center", ncol=2, fontsize=9, frameon=False)
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
                 H_moving_to_fixed: np.ndarray | None, *, tiles: int = 8, title: str = "",
                 H_before: np.ndarray | None = None) -> None:
    """Checkerboards of fixed and moving before and after registration, saved as PNG atomically.

    "before": the moving image as its georeferencing places it on the fixed grid when
    ``H_before`` is given (the map two georeferencings imply), else simply resized to the
    fixed image's size. "after": the moving image warped onto the fixed grid by
    ``H_moving_to_fixed`` (:func:`register.patches.warp_image`); outside its footprint the
    moving tiles are black.

    Args:
        dest: output .png path.
        fixed_img: (H, W) float32 fixed image in [0, 1].
        moving_img: (h, w) float32 moving image in [0, 1].
        H_moving_to_fixed: (3, 3) homography moving px -> fixed px, or None for a figure with
            only the "before" panel.
        tiles: number of checkerboard squares along the longer side.
        title: the figure's title (e.g. the status and key numbers).
        H_before: (3, 3) homography moving px -> fixed px for the "before" panel, or None.

    Raises:
        InputError: bad images, homographies or ``tiles``.
    """
    fixed = _check_image(fixed_img, "fixed_img")
    moving = _check_image(moving_img, "moving_img")
    # display frame = fixed frame scaled by s (small images enlarged to MIN_HEIGHT_PX)
    s = min(DISPLAY_SIDE_PX / max(fixed.shape), max(1.0, MIN_HEIGHT_PX / fixed.shape[0]))
    fixed_d = _resize(fixed, s)
    h, w = fixed_d.shape
    S = resize_map(fixed.shape, (h, w))  # fixed px -> display px (cv2.resize's centres)
    if H_before is not None:
        before = warp_image(moving, S @ check_homography(H_before, "H_before"), (h, w))
        name = "before (as georeferenced)"
    else:
        before = cv2.resize(moving, (w, h), interpolation=cv2.INTER_AREA
                            if moving.shape[0] * moving.shape[1] > h * w else cv2.INTER_LINEAR)
        name = "before (resized)"
    panels = [(name, checkerboard(fixed_d, np.clip(before, 0, 1), tiles=tiles))]
    if H_moving_to_fixed is not None:
        H = check_homography(H_moving_to_fixed, "H_moving_to_fixed")
        after = warp_image(moving, S @ H, (h, w))
        panels.append(("after", checkerboard(fixed_d, np.clip(after, 0, 1), tiles=tiles)))
    gap = 0.05 * w
    total = len(panels) * w + (len(panels) - 1) * gap
    fig, (x0, y0, fw, fh) = _new_figure(total, h + 24, title)
    for i, (label, img) in enumerate(panels):
        ax = fig.add_axes((x0 + fw * i * (w + gap) / total, y0, fw * w / total, fh * h / (h + 24)))
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.set_axis_off()
    _save(fig, dest)
