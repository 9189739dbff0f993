"""Resampling the moving raster onto the fixed pixel grid, and writing the aligned result.

:func:`warp_raster` resamples every band of the moving raster with bilinear interpolation under a
homography ``H_moving_to_fixed`` (3x3, moving px -> fixed px, x = column, y = row, 0-based) and
keeps the original dtype. Pixels that fall outside the moving footprint, or whose bilinear support
touches an invalid (nodata / NaN) moving pixel, get the nodata value. :func:`write_aligned` writes
the result as a GeoTIFF on the fixed raster's grid (its CRS and transform when it has them).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import cv2
import numpy as np

from .checks import InputError, check_homography
from .io import Raster
from .write import write_raster

#: cv2.warpPerspective handles at most this many channels in one call.
_MAX_CHANNELS = 4
#: A warped validity fraction below this marks the output pixel invalid (conservative: any
#: invalid neighbour with a noticeable bilinear weight invalidates the pixel).
_VALID_THRESHOLD = 0.999


def default_nodata(dtype: np.dtype) -> float:
    """Nodata value used when the raster has none: 0 for unsigned ints, NaN for floats, else the
    dtype minimum."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return float("nan")
    if np.issubdtype(dtype, np.unsignedinteger) or dtype == np.bool_:
        return 0.0
    if np.issubdtype(dtype, np.signedinteger):
        return float(np.iinfo(dtype).min)
    raise InputError(f"raster dtype {dtype}: expected an integer or floating dtype; convert the "
                     "data (e.g. to float32) first")


def _check_nodata(value: float, dtype: np.dtype, name: str) -> float:
    """Return ``value`` as a float after checking that ``dtype`` can hold it exactly."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: nodata must be a number, got {value!r}") from None
    if np.issubdtype(dtype, np.floating):
        return v
    if dtype == np.bool_:
        ok = v in (0.0, 1.0)
    else:
        info = np.iinfo(dtype)
        ok = np.isfinite(v) and v == round(v) and info.min <= v <= info.max
    if not ok:
        raise InputError(f"{name}: nodata {value!r} cannot be stored in the raster's dtype "
                         f"{dtype.name}; give a value the dtype can hold (e.g. "
                         f"{default_nodata(dtype):g}) or convert the data to float32")
    return v


def _check_shape(shape, name: str = "fixed_shape") -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
        ok = h > 0 and w > 0 and (h, w) == tuple(shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"{name}: expected (rows, cols) as two positive integers, got {shape!r}")
    return h, w


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """Floating dtype to interpolate in: float64 where float32 would lose precision."""
    if dtype == np.float64 or (np.issubdtype(dtype, np.integer) and dtype.itemsize >= 4):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Interpolated floats back to ``dtype``: round and clip for integer dtypes."""
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype, copy=False)
    if dtype == np.bool_:
        return values >= 0.5
    info = np.iinfo(dtype)
    return np.clip(np.rint(values), info.min, info.max).astype(dtype)


def warp_valid(valid: np.ndarray, H_moving_to_fixed: np.ndarray,
               fixed_shape: tuple[int, int]) -> np.ndarray:
    """Where a resampling onto the fixed grid has data: (H, W) bool, True where every moving
    pixel that bilinear interpolation draws on is valid (``valid`` (h, w) bool of the moving
    raster; ``H_moving_to_fixed`` (3, 3), moving px -> fixed px, x = column, y = row, 0-based).
    The mask :func:`warp_raster` fills with nodata is its complement."""
    h_out, w_out = fixed_shape
    return cv2.warpPerspective(valid.astype(np.float32), np.linalg.inv(H_moving_to_fixed),
                               (w_out, h_out), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= _VALID_THRESHOLD


def warp_raster(moving: Raster, H_moving_to_fixed: np.ndarray, fixed_shape: tuple[int, int], *,
                nodata: float | None = None) -> tuple[np.ndarray, float | None]:
    """Resample all bands of ``moving`` onto the fixed pixel grid: the ``(data, nodata_used)``
    of :func:`_warp` (see there for the arguments)."""
    data, used, _ = _warp(moving, H_moving_to_fixed, fixed_shape, nodata=nodata)
    return data, used


def _warp(moving: Raster, H_moving_to_fixed: np.ndarray, fixed_shape: tuple[int, int], *,
          nodata: float | None = None) -> tuple[np.ndarray, float | None, np.ndarray]:
    """Resample all bands of ``moving`` onto the fixed pixel grid.

    Args:
        moving: the moving raster; ``moving.data`` is (B, h, w) in any integer or float dtype and
            ``moving.valid`` (h, w) bool marks its valid pixels.
        H_moving_to_fixed: (3, 3) homography mapping a moving pixel to a fixed pixel
            (x = column, y = row, 0-based).
        fixed_shape: (H, W) of the fixed grid.
        nodata: value for pixels without data; None = ``moving.nodata`` when set, else 0 for
            unsigned integers, NaN for floats, the dtype minimum for signed integers.

    Returns:
        ``(data, nodata_used, valid)``: (B, H, W) array in ``moving.data.dtype`` (bilinear;
        rounded and clipped for integer dtypes), the nodata value written outside the moving
        footprint and where the moving raster was invalid, and the (H, W) bool
        :func:`warp_valid` mask of the pixels that have data. Valid pixels that happen to equal
        the nodata value are not altered.

    Raises:
        InputError: bad homography or shape, or a nodata value the dtype cannot hold.
    """
    H = check_homography(H_moving_to_fixed, "H_moving_to_fixed")
    h_out, w_out = _check_shape(fixed_shape)
    data = np.asarray(moving.data)
    if data.ndim != 3:
        raise InputError(f"moving raster: expected data of shape (bands, rows, cols), got "
                         f"{data.shape}")
    if moving.valid.shape != data.shape[1:]:
        raise InputError(f"moving raster: valid mask has shape {moving.valid.shape} but the data "
                         f"is {data.shape}; build the raster with register.io.from_array")
    dtype = data.dtype
    name = moving.path or "moving raster"
    if nodata is None:
        nodata = moving.nodata if moving.nodata is not None else default_nodata(dtype)
    nodata_used = _check_nodata(nodata, dtype, f"{name}")

    # cv2 maps each output pixel through the given matrix when WARP_INVERSE_MAP is set.
    H_fixed_to_moving = np.linalg.inv(H)
    size = (w_out, h_out)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

    valid_out = warp_valid(moving.valid, H, (h_out, w_out))

    work = _work_dtype(dtype)
    invalid_in = ~moving.valid
    fill = np.asarray(nodata_used, dtype=dtype) if not np.isnan(nodata_used) else None
    out = np.empty((data.shape[0], h_out, w_out), dtype)
    for start in range(0, data.shape[0], _MAX_CHANNELS):
        chunk = data[start:start + _MAX_CHANNELS].astype(work)  # (c, h, w), a copy
        # zero invalid input so NaN / nodata values never bleed into valid neighbours
        chunk[:, invalid_in] = 0
        src = np.ascontiguousarray(np.moveaxis(chunk, 0, -1))  # (h, w, c)
        res = cv2.warpPerspective(src, H_fixed_to_moving, size, flags=flags,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        res = res.reshape(h_out, w_out, -1)
        out[start:start + chunk.shape[0]] = _cast(np.moveaxis(res, -1, 0), dtype)
    out[:, ~valid_out] = fill if fill is not None else np.nan
    return out, nodata_used, valid_out


def write_aligned(dest: str | os.PathLike, moving: Raster, H_moving_to_fixed: np.ndarray,
                  fixed: Raster, *, nodata: float | None = None, progress=None) -> None:
    """Warp ``moving`` onto ``fixed``'s grid and write it as a GeoTIFF, atomically.

    The output has ``fixed.shape``, all bands and the dtype of ``moving`` with its band metadata
    (colour interpretation, descriptions, scales, offsets), and the fixed raster's CRS and
    transform when ``fixed.georeferenced`` (none otherwise). Pixels without data are marked as
    :func:`fill_rule` says. Rasters read decimated (:attr:`Raster.source`) are written at
    full resolution from their files by :func:`write_aligned_blocks`.

    Args:
        dest: output path (.tif).
        moving: the moving raster.
        H_moving_to_fixed: (3, 3) homography, moving px -> fixed px (full resolution).
        fixed: the fixed raster (only its shape and georeferencing are used).
        nodata: as in :func:`warp_raster`.
        progress: for :func:`write_aligned_blocks`.
    """
    from .io import full_grid, full_shape

    if moving.source is not None or fixed.source is not None:
        src = moving.source
        crs, tf = full_grid(fixed)
        return write_aligned_blocks(dest, src.path if src else moving.path, H_moving_to_fixed,
                                    shape=full_shape(fixed), crs=crs, transform=tf,
                                    moving_window=src.window if src else None, nodata=nodata,
                                    progress=progress)
    masked, fill = fill_rule(moving.nodata, moving.data.dtype, nodata)
    data, used, valid = _warp(moving, H_moving_to_fixed, fixed.shape, nodata=fill)
    geo = fixed.georeferenced
    write_raster(dest, data, crs=fixed.crs if geo else None,
                 transform=fixed.transform if geo else None, nodata=None if masked else used,
                 mask=valid if masked else None, bands=moving.bands)


def fill_rule(declared: float | None, dtype, nodata: float | None = None
              ) -> tuple[bool, float | None]:
    """How an aligned raster marks pixels without data: ``(masked, fill)``. An integer raster
    that declares no nodata value (and none is asked for) gets an internal mask band and 0
    under it (``masked``), so that no valid value (e.g. a real 0) is taken to mean "no
    data"; otherwise ``fill`` is the nodata value asked for, else the declared one, else None
    (:func:`warp_raster`'s default: NaN for floats)."""
    if nodata is None and declared is None and not np.issubdtype(np.dtype(dtype), np.floating):
        return True, 0
    return False, nodata if nodata is not None else declared


#: output block side of :func:`write_aligned_blocks`, px
BLOCK = 1024


def write_aligned_blocks(dest: str | os.PathLike, moving_path: str, H: np.ndarray, *,
                         shape: tuple[int, int], crs=None, transform=None,
                         moving_window: tuple[int, int, int, int] | None = None,
                         nodata: float | None = None, block: int = BLOCK,
                         progress=None) -> None:
    """The moving file resampled onto an output grid and written as a GeoTIFF, atomically, with
    bounded memory: one ``block`` x ``block`` output block at a time, each from the window of
    the file it needs. Band metadata and the nodata rule are :func:`write_aligned`'s.

    Args:
        dest: output path (.tif).
        moving_path: the moving raster's file.
        H: (3, 3) homography from px of the moving file (or of ``moving_window`` in it:
            col_off, row_off, width, height) to px of the output grid.
        shape: (H, W) of the output grid; ``crs`` / ``transform`` its georeferencing (or None).
        nodata: as in :func:`warp_raster`.
        progress: called with the fraction written after each block (optional).
    """
    import rasterio
    from rasterio.windows import Window

    from .io import band_metadata

    H = check_homography(H, "H")
    with rasterio.open(moving_path) as src:
        dtype, count, declared, bands = np.dtype(src.dtypes[0]), src.count, src.nodata, \
            band_metadata(src)
        wm, hm = (src.width, src.height) if moving_window is None else moving_window[2:]
    off = (0, 0) if moving_window is None else moving_window[:2]
    masked, fill = fill_rule(declared, dtype, nodata)
    fill = default_nodata(dtype) if fill is None else fill
    h_out, w_out = shape
    n_blocks = -(-h_out // block) * -(-w_out // block)
    with _block_writer(dest, (count, h_out, w_out), dtype, crs, transform,
                       None if masked else fill, bands) as dst:
        for k, (r, c) in enumerate((r, c) for r in range(0, h_out, block)
                                   for c in range(0, w_out, block)):
            win = Window(c, r, min(block, w_out - c), min(block, h_out - r))
            data, valid = _warp_block(moving_path, off, H, win, (hm, wm), count, dtype, fill)
            dst.write(data, window=win)
            if masked:
                dst.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=win)
            if progress is not None:
                progress((k + 1) / n_blocks)


def _warp_block(path: str, off: tuple[int, int], H: np.ndarray, win, moving_shape: tuple,
                count: int, dtype, fill) -> tuple[np.ndarray, np.ndarray]:
    """(data (count, h, w), valid (h, w)) of one output window ``win``: the window of the
    moving file under it (``off``: the offset of the moving window in the file), warped."""
    from .geometry import transfer, translation
    from rasterio.windows import Window

    c, r, bw, bh = int(win.col_off), int(win.row_off), int(win.width), int(win.height)
    hm, wm = moving_shape
    corners = np.array([[c, r], [c + bw - 1, r], [c, r + bh - 1], [c + bw - 1, r + bh - 1]],
                       np.float64)
    with np.errstate(all="ignore"):
        q = transfer(np.linalg.inv(H), corners)
    if not np.isfinite(q).all():
        q = np.array([[0.0, 0.0], [wm, hm]])
    x0, y0 = (int(max(0, v)) for v in np.floor(q.min(0)) - 2)
    x1, y1 = int(min(wm, np.ceil(q[:, 0].max()) + 3)), int(min(hm, np.ceil(q[:, 1].max()) + 3))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.full((count, bh, bw), fill, dtype), np.zeros((bh, bw), bool)
    part = _read_part(path, Window(off[0] + x0, off[1] + y0, x1 - x0, y1 - y0))
    data, _, valid = _warp(part, translation(-c, -r) @ H @ translation(x0, y0), (bh, bw),
                           nodata=fill)
    return data, valid


def _read_part(path: str, window) -> Raster:
    """A window of a file as a :class:`Raster`, without the 64 px minimum of whole images."""
    import rasterio

    from .io import from_array

    with rasterio.open(path) as src:
        data = src.read(window=window)
        nodata = src.nodata
    pad = [(0, 0), (0, max(0, 64 - data.shape[1])), (0, max(0, 64 - data.shape[2]))]
    padded = np.pad(data, pad)
    mask = np.zeros(padded.shape[1:], bool)
    mask[:data.shape[1], :data.shape[2]] = True
    return from_array(padded, nodata=nodata, mask=mask, path=path)


@contextmanager
def _block_writer(dest, shape: tuple[int, int, int], dtype, crs, transform, nodata, bands):
    """An open, tiled GeoTIFF at a temporary path beside ``dest``, renamed to it on success."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from .write import atomic_path, write_band_metadata

    b, h, w = shape
    profile = {"driver": "GTiff", "height": h, "width": w, "count": b, "dtype": np.dtype(dtype).name,
               "compress": "deflate", "alpha": "UNSPECIFIED", "tiled": True, "blockxsize": 256,
               "blockysize": 256, "BIGTIFF": "IF_SAFER"}
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with atomic_path(dest) as tmp, warnings.catch_warnings(), \
            rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            write_band_metadata(dst, bands or {})
            yield dst
