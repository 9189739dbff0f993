"""The images the pipeline works on, and the exact pixel maps between them.

Working-resolution copies of the inputs (:func:`working_images`), the resizing helpers whose
(3, 3) maps follow ``cv2.resize``'s pixel-centre convention (:func:`downscale`,
:func:`enlarge`), the enlargement of the fixed frame for matching under a shrinking hypothesis
(:func:`match_zoom`), and the map that two georeferencings imply (:func:`georef_homography`).
Coordinates are pixels (x = column, y = row, 0-based).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .checks import InputError
from .config import Config
from .geometry import resize_map, transform_scale
from .io import GrayImage, Raster, full_grid, full_shape, source_map, to_gray


def is_sar(raster: Raster, modality: str) -> bool:
    """Whether ``raster`` is scaled as SAR: always for ``modality`` "opt-sar"; for "auto" when it
    is a float raster with negative valid values (dB)."""
    if modality == "opt-sar":
        return True
    return modality == "auto" and np.issubdtype(raster.data.dtype, np.floating) and bool(
        (raster.data[:, raster.valid] < 0).any())


def _resampled(g: GrayImage, size: tuple[int, int], interpolation: int
               ) -> tuple[GrayImage, np.ndarray]:
    """``g`` resized to ``size`` (w, h) (the image with ``interpolation``, the mask nearest) and
    the (3, 3) float64 map from pixels of ``g`` to pixels of the copy (x = column, y = row;
    :func:`register.geometry.resize_map`: cv2 aligns pixel centres)."""
    Z = resize_map(g.image.shape, (size[1], size[0]))
    img = cv2.resize(g.image, size, interpolation=interpolation)
    m = cv2.resize(g.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return GrayImage(img, m), Z


def downscale(g: GrayImage, f: float) -> tuple[GrayImage, np.ndarray]:
    """``g`` shrunk by ``f`` (area interpolation; unchanged when ``f`` >= 1) and the (3, 3)
    float64 map from its pixels to the copy's (x = column, y = row; exact for ``cv2.resize``,
    see :func:`register.geometry.resize_map`)."""
    if f >= 1.0:
        return g, np.eye(3)
    size = (max(1, int(round(g.image.shape[1] * f))), max(1, int(round(g.image.shape[0] * f))))
    return _resampled(g, size, cv2.INTER_AREA)


def enlarge(g: GrayImage, zoom: float) -> tuple[GrayImage, np.ndarray]:
    """``g`` enlarged ``zoom`` times (bilinear image, nearest mask), and the (3, 3) map from
    pixels of ``g`` to pixels of the enlarged copy (see :func:`_resampled`)."""
    h, w = g.image.shape
    return _resampled(g, (int(round(w * zoom)), int(round(h * zoom))), cv2.INTER_LINEAR)


def match_zoom(H: np.ndarray, shape_moving: tuple[int, int], shape_fixed: tuple[int, int], *,
               min_side: int, max_zoom: float) -> float:
    """Enlargement of the fixed frame for matching under ``H``.

    Keypoints keep a border of 32-37 px (the patch half-size; template plus search window in
    the first pass) from the edge of the footprint, so a footprint whose shorter side,
    min(s * moving side, fixed side), is small holds few of them: when the hypothesis shrinks
    the moving image (scale s < 1; a 256 px image at s = 0.5 keeps about a 50 px square), or
    when the fixed image itself is small (SRIF optical images of 163-198 px kept 11-33
    keypoints). Then the fixed image is enlarged until that side reaches ``min_side`` px, by at
    most ``max_zoom``, rounded down to a tenth so that nearby transforms share one enlarged
    frame. The moving image is resampled into the enlarged frame, so it keeps its own detail;
    until session 9 the enlargement was also capped at 1/s, which left small fixed frames
    (s >= 1) unenlarged (docs/results.md, "Small fixed frames").

    Args:
        H: (3, 3) float64 homography, moving px -> fixed px (x = column, y = row, 0-based); its
            scale s is :func:`register.geometry.transform_scale` (perspective ignored).
        shape_moving, shape_fixed: (H, W) of the two images in the pixels ``H`` uses.
        min_side: footprint side (px) under which the frame is enlarged.
        max_zoom: largest enlargement; 1 disables.

    Returns:
        The enlargement factor, 1.0 when none is needed.
    """
    s = transform_scale(H)
    if max_zoom <= 1.0 or s <= 0:
        return 1.0
    side = min(s * min(shape_moving), min(shape_fixed))
    zoom = math.floor(10 * min(max_zoom, min_side / side)) / 10
    return zoom if zoom >= 1.1 else 1.0


def _apply_affine(t, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a ``rasterio.Affine`` to coordinate arrays."""
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def georef_homography(fixed: Raster, moving: Raster) -> np.ndarray:
    """Moving px -> fixed px from the georeferencing (reprojecting when the CRSs differ), in
    full-resolution px (:func:`register.io.full_shape`: a decimated raster stands for its
    source).

    Raises:
        InputError: the footprints do not overlap, or a georeferencing is degenerate.
    """
    from rasterio.warp import transform as crs_transform

    (f_crs, f_tf), (m_crs, m_tf) = full_grid(fixed), full_grid(moving)
    h, w = full_shape(moving)
    gx, gy = np.meshgrid(np.linspace(0, w, 5), np.linspace(0, h, 5))
    px = np.c_[gx.ravel(), gy.ravel()]
    for r, t in ((fixed, f_tf), (moving, m_tf)):
        if not np.isfinite([t.a, t.b, t.c, t.d, t.e, t.f]).all() or abs(t.determinant) < 1e-300:
            raise InputError(f"{r.path or 'raster'}: its georeferencing is degenerate (affine "
                             f"{tuple(t)[:6]}); fix it, or strip it to register by image "
                             "content alone")
    # pixel (x, y) 0-based centre convention: the affine maps corner coordinates
    X, Y = _apply_affine(m_tf, px[:, 0] + 0.5, px[:, 1] + 0.5)
    try:
        if m_crs != f_crs:
            X, Y = crs_transform(m_crs, f_crs, X, Y)
    except Exception as exc:  # noqa: BLE001 - PROJ/GDAL errors of an impossible reprojection
        raise InputError(f"cannot map {moving.path or 'moving'} ({m_crs}) into the CRS of "
                         f"{fixed.path or 'fixed'} ({f_crs}): {str(exc).splitlines()[0]}; "
                         "check both georeferencings") from None
    fx, fy = _apply_affine(~f_tf, np.asarray(X), np.asarray(Y))
    fxy = np.c_[fx - 0.5, fy - 0.5]
    H = None
    if np.isfinite(fxy).all():
        H, _ = cv2.findHomography(px.astype(np.float64), fxy.astype(np.float64), 0)
    if H is None or not np.isfinite(H).all():
        raise InputError("could not relate the two georeferencings; check both CRSs")
    fh, fw = full_shape(fixed)
    inside = (fxy[:, 0] > -0.5) & (fxy[:, 0] < fw) & (fxy[:, 1] > -0.5) & (fxy[:, 1] < fh)
    xmin, ymin = fxy.min(0)
    xmax, ymax = fxy.max(0)
    if not inside.any() and (xmax < 0 or ymax < 0 or xmin > fw or ymin > fh):
        raise InputError(f"{moving.path or 'moving'} does not overlap {fixed.path or 'fixed'}: "
                         "their georeferenced footprints are disjoint; pick overlapping rasters")
    return H / H[2, 2]


def working_images(fixed: Raster, moving: Raster, cfg: Config
                   ) -> tuple[GrayImage, GrayImage, np.ndarray, np.ndarray]:
    """Both inputs as the pipeline works on them: grayscale (bands, SAR scaling and speckle
    filter per ``cfg``) and downscaled so the longer side is at most ``cfg.frames.work_max_side``.

    Returns:
        (fixed, moving, Sf, Sm): the working images and the (3, 3) float64 maps from full-size
        pixels (of the source, for a raster read decimated) to working pixels (x = column, y = row, 0-based; working fixed px = Sf @ fixed
        px, working moving px = Sm @ moving px). They are exact for ``cv2.resize``, which aligns
        pixel centres: a scale f comes with an offset (f - 1) / 2 (identity when not resized).
    """
    fg = to_gray(fixed, band=cfg.band_fixed)
    mg = to_gray(moving, band=cfg.band_moving, sar=is_sar(moving, cfg.modality),
                 sar_db=cfg.sar_db, speckle_filter=cfg.speckle_filter)
    (fw, Sf), (mw, Sm) = (downscale(g, min(1.0, cfg.frames.work_max_side / max(g.image.shape)))
                          for g in (fg, mg))
    # a decimated raster stands for its full-resolution source (register.io.read_image)
    return fw, mw, Sf @ source_map(fixed), Sm @ source_map(moving)
