"""pipelines.audit_truth: an independent SIFT witness tells a wrong truth from a wrong result."""
from __future__ import annotations

import dataclasses

import pytest

from pipelines.audit_truth import audit_pair, main
from pipelines.datasets import split
from register.geometry import translation


@pytest.fixture(scope="module")
def textured_pair():
    """A VIS-NIR test pair with plenty of SIFT correspondences and a truth they agree with."""
    return next(p for p in split("test/vis-nir") if f"{p.set}/{p.name}" ==
                "epfl_oldbuilding/0009")


def test_audit_pair_finds_the_shift_of_a_shifted_truth(textured_pair):
    H = textured_pair.H_array
    shifted = dataclasses.replace(textured_pair,
                                  H=tuple((translation(10.0, 0.0) @ H).ravel().tolist()))
    a = audit_pair(shifted, H, min_inliers=20)  # the run has the right transform
    assert a["witness_inliers"] > 100
    assert a["error_px"] == pytest.approx(10.0, abs=0.01)
    assert a["truth_residual_px"] == pytest.approx(10.0, abs=1.0)
    assert a["truth_shift_x"] == pytest.approx(10.0, abs=1.0) and abs(a["truth_shift_y"]) < 1
    assert a["run_vs_witness_px"] < 2.0


def test_audit_pair_right_truth_leaves_a_small_residual(textured_pair):
    a = audit_pair(textured_pair, textured_pair.H_array, min_inliers=20)
    assert a["error_px"] < 1e-6 and a["truth_residual_px"] < 1.0


def test_main_refuses_a_missing_run(tmp_path, capsys):
    assert main([str(tmp_path / "none.csv"), "--out", str(tmp_path / "out")]) == 2
    assert "pipelines.evaluate registration" in capsys.readouterr().err


def test_errors_both_frames_scale_with_the_images_resolution():
    # SRIF optical-SAR 154: a 474 px optical image, its truth made in the 256 px SAR frame;
    # a transform 6 fixed px off is 6 * 256 / 474 = 3.2 SAR px off
    import json

    from pipelines.audit_truth import errors_both_frames

    pair = next(p for p in split("test/opt-sar") if p.name == "154")
    H = translation(6.0, 0.0) @ pair.H_array
    row = {"status": "ok", "H": json.dumps(H.ravel().tolist())}
    e_fixed, e_moving = errors_both_frames(pair, row)
    assert e_fixed == pytest.approx(6.0, abs=1e-6)
    assert e_moving == pytest.approx(6.0 * 256 / 474, abs=0.05)
    assert errors_both_frames(pair, {"status": "failed", "H": ""}) == (float("inf"),) * 2
