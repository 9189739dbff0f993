"""Reading rasters and turning them into normalised single-band images.

Anything rasterio/GDAL reads is accepted (GeoTIFF, PNG, JPEG; 8/16-bit, float, multi-band).
CRS, affine transform and nodata are kept; nodata and NaN pixels are masked. Writing is
:mod:`register.write`'s.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .checks import InputError

try:
    import rasterio
    from affine import Affine
    from rasterio.enums import MaskFlags, Resampling
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.windows import Window
except ImportError:  # the GPU training recipe runs where GDAL is not installed (_read_plain)
    rasterio = None


#: Inputs whose longer side exceeds this are read decimated to it (GDAL average) by the command
#: line and by paths handed to the API, so memory stays bounded whatever the scene size; the
#: pipeline works at most at 768 px, and ``aligned.tif`` is written at full resolution block by
#: block (:func:`register.warp.write_aligned_blocks`).
READ_MAX_SIDE = 4096


@dataclass(frozen=True)
class Raster:
    """A raster as read from disk.

    Attributes:
        data: (B, H, W) array in the file's dtype.
        valid: (H, W) bool, False at nodata / NaN in any band.
        crs: rasterio CRS or None when the file has no georeferencing.
        transform: affine pixel -> CRS transform (``rasterio.Affine``) or None.
        nodata: the file's nodata value or None.
        path: where it came from ("" for in-memory rasters).
        bands: per-band metadata to carry into outputs, each a tuple with one entry per band:
            ``colorinterp`` (GDAL colour interpretation names), ``descriptions``, ``scales``,
            ``offsets``; empty for in-memory rasters.
        source: for a raster read decimated (:func:`read_image` with ``max_side``), the
            full-resolution pixels it stands for; None when ``data`` is full resolution.
    """

    data: np.ndarray
    valid: np.ndarray
    crs: Any = None
    transform: Any = None
    nodata: float | None = None
    path: str = ""
    bands: dict = field(default_factory=dict)
    source: "Source | None" = None

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and self.transform is not None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.data.shape[1]), int(self.data.shape[2])


@dataclass(frozen=True)
class Source:
    """The full-resolution raster a decimated :class:`Raster` was read from: its file, the
    window read (None: all of it), its (H, W) and its georeferencing (the window's)."""

    path: str
    window: tuple[int, int, int, int] | None  # col_off, row_off, width, height
    shape: tuple[int, int]
    crs: Any = None
    transform: Any = None


def full_shape(raster: Raster) -> tuple[int, int]:
    """(H, W) of the full-resolution pixels a raster stands for."""
    return raster.source.shape if raster.source is not None else raster.shape


def full_grid(raster: Raster) -> tuple[Any, Any]:
    """(crs, transform) of the full-resolution pixels a raster stands for (None, None when it
    is not georeferenced)."""
    if not raster.georeferenced:
        return None, None
    src = raster.source
    return (src.crs, src.transform) if src is not None else (raster.crs, raster.transform)


def source_map(raster: Raster) -> np.ndarray:
    """(3, 3) float64 map from full-resolution px to ``raster``'s px (x = column, y = row,
    0-based centres): the identity, or the exact centre-aligned map of a decimated read."""
    if raster.source is None:
        return np.eye(3)
    from .geometry import resize_map

    return resize_map(raster.source.shape, raster.shape)


@dataclass(frozen=True)
class GrayImage:
    """Single-band image ready for the pipeline.

    Attributes:
        image: (H, W) float32 in [0, 1].
        mask: (H, W) bool, True where valid.
    """

    image: np.ndarray
    mask: np.ndarray


def read_image(path: str | os.PathLike, *, window: Window | None = None,
               max_side: int | None = None) -> Raster:
    """Read a raster (all bands) with its georeferencing.

    Args:
        path: file rasterio can open.
        window: optional ``rasterio.windows.Window`` to read only part of it.
        max_side: when the longer side (of the window) exceeds it, read the raster decimated
            to that side by GDAL's average resampling, never holding the full resolution in
            memory; :attr:`Raster.source` then describes the full-resolution pixels and
            :func:`source_map` maps them to the decimated ones.

    Raises:
        InputError: missing or unreadable file, or fewer than 64 pixels on a side.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file; check the path")
    if rasterio is None:
        return _read_plain(p, window=window, max_side=max_side)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            src = rasterio.open(p)
        except RasterioIOError as exc:
            raise InputError(f"{p}: not a readable raster ({str(exc).splitlines()[0]}); "
                             "give a GeoTIFF, PNG or JPEG file") from None
        with src:
            win = window if window is not None else Window(0, 0, src.width, src.height)
            h, w = int(win.height), int(win.width)
            out_shape = None
            if max_side is not None and max(h, w) > max_side:
                f = max_side / max(h, w)
                out_shape = (max(1, round(h * f)), max(1, round(w * f)))
            try:
                data = src.read(window=window, out_shape=None if out_shape is None else
                                (src.count,) + out_shape, resampling=Resampling.average)
            except RasterioIOError:
                raise InputError(f"{p}: the file is truncated or corrupt: its header reads "
                                 f"({src.width}x{src.height} px, {src.count} band(s)) but its "
                                 "pixels do not; copy or export it again") from None
            nodata = src.nodata
            tf = src.window_transform(window) if window is not None else src.transform
            crs = src.crs
            georef = crs is not None and not tf.is_identity
            source = None
            if out_shape is not None:
                source = Source(str(p), None if window is None else (
                    int(win.col_off), int(win.row_off), w, h), (h, w), crs if georef else None,
                    tf if georef else None)
                tf = tf * Affine.scale(w / out_shape[1], h / out_shape[0])
            # a per-dataset mask (e.g. an aligned.tif written without a nodata value) marks
            # invalid pixels as well as nodata does
            per_dataset = any(MaskFlags.per_dataset in fl for fl in src.mask_flag_enums)
            mask = src.dataset_mask(window=window, out_shape=out_shape) > 0 if per_dataset \
                else None
            bands = band_metadata(src)
    raster = from_array(data, crs=crs if georef else None, transform=tf if georef else None,
                        nodata=nodata, path=str(p), mask=mask)
    return replace(raster, bands=bands, source=source)


def _read_plain(p: Path, *, window=None, max_side: int | None = None) -> Raster:
    """Read a PNG or JPEG (Pillow) or a TIFF (OpenCV) without rasterio (the GPU training
    recipe): all bands, no georeferencing, nodata or band metadata. Pixels equal rasterio's
    except in colour JPEGs, 0.26 grey levels apart on average (``tests/test_io.py``)."""
    if window is not None or max_side is not None:
        raise InputError(f"{p}: windowed or decimated reads need rasterio; install it "
                         "(pip install -r requirements.txt)")
    data = None
    if p.suffix.lower() not in (".tif", ".tiff"):
        from PIL import Image

        try:
            with Image.open(p) as im:
                data = np.asarray(im)
        except OSError:
            pass
    else:
        data = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if data is not None and data.ndim == 3 and data.shape[2] in (3, 4):  # BGR(A) -> RGB(A)
            data = data[..., [2, 1, 0, 3][:data.shape[2]]]
    if data is None:
        raise InputError(f"{p}: not a readable raster (rasterio is not installed); give a PNG, "
                         "JPEG or TIFF file, or install rasterio")
    if data.ndim == 3:
        data = data.transpose(2, 0, 1)
    return from_array(np.ascontiguousarray(data), path=str(p))


def from_array(data: np.ndarray, *, crs: Any = None, transform: Any = None,
               nodata: float | None = None, path: str = "",
               mask: np.ndarray | None = None) -> Raster:
    """Wrap an (H, W) or (B, H, W) array as a :class:`Raster`, computing the validity mask
    from ``nodata``, non-finite values and ``mask`` ((H, W) bool, True = valid; optional)."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"{path or 'array'}: expected a (bands, rows, cols) image, got shape "
                         f"{arr.shape}")
    valid = np.ones(arr.shape[1:], bool)
    if nodata is not None and not np.isnan(nodata):
        if np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            # a nodata value the dtype cannot hold flags no pixel (no wrap-around, no truncation)
            if float(nodata).is_integer() and info.min <= nodata <= info.max:
                valid &= ~(arr == int(nodata)).any(0)
        else:
            valid &= ~(arr == np.asarray(nodata, arr.dtype)).any(0)
    if np.issubdtype(arr.dtype, np.floating):
        valid &= np.isfinite(arr).all(0)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    h, w = arr.shape[1:]
    if min(h, w) < 64:
        raise InputError(f"{path or 'array'}: image is {w}x{h} px; both sides must be at least "
                         "64 px (the patch size)")
    return Raster(arr, valid, crs, transform, nodata, path)


def border_fill(raster: Raster, *, min_fraction: float = 0.005) -> np.ndarray:
    """Black fill around a rotated or warped scene that the file does not flag as nodata.

    Integer rasters whose bands are all near zero (<= 2 for 8-bit, 0 otherwise) in regions that
    touch the image border and cover at least ``min_fraction`` of it: (H, W) bool, True = fill.
    Float rasters are left alone (zero is a valid value there).
    """
    d = raster.data
    fill = np.zeros(d.shape[1:], bool)
    if not np.issubdtype(d.dtype, np.integer):
        return fill
    dark = (d <= (2 if d.dtype.itemsize == 1 else 0)).all(0).astype(np.uint8)
    if not dark.any():
        return fill
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
    h, w = dark.shape
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        if touches and area >= min_fraction * h * w:
            fill |= labels == i
    if fill.any():  # JPEG ringing along the fill edge
        fill = cv2.dilate(fill.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return fill


def to_gray(raster: Raster, *, band: int | None = None, sar: bool = False,
            sar_db: bool | None = None, speckle_filter: bool = False,
            mask_fill: bool = True) -> GrayImage:
    """Pick one band and scale it robustly to [0, 1].

    Args:
        raster: the input.
        band: 1-based band to use; None = luminance of the first three bands when there are 3 or
            4 (RGB / RGBA / RGB+NIR), else band 1.
        sar: treat as SAR backscatter: float data in linear units is log-scaled (dB), with the
            0.5th percentile of positive values as floor; optional median filter.
        sar_db: the SAR values are already in dB (or display-scaled); None = guess: integer
            data and float data with negative values count as such.
        speckle_filter: 3x3 median filter before scaling (SAR only).
        mask_fill: also mask black fill around the scene (:func:`border_fill`).

    Raises:
        InputError: band out of range, or no valid pixel / a constant image.
    """
    nb = raster.data.shape[0]
    name = raster.path or "image"
    if band is not None and not 1 <= band <= nb:
        raise InputError(f"{name}: band {band} requested but the file has {nb} band(s); "
                         f"use --band between 1 and {nb}")
    valid = raster.valid.copy()
    if not valid.any():
        raise InputError(f"{name}: every pixel is nodata; check the file or its nodata value")
    if mask_fill:
        fill = border_fill(raster)
        if (valid & ~fill).any():
            valid &= ~fill
    if band is None and nb in (3, 4):
        rgb = raster.data[:3].astype(np.float32)
        img = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    else:
        img = raster.data[(band or 1) - 1].astype(np.float32)
    if sar:
        # float data is calibrated backscatter: linear unless it is already dB; integer data is
        # already display-scaled (8/16-bit amplitude products), so it is not log-scaled again
        floating = np.issubdtype(raster.data.dtype, np.floating)
        is_db = sar_db if sar_db is not None else (not floating or bool((img[valid] < 0).any()))
        if not is_db:
            pos = valid & (img > 0)
            floor = float(np.percentile(img[pos], 0.5)) if pos.any() else 1e-6
            img = 10.0 * np.log10(np.maximum(img, floor))
        if speckle_filter:
            img = cv2.medianBlur(img.astype(np.float32), 3)
    vals = img[valid]
    lo, hi = np.percentile(vals, [0.5, 99.5])
    if not np.isfinite(hi - lo) or hi - lo <= 1e-12 * max(1.0, abs(hi)):
        raise InputError(f"{name}: the image is constant over its valid pixels; nothing to "
                         "register (check the band or the nodata value)")
    out = np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32)
    out[~valid] = 0
    return GrayImage(out, valid)


def band_metadata(src) -> dict:
    """:attr:`Raster.bands` of an open rasterio dataset."""
    return {"colorinterp": tuple(c.name for c in src.colorinterp),
            "descriptions": tuple(src.descriptions), "scales": tuple(src.scales),
            "offsets": tuple(src.offsets)}
