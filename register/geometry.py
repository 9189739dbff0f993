"""Plane geometry of pixel coordinates: applying transforms, translations, similarities,
resize maps, frame corners and the distance between two transforms.

All transforms are (3, 3) float64 homographies mapping pixels (x = column, y = row, 0-based) of
one image to pixels of another.
"""
from __future__ import annotations

import math

import numpy as np


def transfer(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to (N, 2) pixel coordinates; returns (N, 2) float64."""
    p = np.c_[np.asarray(xy, np.float64), np.ones(len(xy))] @ np.asarray(H, np.float64).T
    return p[:, :2] / p[:, 2:3]


def translation(dx: float, dy: float) -> np.ndarray:
    """(3, 3) float64 homography moving every pixel by (dx, dy) (x = column, y = row)."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def frame_corners(shape: tuple[int, int]) -> np.ndarray:
    """(4, 2) float64 pixel centres of the corners of an image of ``shape`` (H, W): top-left,
    top-right, bottom-right, bottom-left (x = column, y = row, 0-based)."""
    h, w = shape
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)


def resize_map(shape_from: tuple[int, int], shape_to: tuple[int, int]) -> np.ndarray:
    """(3, 3) float64 map from pixels of an image of ``shape_from`` (H, W) to pixels of its
    ``cv2.resize`` to ``shape_to`` (x = column, y = row, 0-based).

    ``cv2.resize`` aligns pixel centres (INTER_AREA and INTER_LINEAR alike), so with the exact
    per-axis factors zx, zy a pixel x maps to zx * x + (zx - 1) / 2, not to zx * x: half a
    source pixel apart at a factor of 0.5.
    """
    zx, zy = shape_to[1] / shape_from[1], shape_to[0] / shape_from[0]
    return np.array([[zx, 0.0, (zx - 1) / 2], [0.0, zy, (zy - 1) / 2], [0.0, 0.0, 1.0]])


def transform_scale(H: np.ndarray) -> float:
    """Isotropic scale of a transform's linear part: sqrt(|det|) of the upper-left 2x2 block of
    ``H / H[2, 2]`` (perspective ignored); 0.0 when it is not finite.

    Args:
        H: (3, 3) homography or (2, 3) affine matrix, moving px -> fixed px.
    """
    A = np.asarray(H, np.float64)
    lin = A[:2, :2] / A[2, 2] if A.shape[0] == 3 else A[:2, :2]
    s = float(np.sqrt(abs(np.linalg.det(lin)))) if np.isfinite(lin).all() else 0.0
    return s if np.isfinite(s) else 0.0


def similarity(angle_deg: float, scale: float, center_from: tuple[float, float],
               center_to: tuple[float, float]) -> np.ndarray:
    """3x3 similarity rotating by ``angle_deg`` (counter-clockwise on screen) and scaling by
    ``scale`` about ``center_from`` (x, y), then moving that point to ``center_to``."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    # y points down, so a counter-clockwise on-screen rotation is [c s; -s c]
    R = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    return translation(*center_to) @ R @ translation(-center_from[0], -center_from[1])


def corner_distance(H1: np.ndarray, H2: np.ndarray, shape: tuple[int, int]) -> float:
    """Largest distance, in moving pixels, between where two moving -> fixed transforms place
    the corners of a fixed image of ``shape`` (H, W)."""
    corners = frame_corners(shape)
    a = transfer(np.linalg.inv(H1), corners)
    b = transfer(np.linalg.inv(H2), corners)
    return float(np.abs(a - b).max())
