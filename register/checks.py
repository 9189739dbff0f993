"""Checks at stage boundaries, and the errors they raise.

:class:`InputError` is bad input or usage (the CLI exits 2 with its one-line message);
:class:`RegistrationFailed` is a registration that ran but found no trustworthy transform
(the CLI writes ``report.json`` with the reason and exits 1).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


class InputError(ValueError):
    """Bad input or usage. The message says what was expected, what came, and the fix."""


class RegistrationFailed(RuntimeError):
    """Registration ran but gives no trustworthy transform; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_points(xy: np.ndarray, name: str = "points") -> np.ndarray:
    """Return ``xy`` as a C-contiguous (N, 2) float32 array of pixel coordinates.

    Raises:
        InputError: wrong shape or non-finite values.
    """
    arr = np.asarray(xy)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"{name}: expected an (N, 2) array of (x, y) pixels, got shape "
                         f"{arr.shape}")
    arr = np.ascontiguousarray(arr, np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: contains NaN or infinite coordinates")
    return arr


def check_homography(H: np.ndarray, name: str = "homography") -> np.ndarray:
    """Return ``H`` as a (3, 3) float64 array normalised to ``H[2, 2] == 1``.

    Raises:
        InputError: wrong shape, non-finite values, or singular matrix.
    """
    arr = np.asarray(H, np.float64)
    if arr.shape != (3, 3):
        raise InputError(f"{name}: expected a 3x3 matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all() or abs(arr[2, 2]) < 1e-12:
        raise InputError(f"{name}: not a finite, normalisable homography")
    arr = arr / arr[2, 2]
    if abs(np.linalg.det(arr)) < 1e-12:
        raise InputError(f"{name}: singular homography")
    return arr


def check_output_dir(path: str | os.PathLike, option: str = "--out-dir") -> Path:
    """Check, before any work, that outputs can be written into the folder ``path``.

    The folder itself need not exist yet; the nearest existing folder above it must be
    writable, which is tried by creating and removing a temporary file there (permission bits
    alone say nothing for root or on read-only file systems). Nothing is left behind.

    Raises:
        InputError: ``path`` or a parent is a file, or the folder cannot be written.
    """
    out = Path(path)
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == out else f"lies under the file {probe}"
        raise InputError(f"{option} {out} {what}; give a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".register-write-test.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"{option} {out}: cannot write into {probe} ({exc.strerror}); choose a "
                         "folder you can write to") from None
    return out
