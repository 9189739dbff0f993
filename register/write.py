"""Writing files all or nothing: JSON documents and GeoTIFF rasters with their georeferencing,
mask and band metadata.

Every writer goes through :func:`atomic_path`: a temporary file in the destination folder,
renamed over the destination only when it is complete, so an interrupted or failed run leaves
no half-written output.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

try:
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.errors import NotGeoreferencedWarning
except ImportError:  # the GPU training recipe runs where GDAL is not installed
    rasterio = None


@contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it to ``dest``, else delete it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(dest: str | os.PathLike, doc: Any) -> None:
    """Write ``doc`` as indented JSON, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")


def write_raster(dest: str | os.PathLike, data: np.ndarray, *, crs: Any = None,
                 transform: Any = None, nodata: float | None = None,
                 mask: np.ndarray | None = None, bands: dict | None = None) -> None:
    """Write a (B, H, W) array as a tiled, deflate-compressed GeoTIFF, atomically.

    Args:
        mask: (H, W) bool, True = valid, written as GDAL's internal per-dataset mask band
            (for data that declares no nodata value: no valid value is given up to mark the
            invalid pixels).
        bands: per-band metadata as :attr:`Raster.bands` holds it, copied when it has one
            entry per band.
    """
    b, h, w = data.shape
    profile = {"driver": "GTiff", "height": h, "width": w, "count": b, "dtype": data.dtype.name,
               "compress": "deflate", "alpha": "UNSPECIFIED"}
    if h >= 256 and w >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    with atomic_path(dest) as tmp:
        with warnings.catch_warnings(), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(data)
                write_band_metadata(dst, bands or {})
                if mask is not None:
                    dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))


def write_band_metadata(dst, bands: dict) -> None:
    """Colour interpretation, descriptions, scales and offsets of :attr:`Raster.bands`, where
    they have one entry per band of ``dst``."""
    n = dst.count
    ci = bands.get("colorinterp") or ()
    if len(ci) == n:
        dst.colorinterp = [ColorInterp[c] for c in ci]
    for i, d in enumerate(bands.get("descriptions") or ()):
        if d and len(bands["descriptions"]) == n:
            dst.set_band_description(i + 1, d)
    if len(bands.get("scales") or ()) == n:
        dst.scales = bands["scales"]
    if len(bands.get("offsets") or ()) == n:
        dst.offsets = bands["offsets"]
