"""pipelines.patches (the patch-pair builder) and pipelines.patch_eval on real EPFL images."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipelines.datasets import IDENTITY, Pair
from pipelines.patch_eval import BUILDER_VERSION, PATCH_PER_IMAGE, PATCH_SEED, _meta_ok
from pipelines.patches import KINDS, load_aligned, pairs_from_image
from register.config import Config
from register.detect import detect
from register.patches import crop_patches

RGB = "vis_nir_epfl_registration/country/0009_rgb.jpg"  # 1024 px wide: shrunk by 0.75
NIR = "vis_nir_epfl_registration/country/0009_nir.jpg"


def _pair(fixed: str, moving: str) -> Pair:
    return Pair("test", "0009", "vis-nir", fixed, moving, H=IDENTITY, aligned=True)


def test_load_aligned_moving_lands_on_the_fixed_pixels(data_root):
    # The same image as fixed and moving: the shrunk fixed image and the moving image warped
    # into its frame must not be shifted (the plain factor x -> 0.75 x shifted them 0.125 px).
    fi, mi, valid = load_aligned(_pair(RGB, RGB), 768)
    assert fi.shape == mi.shape == valid.shape and fi.shape[1] == 768
    ys, xs = np.nonzero(valid)
    win = np.s_[ys.min() + 8:ys.max() - 8, xs.min() + 8:xs.max() - 8]
    hann = cv2.createHanningWindow(fi[win].shape[::-1], cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(fi[win].astype(np.float64), mi[win].astype(np.float64), hann)
    assert np.hypot(dx, dy) < 0.05


def test_pairs_from_image_paper_protocol_cuts_exact_positives_and_random_negatives(data_root):
    fi, mi, valid = load_aligned(_pair(RGB, NIR), 768)
    res = pairs_from_image(fi, mi, valid, "vis-nir", np.random.default_rng(0), Config(), 32,
                           protocol="paper")
    fixed, moving, label, kind = res
    n = len(label) // 2
    assert fixed.shape == moving.shape == (2 * n, 64, 64) and fixed.dtype == np.uint8
    assert label.tolist() == [1] * n + [0] * n
    assert set(kind[:n]) == {KINDS.index("positive")} and set(kind[n:]) == {KINDS.index("random")}
    assert np.array_equal(fixed[:n], fixed[n:])  # each keypoint: one positive, one negative
    # no augmentation: both sides are the plain crops at the keypoints the pipeline detects
    xy = detect(fi, valid, max_keypoints=32, nms_radius=Config().nms_radius, border=64).xy
    assert np.array_equal(fixed[:n], crop_patches(fi, xy))
    assert np.array_equal(moving[:n], crop_patches(mi, xy))
    crops = {c.tobytes() for c in moving[:n]}
    assert all(c.tobytes() in crops for c in moving[n:])  # negatives: other keypoints' crops
    assert not any(np.array_equal(moving[i], moving[n + i]) for i in range(n))


def test_pairs_from_image_pipeline_protocol_augments_and_keeps_its_kinds(data_root):
    fi, mi, valid = load_aligned(_pair(RGB, NIR), 768)
    fixed, moving, label, kind = pairs_from_image(fi, mi, valid, "vis-nir",
                                                  np.random.default_rng(0), Config(), 32)
    assert (label == 1).mean() == pytest.approx(0.5)
    assert set(kind[label == 1]) == {KINDS.index("positive")}
    assert KINDS.index("positive") not in set(kind[label == 0])


def test_pairs_from_image_rejects_unknown_protocol(data_root):
    fi, mi, valid = load_aligned(_pair(RGB, NIR), 768)
    with pytest.raises(ValueError, match="protocol must be one of"):
        pairs_from_image(fi, mi, valid, "vis-nir", np.random.default_rng(0), Config(), 32,
                         protocol="aligned")


def test_meta_ok_rebuilds_files_of_an_older_builder(tmp_path):
    npz = tmp_path / "test_vis-nir_seed1.npz"
    np.savez(npz, kind=np.zeros(2, np.uint8))
    want = {"split": "test", "seed": PATCH_SEED, "per_image": PATCH_PER_IMAGE,
            "protocol": "pipeline", "builder_version": BUILDER_VERSION}
    old = {"split": "test", "seed": PATCH_SEED, "per_image": PATCH_PER_IMAGE}
    npz.with_suffix(".config.json").write_text(json.dumps(old))
    assert not _meta_ok(npz, want)  # no builder_version: version 1
    npz.with_suffix(".config.json").write_text(json.dumps({**old, "builder_version": 2}))
    assert _meta_ok(npz, want)  # no protocol: the pipeline protocol
    assert not _meta_ok(npz, {**want, "protocol": "paper"})
