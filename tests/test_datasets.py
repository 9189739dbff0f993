"""Splits, the hold-out rule and ground-truth conventions on real pairs."""
import json

import numpy as np
import pytest

from pipelines.datasets import (SPLITS_FILE, Pair, all_pairs, gt_map, held_out, held_out_names,
                                load_pair, raster_shape, slots, split, validation_pairs)
from register.io import to_gray


def test_splits_file_matches_datasets(data_root):
    doc = json.loads(SPLITS_FILE.read_text())
    pairs = all_pairs(str(data_root))
    assert set(doc) == set(pairs)
    for k, v in pairs.items():
        assert doc[k] == [[p.fixed, p.moving] for p in v], k


def test_splits_test_pairs_never_train(data_root):
    pairs = all_pairs(str(data_root))
    train = {p.moving for k, v in pairs.items() if k.startswith("train/") for p in v}
    test = {p.moving for k, v in pairs.items() if k.startswith("test/") for p in v}
    assert train and test and not train & test
    assert len(pairs["test/opt-sar"]) == 50 and len(pairs["test/vis-nir"]) == 160


def test_split_georef_is_the_georeferenced_bigearthnet_pairs_as_they_are(data_root):
    pairs = split("georef/opt-sar")
    assert len(pairs) == 6 and {p.set for p in pairs} == {"bigearthnet"}
    assert all(p.warp is None and np.allclose(p.H_array, np.eye(3)) for p in pairs)
    assert {p.name for p in pairs} <= {p.name for p in split("train/opt-sar")}
    fixed, moving = load_pair(pairs[0])
    assert fixed.georeferenced and moving.georeferenced and fixed.shape == moving.shape
    with pytest.raises(KeyError):
        split("georef/vis-nir")


def test_validation_pairs_come_from_training_pairs(data_root):
    train = {p.moving for p in split("train/vis-lwir")}
    val = split("val/vis-lwir")
    assert val and all(p.moving in train and p.warp is not None for p in val)


def test_validation_pairs_scales_follow_the_requested_range(data_root):
    for lo, hi in ((1.6, 2.0), (0.5, 0.625)):
        val = validation_pairs("opt-ir", scales=(lo, hi))
        sc = [float(np.sqrt(abs(np.linalg.det(np.asarray(p.warp).reshape(3, 3)[:2, :2]))))
              for p in val]
        assert val and all(lo - 1e-9 <= s <= hi + 1e-9 for s in sc), sc
    # the same seed draws the same rotations whatever the scale range
    a = [np.asarray(p.warp).reshape(3, 3) for p in validation_pairs("opt-ir", scales=(1.6, 2.0))]
    b = [np.asarray(p.warp).reshape(3, 3) for p in validation_pairs("opt-ir")]
    for x, y in zip(a, b):
        assert np.allclose(x[:2, :2] / np.linalg.norm(x[:2, 0]), y[:2, :2] / np.linalg.norm(y[:2, 0]))
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        validation_pairs("opt-ir", scales=(2.0, 1.0))


def test_validation_pairs_perspective_adds_a_projective_warp_after_the_same_similarity(
        data_root):
    from register.estimate import affine_deviation
    from register.geometry import transfer

    plain, persp = validation_pairs("opt-ir"), validation_pairs("opt-ir", perspective=0.08)
    assert [p.name for p in plain] == [p.name for p in persp]
    bends = []
    for a, b in zip(plain, persp):
        Wa, Wb = (np.asarray(p.warp, np.float64).reshape(3, 3) for p in (a, b))
        P = Wb @ np.linalg.inv(Wa)  # the added warp, in the moving frame
        h, w = raster_shape(a.moving)
        c = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
        moved = np.abs(transfer(P, c) - c)
        assert (moved <= 0.08 * np.array([w, h]) + 1e-6).all()
        bends.append(affine_deviation(P, (h, w), (h, w)))
        # the truth moves with the warp: moving px under the new truth land where they did
        np.testing.assert_allclose(b.H_array @ Wb / (b.H_array @ Wb)[2, 2],
                                   a.H_array @ Wa / (a.H_array @ Wa)[2, 2], atol=1e-6)
    assert max(bends) > 3  # projective, not affine
    for bad in (-0.1, 0.3, float("nan")):
        with pytest.raises(ValueError, match="0 <= perspective"):
            validation_pairs("opt-ir", perspective=bad)


def test_held_out_names_are_the_validation_pairs(data_root):
    """One hold-out rule: every validation pair is a held-out pair, and no held-out pair is
    among the pairs the network trains on."""
    names = held_out_names()
    for modality in ("vis-nir", "opt-sar", "opt-ir", "vis-lwir"):
        val = validation_pairs(modality)
        assert val and {f"{p.set[len('val_'):]}/{p.name}" for p in val} <= names
        held = {p.moving for p in held_out(modality)}
        assert {p.moving for p in val} <= held  # warped copies of held-out images only
        assert held <= {p.moving for p in split(f"train/{modality}")}


def test_load_pair_masks_float_sar_outside_footprint(data_root):
    """A warped float SAR raster is NaN (nodata) outside its footprint, not a valid 0."""
    pair = next(p for p in validation_pairs("opt-sar", every=3) if p.set == "val_bigearthnet")
    _, moving = load_pair(pair)
    assert moving.data.dtype == np.float32 and np.isnan(moving.nodata)
    gray = to_gray(moving, sar=True)
    assert not gray.mask[0, 0] and 0.2 < gray.mask.mean() < 0.9
    assert np.isfinite(moving.data[:, moving.valid]).all()


def test_load_pair_warp_matches_ground_truth(data_root):
    """A validation pair's H maps the warped moving image back onto the fixed image."""
    pair = split("val/vis-nir")[0]
    fixed, moving = load_pair(pair)
    f = to_gray(fixed).image
    m = to_gray(moving).image
    h, w = f.shape
    ys, xs = np.mgrid[h // 4:3 * h // 4:40, w // 4:3 * w // 4:40]
    Hinv = np.linalg.inv(pair.H_array)
    p = np.c_[xs.ravel(), ys.ravel(), np.ones(xs.size)] @ Hinv.T
    u, v = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    ok = (u > 2) & (v > 2) & (u < m.shape[1] - 3) & (v < m.shape[0] - 3)
    a = f[ys.ravel()[ok], xs.ravel()[ok]]
    b = m[np.round(v[ok]).astype(int), np.round(u[ok]).astype(int)]
    assert ok.sum() > 20
    assert np.corrcoef(a, b)[0, 1] > 0.5  # RGB vs NIR of the same points correlate


def test_gt_map_dense_field_moves_points(data_root):
    pair = split("test/vis-lwir")[0]
    q = np.array([[100.0, 100.0], [300.0, 200.0]])
    g = gt_map(pair, q)
    assert g.shape == (2, 2) and np.isfinite(g).all()
    assert np.abs(g - q).max() > 1.0  # the MSRS fields displace by 9-31 px on average


def test_slots_keep_published_numbers_when_pairs_are_missing():
    """SRIF pairs keep their published number as slot (62 stays 62 without 61); other sets
    count on after the last slot of the set before them."""
    def pair(set_name, name):
        return Pair(set_name, name, "opt-sar", "f", "m")

    pairs = [pair("srif_optical_sar", n) for n in ("59", "60", "62", "150")]
    pairs += [pair("bigearthnet", n) for n in ("a", "b", "c")]
    assert slots(pairs) == [59, 60, 62, 150, 151, 152, 153]
    assert slots(pairs[:1] + pairs[2:]) == [59, 62, 150, 151, 152, 153]


def test_held_out_is_every_tenth_published_pair_despite_removed_pairs(data_root):
    """The corrected optical-SAR truth dropped training pairs 61, 115 and 137; the held-out
    pairs are still SRIF 10, 20, ..., 150 (a rule by list position moved six of them)."""
    train = split("train/opt-sar")
    assert not {"61", "115", "137"} & {p.name for p in train if p.set == "srif_optical_sar"}
    held = held_out("opt-sar")
    assert [p.name for p in held] == [str(n) for n in range(10, 151, 10)]
    assert [p.name for p in held_out("opt-ir")] == [str(n) for n in range(10, 151, 10)]


def test_srif_optical_sar_truth_is_the_shared_csv_for_every_split(data_root):
    """Training, validation and test all read the shared (corrected) rows; no project-side
    correction is applied on top."""
    import csv

    with open(data_root / "srif_multimodal" / "gt_homographies.csv") as f:
        rows = {r["pair"]: r for r in csv.DictReader(f) if r["subset"] == "optical_sar"}
    for name in ("10", "62", "158"):
        pair = next(p for p in split("train/opt-sar") + split("test/opt-sar")
                    if p.set == "srif_optical_sar" and p.name == name)
        H12 = np.array([float(rows[name][k]) for k in
                        "h00 h01 h02 h10 h11 h12 h20 h21 h22".split()]).reshape(3, 3)
        np.testing.assert_allclose(pair.H_array @ H12, np.eye(3), atol=1e-9)
    val = next(p for p in validation_pairs("opt-sar") if p.name == "10")
    train10 = next(p for p in split("train/opt-sar") if p.name == "10")
    W = np.asarray(val.warp).reshape(3, 3)
    np.testing.assert_allclose(val.H_array @ W, train10.H_array, atol=1e-9)
