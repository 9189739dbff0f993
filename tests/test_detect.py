"""register.detect on real images of the shared data."""
from __future__ import annotations

import numpy as np
import pytest

from register.detect import detect
from register.io import read_image, to_gray


@pytest.fixture(scope="module")
def opt_sar(data_root):
    return to_gray(read_image(data_root / "mifnet_examples" / "opt_sar_1.png"))


@pytest.fixture(scope="module")
def srif_optical(data_root):
    return to_gray(read_image(data_root / "srif_multimodal" / "optical_infrared" / "pair151_1.jpg"))


@pytest.mark.parametrize("max_kp", [16, 96, 300])
def test_detect_count_and_border(opt_sar, max_kp):
    h, w = opt_sar.image.shape
    border = 32
    kp = detect(opt_sar.image, opt_sar.mask, max_keypoints=max_kp, border=border)
    assert 0.8 * max_kp <= len(kp) <= max_kp  # a textured 512 px image fills the budget
    assert kp.xy.dtype == np.float32 and kp.xy.shape == (len(kp), 2)
    x, y = kp.xy[:, 0], kp.xy[:, 1]
    assert (x >= border).all() and (x < w - border).all()
    assert (y >= border).all() and (y < h - border).all()
    assert (np.diff(kp.score) <= 0).all() and (kp.score > 0).all()  # sorted by decreasing score


def test_detect_avoids_masked_region(opt_sar):
    mask = opt_sar.mask.copy()
    x0, x1, y0, y1 = 150, 350, 200, 330
    mask[y0:y1, x0:x1] = False
    border = 32
    kp = detect(opt_sar.image, mask, max_keypoints=200, border=border)
    assert len(kp) > 100
    x, y = kp.xy[:, 0], kp.xy[:, 1]
    # the square of half-side `border` around each point must be fully valid
    near = (x > x0 - border - 1) & (x < x1 + border) & (y > y0 - border - 1) & (y < y1 + border)
    assert not near.any()
    # unmasked, the same detector does put points there
    kp_all = detect(opt_sar.image, opt_sar.mask, max_keypoints=200, border=border)
    xa, ya = kp_all.xy[:, 0], kp_all.xy[:, 1]
    assert ((xa >= x0) & (xa < x1) & (ya >= y0) & (ya < y1)).sum() >= 5


@pytest.mark.parametrize("nms_radius", [4, 8, 12])
def test_detect_min_distance(srif_optical, nms_radius):
    kp = detect(srif_optical.image, srif_optical.mask, max_keypoints=300, nms_radius=nms_radius)
    assert len(kp) > 20
    d = np.linalg.norm(kp.xy[:, None] - kp.xy[None], axis=2)
    d[np.arange(len(kp)), np.arange(len(kp))] = np.inf
    assert d.min() >= nms_radius - 1


@pytest.mark.parametrize("image", ["opt_sar", "srif_optical"])
def test_detect_spread_over_grid(image, request):
    g = request.getfixturevalue(image)
    h, w = g.image.shape
    border = 32
    kp = detect(g.image, g.mask, max_keypoints=96, border=border)
    # 4x4 grid over the allowed area (inside the border)
    cx = np.clip(((kp.xy[:, 0] - border) / (w - 2 * border) * 4).astype(int), 0, 3)
    cy = np.clip(((kp.xy[:, 1] - border) / (h - 2 * border) * 4).astype(int), 0, 3)
    occupied = len(set(zip(cx.tolist(), cy.tolist())))
    assert occupied >= 14, f"keypoints occupy only {occupied}/16 grid cells"
    # no cell hoards the points: at most a quarter of them in one cell
    counts = np.bincount(cy * 4 + cx, minlength=16)
    assert counts.max() <= len(kp) // 4


def test_detect_empty_mask_gives_no_keypoints(opt_sar):
    kp = detect(opt_sar.image, np.zeros_like(opt_sar.mask), max_keypoints=100)
    assert len(kp) == 0 and kp.xy.shape == (0, 2) and kp.score.shape == (0,)


def test_detect_zero_budget(opt_sar):
    assert len(detect(opt_sar.image, opt_sar.mask, max_keypoints=0)) == 0
