"""pipelines.metrics: checkpoints, per-pair error, success rate and AUC."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.datasets import Pair
from pipelines.metrics import auc, checkpoints, homography_checkpoints, pair_error, summarise


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])


GT = np.array([[0.98, -0.17, 30.0], [0.17, 0.98, -12.0], [0, 0, 1.0]])  # moving -> fixed


def test_pair_error_perfect_h_is_zero():
    m, c = homography_checkpoints(GT, (400, 500), (380, 520))
    assert 0 < len(m) <= 100
    assert pair_error(GT, m, c) == pytest.approx(0.0, abs=1e-9)


def test_pair_error_h_off_by_4px_is_4():
    m, c = homography_checkpoints(GT, (400, 500), (380, 520))
    assert pair_error(_shift(4, 0) @ GT, m, c) == pytest.approx(4.0)
    assert pair_error(_shift(0, -4) @ GT, m, c) == pytest.approx(4.0)


def test_homography_checkpoints_inside_moving_image():
    m, c = homography_checkpoints(_shift(100, 0), (200, 300), (200, 300))
    # fixed x < 100 maps to moving x < 0: those checkpoints are dropped
    assert len(m) == 70
    assert (m[:, 0] >= 0).all() and np.allclose(m + [100, 0], c)
    pair = Pair("t", "0", "vis-nir", "f", "m", H=tuple(_shift(100, 0).ravel()))
    m2, c2 = checkpoints(pair, (200, 300), (200, 300))
    assert np.allclose(m2, m) and np.allclose(c2, c)


def test_pair_error_failed_or_nonfinite_h_is_infinite():
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


def test_auc_recall_curve_area():
    assert auc([0.0, 0.0, 0.0], 3) == pytest.approx(1.0)
    assert auc([math.inf], 5) == 0.0
    # one pair at error 0, one failed: recall 0.5 from 0 on
    assert auc([0.0, math.inf], 10) == pytest.approx(0.5)
    # single error e < t: recall rises linearly 0 -> 1 over [0, e], then 1: (t - e/2) / t
    assert auc([2.0], 10) == pytest.approx(0.9)
    assert auc([20.0], 10) == 0.0
