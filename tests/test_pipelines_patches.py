"""pipelines.patches (the patch-pair builder) and pipelines.patch_eval on real EPFL images."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipelines.datasets import IDENTITY, Pair
from pipelines.patch_eval import PATCH_PER_IMAGE, PATCH_SEED, cached_file_matches
from pipelines.patches import BUILDER_VERSION, KINDS, load_aligned, pairs_from_image
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
    xy = detect(fi, valid, max_keypoints=32, nms_radius=Config().match.nms_radius, border=64).xy
    assert np.array_equal(fixed[:n], crop_patches(fi, xy))
    assert np.array_equal(moving[:n], crop_patches(mi, xy))
    # negatives: the crop of another keypoint whose patch centre is at least 64 px away
    where = {c.tobytes(): j for j, c in enumerate(moving[:n])}
    other = np.array([where[c.tobytes()] for c in moving[n:]])
    assert (np.linalg.norm(xy[other] - xy, axis=1) >= 64).all()


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


def test_cached_file_matches_rejects_files_of_an_older_builder(tmp_path):
    npz = tmp_path / "test_vis-nir_seed1.npz"
    np.savez(npz, kind=np.zeros(2, np.uint8))
    want = {"split": "test", "seed": PATCH_SEED, "per_image": PATCH_PER_IMAGE,
            "protocol": "pipeline", "builder_version": BUILDER_VERSION}
    old = {"split": "test", "seed": PATCH_SEED, "per_image": PATCH_PER_IMAGE}
    npz.with_suffix(".config.json").write_text(json.dumps(old))
    assert not cached_file_matches(npz, want)  # no builder_version: version 1
    npz.with_suffix(".config.json").write_text(
        json.dumps({**old, "builder_version": BUILDER_VERSION}))
    assert cached_file_matches(npz, want)  # no protocol: the pipeline protocol
    assert not cached_file_matches(npz, {**want, "protocol": "paper"})


def test_pairs_from_image_resamples_every_moving_patch_alike(data_root, monkeypatch):
    # Plain crops are sharper than resampled ones: if negatives were plain crops and positives
    # resampled, sharpness alone would tell them apart (builder versions up to 3 did that).
    import pipelines.patches as builder

    fi, mi, valid = load_aligned(_pair(RGB, NIR), 768)
    calls = []

    def spy(image, xy, **kw):
        if image is mi:
            calls.append(kw.get("affine") is not None)
        return crop_patches(image, xy, **kw)

    monkeypatch.setattr(builder, "crop_patches", spy)
    _, moving, label, _ = pairs_from_image(fi, mi, valid, "vis-nir", np.random.default_rng(0),
                                           Config(), 16)
    assert len(calls) >= len(label) and all(calls)
