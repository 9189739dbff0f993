"""register.search: coarse rotation/scale hypotheses on real image pairs."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from register.config import Config
from register.estimate import transfer
from register.io import read_image, to_gray
from register.search import (N_ORIENTATIONS, coarse_hypotheses, corner_distance,
                             keypoint_hypothesis, keypoint_support, oriented_gradient_channels,
                             similarity)


def test_coarse_hypotheses_srif_optical_infrared(data_root, srif_opt_ir_pair, corner_error):
    p = srif_opt_ir_pair
    f = to_gray(read_image(data_root / p.fixed))
    m = to_gray(read_image(data_root / p.moving))
    cfg = Config()
    assert max(f.image.shape) <= cfg.work_max_side  # 256 px: working scale = full scale
    hyps = coarse_hypotheses(f.image, f.mask, m.image, m.mask, cfg)
    assert 1 <= len(hyps) <= cfg.search_top_k
    errs = [corner_error(h.H, p.H_array, m.image.shape) for h in hyps]
    assert errs[0] < 10.0, f"first hypothesis not within 10 px of the ground truth: {errs}"
    for h in hyps:
        assert h.H.shape == (3, 3) and h.H[2, 2] == pytest.approx(1.0)
        assert 0.0 <= h.angle_deg < 360.0 and h.scale > 0


@pytest.fixture(scope="module")
def nir_small(data_root):
    g = to_gray(read_image(data_root / "mifnet_examples" / "opt_nir_1.png"))
    img = cv2.resize(g.image, (256, 256), interpolation=cv2.INTER_AREA)
    return img


def test_coarse_hypotheses_recovers_rotation_120_scale_07(nir_small, corner_error):
    fixed = nir_small
    h, w = fixed.shape
    angle, scale = 120.0, 0.7
    # fixed -> moving: rotate 120 deg counter-clockwise (cv2 convention) and shrink to 0.7
    M = np.vstack([cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale), [0, 0, 1]])
    moving = cv2.warpAffine(1.0 - fixed, M[:2], (w, h), flags=cv2.INTER_LINEAR)  # contrast reversed
    mmask = cv2.warpAffine(np.ones((h, w), np.uint8), M[:2], (w, h),
                           flags=cv2.INTER_NEAREST).astype(bool)
    H_gt = np.linalg.inv(M)  # moving -> fixed
    hyps = coarse_hypotheses(fixed, np.ones((h, w), bool), moving, mmask, Config())
    errs = [corner_error(hy.H, H_gt, moving.shape) for hy in hyps]
    best = int(np.argmin(errs))
    assert errs[best] < 10.0, f"no hypothesis within 10 px: {errs}"
    # moving -> fixed undoes the rotation: 360 - 120 = 240 deg, scale 1 / 0.7
    d_angle = (hyps[best].angle_deg - (360.0 - angle) + 180.0) % 360.0 - 180.0
    assert abs(d_angle) < 5.0
    assert hyps[best].scale == pytest.approx(1 / scale, rel=0.08)


def test_similarity_matches_opencv_and_composes():
    c = (40.0, 25.0)
    S = similarity(30.0, 1.5, c, c)
    ref = cv2.getRotationMatrix2D(c, 30.0, 1.5)  # counter-clockwise on screen, about c
    np.testing.assert_allclose(S[:2], ref, atol=1e-12)
    np.testing.assert_allclose(S[2], [0, 0, 1])
    # counter-clockwise on screen (y down): the point right of the centre goes up
    R = similarity(90.0, 1.0, (0.0, 0.0), (0.0, 0.0))
    np.testing.assert_allclose(transfer(R, np.array([[1.0, 0.0]])), [[0.0, -1.0]], atol=1e-12)
    # centre_from goes to centre_to; distances from it scale by `scale`
    T = similarity(-47.0, 0.6, (10.0, 20.0), (100.0, -5.0))
    np.testing.assert_allclose(transfer(T, np.array([[10.0, 20.0]])), [[100.0, -5.0]], atol=1e-9)
    q = transfer(T, np.array([[13.0, 24.0]]))[0] - [100.0, -5.0]
    assert np.linalg.norm(q) == pytest.approx(0.6 * 5.0)
    # same centre: angles add and scales multiply
    A = similarity(50.0, 1.2, c, c) @ similarity(-80.0, 0.5, c, c)
    np.testing.assert_allclose(A, similarity(-30.0, 0.6, c, c), atol=1e-12)
    # inverse
    np.testing.assert_allclose(np.linalg.inv(S), similarity(-30.0, 1 / 1.5, c, c), atol=1e-12)
    assert math.isclose(np.linalg.det(S[:2, :2]), 1.5 ** 2)


def test_oriented_gradient_channels_shape_and_mask(nir_small):
    img = nir_small
    mask = np.ones(img.shape, bool)
    mask[50:120, 30:200] = False
    ch = oriented_gradient_channels(img, mask)
    assert ch.shape == (N_ORIENTATIONS,) + img.shape and ch.dtype == np.float32
    assert (ch[:, ~mask] == 0).all()
    # zero mean per channel over the valid pixels, and not all zero there
    np.testing.assert_allclose(ch[:, mask].mean(1), 0.0, atol=1e-5)
    assert (ch[:, mask].std(1) > 1e-3).all()
    no_mask = oriented_gradient_channels(img)
    np.testing.assert_allclose(no_mask.mean((1, 2)), 0.0, atol=1e-5)


def test_oriented_gradient_channels_contrast_invariant(nir_small):
    # unsigned orientations: a contrast reversal (as between optical and SAR/thermal) gives the
    # same channels
    a = oriented_gradient_channels(nir_small)
    b = oriented_gradient_channels(1.0 - nir_small)
    np.testing.assert_allclose(a, b, atol=1e-4)
    # a 90 degree rotation moves the energy to the channel 90 degrees away
    r = oriented_gradient_channels(np.ascontiguousarray(np.rot90(nir_small)))
    assert not np.allclose(np.rot90(a, axes=(1, 2)), r, atol=1e-3)
    shift = N_ORIENTATIONS // 2
    np.testing.assert_allclose(np.rot90(a, axes=(1, 2)), np.roll(r, shift, axis=0), atol=0.05)


def test_verify_alignment_confirms_truth_and_rejects_wrong_transform(data_root, srif_opt_ir_pair):
    """The global check peaks at zero shift for the true transform, not for a rotated one."""
    from register.search import similarity, verify_alignment

    pair = srif_opt_ir_pair
    f = to_gray(read_image(data_root / pair.fixed))
    m = to_gray(read_image(data_root / pair.moving))
    ok = verify_alignment(f.image, f.mask, m.image, m.mask, pair.H_array, 320)
    z_ok, shift_ok = ok.z, ok.shift
    h, w = f.image.shape
    c = ((w - 1) / 2, (h - 1) / 2)
    wrong = similarity(25.0, 1.0, c, c) @ pair.H_array
    bad = verify_alignment(f.image, f.mask, m.image, m.mask, wrong, 320)
    z_bad, shift_bad = bad.z, bad.shift
    cfg = Config()
    assert z_ok >= cfg.verify_min_z and shift_ok <= cfg.verify_max_shift
    assert z_bad < cfg.verify_min_z or shift_bad > cfg.verify_max_shift
    assert z_ok > z_bad + 5


def test_verify_alignment_offset_undoes_a_shift(data_root, srif_opt_ir_pair):
    """A transform moved by a few pixels fails the check; its peak offset moves it back."""
    from register.search import verify_alignment

    pair = srif_opt_ir_pair
    f = to_gray(read_image(data_root / pair.fixed))
    m = to_gray(read_image(data_root / pair.moving))
    moved = np.array([[1, 0, 4.0], [0, 1, -3.0], [0, 0, 1]]) @ pair.H_array
    off = verify_alignment(f.image, f.mask, m.image, m.mask, moved, 320)
    assert off.shift > Config().verify_max_shift
    np.testing.assert_allclose(off.offset, (-4.0, 3.0), atol=0.6)
    back = verify_alignment(f.image, f.mask, m.image, m.mask, off.recentred(moved), 320)
    assert back.shift < 0.6 and back.z > off.z + 5


def test_similarity_peaks_half_turn_equals_direct(data_root):
    """Scoring angle + 180 from the angle's FFT gives what warping by angle + 180 gives."""
    from register.search import _fixed_level, _similarity_peaks
    f = to_gray(read_image(data_root / "mifnet_examples" / "opt_nir_1.png"))
    m = to_gray(read_image(data_root / "mifnet_examples" / "opt_nir_2.png"))
    level = _fixed_level(f.image, f.mask, 160)
    mask_u8 = m.mask.astype(np.uint8)
    for angle in (0.0, 37.5, 112.5):
        paired = _similarity_peaks(level, m.image, mask_u8, angle, 0.3, 0.1, half_turn=True)
        direct = _similarity_peaks(level, m.image, mask_u8, angle + 180.0, 0.3, 0.1)
        assert len(paired) == 2 and len(direct) == 1
        z_pair, a_pair, A_pair = paired[1]
        z_direct, a_direct, A_direct = direct[0]
        assert a_pair == a_direct
        # equal up to OpenCV's fixed-point rounding of sample positions in the mask warp
        assert z_pair == pytest.approx(z_direct, rel=1e-2)
        np.testing.assert_allclose(A_pair, A_direct, atol=0.1)


def test_calibrated_removes_per_scale_offset():
    """A scale whose chance peaks all sit higher (a small footprint) gains nothing from it."""
    from register.search import _calibrated
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, 48)
    A = np.eye(3)
    small = [(6.0 + n, a * 7.5, 0.5, A) for a, n in enumerate(noise)]   # raised chance level
    large = [(3.0 + n, a * 7.5, 1.0, A) for a, n in enumerate(noise)]
    # a true peak 4 noise sigmas above its scale's chance level, yet below the small scale's best
    # chance peak
    large[10] = (min(7.0, max(r[0] for r in small) - 0.1), 75.0, 1.0, A)
    raw_best = max(small + large, key=lambda r: r[0])
    assert raw_best[2] == 0.5
    cal = _calibrated(small + large)
    best = max(cal, key=lambda r: r[0])
    assert (best[1], best[2]) == (75.0, 1.0)


def test_keypoint_hypothesis_recovers_similarity_on_vis_nir_pair(data_root):
    """A known similarity applied to an aligned EPFL country NIR image is recovered by SIFT."""
    from register.search import keypoint_hypothesis
    f = to_gray(read_image(data_root / "vis_nir_epfl_registration" / "country" / "0001_rgb.jpg"))
    m = to_gray(read_image(data_root / "vis_nir_epfl_registration" / "country" / "0001_nir.jpg"))
    fi = cv2.resize(f.image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    mi = cv2.resize(m.image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    h, w = mi.shape
    W = similarity(20.0, 0.9, ((w - 1) / 2, (h - 1) / 2), ((w - 1) / 2 + 10, (h - 1) / 2 - 5))
    warped = cv2.warpAffine(mi, W[:2], (w, h))
    valid = cv2.warpAffine(np.ones_like(mi, np.uint8), W[:2], (w, h)).astype(bool)
    hyp = keypoint_hypothesis(fi, np.ones_like(fi, bool), warped, valid, Config())
    assert hyp is not None
    truth = np.linalg.inv(W)  # warped moving px -> fixed px (the pair is aligned)
    assert corner_distance(hyp.H, truth, fi.shape) < 3.0
    assert hyp.scale == pytest.approx(1 / 0.9, rel=0.02)


def test_keypoint_hypothesis_none_on_unrelated_images(data_root, nir_small):
    """Keypoints of two different scenes do not agree on a transform."""
    from register.search import keypoint_hypothesis
    other = to_gray(read_image(data_root / "mifnet_examples" / "opt_sar_1.png"))
    o = cv2.resize(other.image, (256, 256), interpolation=cv2.INTER_AREA)
    ones = np.ones((256, 256), bool)
    assert keypoint_hypothesis(nir_small, ones, o, ones, Config()) is None


def test_keypoint_support_counts_right_transform_not_wrong(data_root):
    """The SIFT correspondences of a VIS-NIR validation pair: the true transform explains
    dozens, the same transform turned by 90 degrees about the image centre almost none."""
    from pipelines.datasets import load_pair, validation_pairs
    from register.frames import working_images

    pair = next(p for p in validation_pairs("vis-nir", every=3) if p.name == "0002")
    cfg = Config(modality="vis-nir")
    fw, mw, Sf, Sm = working_images(*load_pair(pair), cfg)
    hyp = keypoint_hypothesis(fw.image, fw.mask, mw.image, mw.mask, cfg)
    assert hyp is not None and hyp.support is not None
    H = Sf @ pair.H_array @ np.linalg.inv(Sm)
    h, w = fw.image.shape
    turn = similarity(90.0, 1.0, ((w - 1) / 2, (h - 1) / 2), ((w - 1) / 2, (h - 1) / 2))
    right = keypoint_support(H, *hyp.support, cfg.ransac_threshold)
    wrong = keypoint_support(turn @ H, *hyp.support, cfg.ransac_threshold)
    assert right >= cfg.keypoint_confirm_inliers and wrong <= 3
    assert keypoint_support(H, np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), 3) == 0
