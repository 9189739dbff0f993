"""register.sift: the SIFT hypothesis and its support."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from register.config import Config
from register.geometry import corner_distance, similarity
from register.io import read_image, to_gray
import register.sift as sift
from register.sift import keypoint_hypothesis, keypoint_support, ratio_matches


def test_keypoint_hypothesis_recovers_similarity_on_vis_nir_pair(data_root):
    """A known similarity applied to an aligned EPFL country NIR image is recovered by SIFT."""
    f = to_gray(read_image(data_root / "vis_nir_epfl_registration" / "country" / "0001_rgb.jpg"))
    m = to_gray(read_image(data_root / "vis_nir_epfl_registration" / "country" / "0001_nir.jpg"))
    fi = cv2.resize(f.image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    mi = cv2.resize(m.image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    h, w = mi.shape
    W = similarity(20.0, 0.9, ((w - 1) / 2, (h - 1) / 2), ((w - 1) / 2 + 10, (h - 1) / 2 - 5))
    warped = cv2.warpAffine(mi, W[:2], (w, h))
    valid = cv2.warpAffine(np.ones_like(mi, np.uint8), W[:2], (w, h)).astype(bool)
    hyp = keypoint_hypothesis(fi, np.ones_like(fi, bool), warped, valid, Config().search)
    assert hyp is not None
    truth = np.linalg.inv(W)  # warped moving px -> fixed px (the pair is aligned)
    assert corner_distance(hyp.H, truth, fi.shape) < 3.0
    assert hyp.scale == pytest.approx(1 / 0.9, rel=0.02)


def test_keypoint_hypothesis_none_on_unrelated_images(data_root, nir_small):
    """Keypoints of two different scenes do not agree on a transform."""
    other = to_gray(read_image(data_root / "mifnet_examples" / "opt_sar_1.png"))
    o = cv2.resize(other.image, (256, 256), interpolation=cv2.INTER_AREA)
    ones = np.ones((256, 256), bool)
    assert keypoint_hypothesis(nir_small, ones, o, ones, Config().search) is None


def test_keypoint_support_counts_right_transform_not_wrong(data_root):
    """The SIFT correspondences of a VIS-NIR validation pair: the true transform explains
    dozens, the same transform turned by 90 degrees about the image centre almost none."""
    from pipelines.datasets import load_pair, validation_pairs
    from register.frames import working_images

    pair = next(p for p in validation_pairs("vis-nir", every=3) if p.name == "0002")
    cfg = Config(modality="vis-nir")
    fw, mw, Sf, Sm = working_images(*load_pair(pair), cfg)
    hyp = keypoint_hypothesis(fw.image, fw.mask, mw.image, mw.mask, cfg.search)
    assert hyp is not None and hyp.support is not None
    H = Sf @ pair.H_array @ np.linalg.inv(Sm)
    h, w = fw.image.shape
    turn = similarity(90.0, 1.0, ((w - 1) / 2, (h - 1) / 2), ((w - 1) / 2, (h - 1) / 2))
    right = keypoint_support(H, *hyp.support, cfg.estimate.ransac_threshold)
    wrong = keypoint_support(turn @ H, *hyp.support, cfg.estimate.ransac_threshold)
    assert right >= cfg.policy.keypoint_confirm_inliers and wrong <= 3
    assert keypoint_support(H, np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), 3) == 0


def _demo_descriptors(data_root):
    """OpenCV SIFT descriptors of the MIFNet optical-SAR demo pair (2,000 per image)."""
    out = []
    for name in ("opt_sar_2.png", "opt_sar_1.png"):  # moving (query), fixed (train)
        img = (to_gray(read_image(data_root / "mifnet_examples" / name)).image * 255).astype(np.uint8)
        out.append(cv2.SIFT_create(nfeatures=2000).detectAndCompute(img, None)[1])
    return out


def test_ratio_matches_equals_opencv_knn_ratio_test(data_root):
    """The same matches, in the same order, as OpenCV's brute-force knnMatch and Lowe's test."""
    query, train = _demo_descriptors(data_root)
    ref = [m[0] for m in cv2.BFMatcher(cv2.NORM_L2).knnMatch(query, train, k=2)
           if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    q, t = ratio_matches(query, train, ratio=0.8)
    assert len(ref) > 20
    np.testing.assert_array_equal(q, [m.queryIdx for m in ref])
    np.testing.assert_array_equal(t, [m.trainIdx for m in ref])


def test_ratio_matches_blocks_do_not_change_the_matches(data_root, monkeypatch):
    """Blocks of a few query rows (bounded memory) give the matches of one block."""
    query, train = _demo_descriptors(data_root)
    whole = ratio_matches(query, train)
    monkeypatch.setattr(sift, "RATIO_BLOCK", 7 * len(train))
    blocks = ratio_matches(query, train)
    for a, b in zip(whole, blocks):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="at least 2"):
        ratio_matches(query, train[:1])
