"""register.frames: working-resolution images, exact pixel maps, the matching enlargement."""
from __future__ import annotations

import numpy as np

from register.config import Config
from register.geometry import transfer
from register.frames import enlarge, is_sar, match_zoom, working_images
from register.io import GrayImage, Raster


def test_is_sar_for_opt_sar_and_for_float_rasters_in_db():
    db = Raster(np.array([[[-12.0, -3.5], [0.5, -20.0]]], np.float32), np.ones((2, 2), bool))
    linear = Raster(np.array([[[0.1, 0.3], [0.5, 0.2]]], np.float32), np.ones((2, 2), bool))
    assert is_sar(db, "auto") and not is_sar(linear, "auto")
    assert is_sar(linear, "opt-sar") and not is_sar(db, "vis-nir")


def test_match_zoom_enlarges_fixed_frame_only_for_small_footprints():
    small, large = (256, 256), (576, 768)
    half = np.diag([0.5, 0.5, 1.0])
    assert match_zoom(half, small, small, min_side=256, max_zoom=2.0) == 2.0
    assert match_zoom(np.diag([0.8, 0.8, 1.0]), small, small, min_side=256, max_zoom=2.0) == 1.2
    assert match_zoom(np.diag([0.3, 0.3, 1.0]), small, small, min_side=256, max_zoom=2.0) == 2.0
    assert match_zoom(half, large, large, min_side=256, max_zoom=2.0) == 1.0  # 288 px is enough
    assert match_zoom(np.diag([1.5, 1.5, 1.0]), small, small, min_side=256, max_zoom=2.0) == 1.0
    assert match_zoom(half, small, small, min_side=256, max_zoom=1.0) == 1.0  # disabled
    # a small fixed image (SRIF optical, 163 px) is enlarged whatever the scale, up to max_zoom
    tiny = (163, 163)
    for s, zoom in ((1.0, 1.5), (1.5, 1.5), (0.5, 2.0)):
        assert match_zoom(np.diag([s, s, 1.0]), small, tiny, min_side=256, max_zoom=2.0) == zoom
    assert match_zoom(np.eye(3), small, (240, 320), min_side=256, max_zoom=2.0) == 1.0  # 1.07


def test_enlarge_maps_pixels_with_its_matrix():
    """A blob at (x, y) in the image lies at Z @ (x, y) in the enlarged copy (pixel centres,
    not zoom * (x, y)), also for a non-square image and a zoom that does not divide evenly."""
    yy, xx = np.mgrid[0:97, 0:130]
    x0, y0 = 41.3, 57.8
    img = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 18.0).astype(np.float32)
    big, Z = enlarge(GrayImage(img, np.ones_like(img, bool)), 1.7)
    assert big.image.shape == (165, 221) and big.mask.all()
    yb, xb = np.mgrid[0:165, 0:221]
    w = big.image / big.image.sum()
    centroid = np.array([(w * xb).sum(), (w * yb).sum()])
    assert np.allclose(centroid, transfer(Z, np.array([[x0, y0]]))[0], atol=0.05)
    assert not np.allclose(centroid, 1.7 * np.array([x0, y0]), atol=0.2)


def _blob_centroid(img: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    w = img / img.sum()
    return np.array([(w * xx).sum(), (w * yy).sum()])


def test_working_images_map_pixels_with_their_matrices():
    """A blob at (x, y) of a 1500 px wide input lies at Sf @ (x, y) of its 768 px working copy
    (cv2 aligns pixel centres: 0.24 working px from 0.512 * (x, y)); an input already small
    enough is not resampled and maps with the identity."""
    yy, xx = np.mgrid[0:1100, 0:1500]
    x0, y0 = 701.3, 402.7
    blob = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 200.0).astype(np.float32)
    big = Raster(blob[None], np.ones(blob.shape, bool))
    small = Raster(blob[None, 300:800, 400:1000], np.ones((500, 600), bool))
    fw, mw, Sf, Sm = working_images(big, small, Config(modality="vis-nir"))
    assert fw.image.shape == (563, 768) and mw.image.shape == (500, 600)
    at = _blob_centroid(fw.image - fw.image.min())
    assert np.allclose(at, transfer(Sf, np.array([[x0, y0]]))[0], atol=0.03)
    assert not np.allclose(at, 768 / 1500 * np.array([x0, y0]), atol=0.15)
    assert np.array_equal(Sm, np.eye(3))
