"""Metrics and baselines of pipelines.evaluate (small; one real pair per baseline)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines import baselines
from pipelines.datasets import Pair, split
from pipelines.evaluate import (auc, build_parser, checkpoints, homography_checkpoints,
                                pair_error, summarise, update_results)
from register.config import data_root
from register.io import read_image, to_gray


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])


GT = np.array([[0.98, -0.17, 30.0], [0.17, 0.98, -12.0], [0, 0, 1.0]])  # moving -> fixed


def test_perfect_h_has_zero_error():
    m, c = homography_checkpoints(GT, (400, 500), (380, 520))
    assert 0 < len(m) <= 100
    assert pair_error(GT, m, c) == pytest.approx(0.0, abs=1e-9)


def test_h_off_by_4px_has_error_4():
    m, c = homography_checkpoints(GT, (400, 500), (380, 520))
    assert pair_error(_shift(4, 0) @ GT, m, c) == pytest.approx(4.0)
    assert pair_error(_shift(0, -4) @ GT, m, c) == pytest.approx(4.0)


def test_checkpoints_inside_moving_image():
    m, c = homography_checkpoints(_shift(100, 0), (200, 300), (200, 300))
    # fixed x < 100 maps to moving x < 0: those checkpoints are dropped
    assert len(m) == 70
    assert (m[:, 0] >= 0).all() and np.allclose(m + [100, 0], c)
    pair = Pair("t", "0", "vis-nir", "f", "m", H=tuple(_shift(100, 0).ravel()))
    m2, c2 = checkpoints(pair, (200, 300), (200, 300))
    assert np.allclose(m2, m) and np.allclose(c2, c)


def test_failed_or_nonfinite_h_is_infinite():
    m, c = homography_checkpoints(GT, (100, 100), (100, 100))
    assert pair_error(None, m, c) == math.inf
    assert pair_error(np.full((3, 3), np.nan), m, c) == math.inf
    assert pair_error(np.zeros((3, 3)), m, c) == math.inf


def test_summarise_counts_infinite_as_failure():
    s = summarise([1.0, 4.0, math.inf, 20.0], [0.5, 1.0, 2.0, 3.0])
    assert s["n"] == 4 and s["ok"] == 3
    assert s["success@3"] == 0.25 and s["success@5"] == 0.5 and s["success@10"] == 0.5
    assert s["median_error"] == pytest.approx(12.0)
    assert s["median_seconds"] == pytest.approx(1.5)
    assert summarise([math.inf, math.inf])["auc@10"] == 0.0
    assert summarise([math.inf, math.inf])["median_error"] == math.inf


def test_auc():
    assert auc([0.0, 0.0, 0.0], 3) == pytest.approx(1.0)
    assert auc([math.inf], 5) == 0.0
    # one pair at error 0, one failed: recall 0.5 from 0 on
    assert auc([0.0, math.inf], 10) == pytest.approx(0.5)
    # single error e < t: recall rises linearly 0 -> 1 over [0, e], then 1: (t - e/2) / t
    assert auc([2.0], 10) == pytest.approx(0.9)
    assert auc([20.0], 10) == 0.0


def test_update_results_replaces_section(tmp_path):
    md = tmp_path / "docs" / "results.md"
    update_results(md, "registration", "table 1", "python -m pipelines.evaluate registration",
                   date="D1")
    md.write_text("# Results\n\n" + md.read_text() + "\ntail\n")
    update_results(md, "registration", "table 2", "cmd2", date="D2")
    update_results(md, "patches", "fpr", "cmd3", date="D3")
    text = md.read_text()
    assert text.startswith("# Results") and text.rstrip().endswith("<!-- END evaluate:patches -->")
    assert "table 1" not in text and "table 2" in text and "cmd2" in text and "D2" in text
    assert text.count("<!-- BEGIN evaluate:registration -->") == 1 and "tail" in text


def test_parser_rejects_unknown_set():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["registration", "--sets", "opt-sar,foo"])
    a = build_parser().parse_args(["patches", "--sets", "vis-nir", "--limit", "2"])
    assert a.sets == ["vis-nir"] and a.limit == 2 and a.model == "auto"


@pytest.fixture(scope="module")
def real_pair():
    if not (data_root() / "MANIFEST.md").exists():
        pytest.skip("shared data not available")
    pair = split("test/vis-nir")[0]
    fr, mr = read_image(data_root() / pair.fixed), read_image(data_root() / pair.moving)
    m, c = checkpoints(pair, fr.shape, mr.shape)
    return pair, to_gray(fr).image, to_gray(mr).image, m, c


def test_identity_baseline_on_real_pair(real_pair):
    _, fixed, moving, m, c = real_pair
    H = baselines.identity(fixed, moving)
    assert np.array_equal(H, np.eye(3))
    assert pair_error(H, m, c) > 20


def test_sift_baseline_on_real_pair(real_pair):
    _, fixed, moving, m, c = real_pair
    H = baselines.sift(fixed, moving)
    assert H is None or (H.shape == (3, 3) and np.isfinite(H).all())
    err = pair_error(H, m, c)
    assert err == math.inf or err >= 0
