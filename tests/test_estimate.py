"""register.estimate: seeded RANSAC, failure modes, and the degeneracy check."""
from __future__ import annotations

import numpy as np
import pytest

from register.checks import RegistrationFailed
from register.estimate import (MODEL_DOF, Estimate, affine_deviation, check_transform, estimate,
                               fit_similarity, gric, refit, support_of)
from register.geometry import similarity, transfer, translation

H_TRUE = np.array([[0.92, -0.21, 35.0], [0.19, 0.97, -18.0], [2e-4, -1e-4, 1.0]])
SHAPE = (512, 512)


def _with_outliers(xy_m, H, frac, seed=0):
    rng = np.random.default_rng(seed)
    xy_f = transfer(H, xy_m)
    n_out = int(round(frac * len(xy_m)))
    idx = rng.choice(len(xy_m), n_out, replace=False)
    xy_f[idx] += rng.uniform(20, 80, (n_out, 2)) * rng.choice([-1, 1], (n_out, 2))
    truth = np.ones(len(xy_m), bool)
    truth[idx] = False
    return xy_m.astype(np.float32), xy_f.astype(np.float32), truth


def test_estimate_recovers_homography_with_outliers(real_points, corner_error):
    xm, xf, truth = _with_outliers(real_points, H_TRUE, 0.3)
    e = estimate(xm, xf, SHAPE, threshold=3.0, seed=0)
    assert corner_error(e.H, H_TRUE, SHAPE) < 0.5
    assert e.H[2, 2] == pytest.approx(1.0)
    np.testing.assert_array_equal(e.inliers, truth)
    assert e.num_inliers == truth.sum() and e.rmse_px < 0.05
    # seeded: identical twice
    e2 = estimate(xm, xf, SHAPE, threshold=3.0, seed=0)
    np.testing.assert_array_equal(e.H, e2.H)
    np.testing.assert_array_equal(e.inliers, e2.inliers)


def test_estimate_with_weights_and_affine(real_points, corner_error):
    A = H_TRUE.copy()
    A[2] = [0, 0, 1]
    xm, xf, truth = _with_outliers(real_points, A, 0.3, seed=1)
    w = np.where(truth, 0.9, 0.6)
    e = estimate(xm, xf, SHAPE, transform="affine", seed=3, weights=w)
    assert corner_error(e.H, A, SHAPE) < 0.5
    np.testing.assert_allclose(e.H[2], [0, 0, 1], atol=1e-9)
    np.testing.assert_array_equal(e.inliers, truth)  # inlier mask in the caller's order


def test_estimate_auto_keeps_affine_unless_the_matches_support_perspective(real_points,
                                                                          corner_error):
    A = H_TRUE.copy()
    A[2] = [0, 0, 1]
    # affine truth, matches with 1 px noise and 30 % outliers: the homography's two extra
    # parameters can only fit noise and chance matches, so auto keeps the affine fit
    xm, xf, _ = _with_outliers(real_points, A, 0.3, seed=2)
    xf += np.random.default_rng(5).normal(0, 1.0, xf.shape).astype(np.float32)
    e = estimate(xm, xf, SHAPE, transform="auto", seed=0)
    assert e.model == "affine" and np.allclose(e.H[2], [0, 0, 1])
    assert corner_error(e.H, A, SHAPE) < 1.5
    # perspective truth (17 px away from the best affine map over the image): the homography
    xm, xf, truth = _with_outliers(real_points, H_TRUE, 0.3)
    e = estimate(xm, xf, SHAPE, transform="auto", seed=0)
    assert e.model == "homography" and corner_error(e.H, H_TRUE, SHAPE) < 0.5
    np.testing.assert_array_equal(e.inliers, truth)
    assert estimate(xm, xf, SHAPE, transform="affine", seed=0).model == "affine"


def test_fit_similarity_recovers_rotation_scale_shift_among_outliers(real_points, corner_error):
    S = np.array([[1.1 * np.cos(0.5), -1.1 * np.sin(0.5), 40.0],
                  [1.1 * np.sin(0.5), 1.1 * np.cos(0.5), -25.0], [0.0, 0.0, 1.0]])
    xm, xf, truth = _with_outliers(real_points, S, 0.6, seed=4)
    xf = xf + np.random.default_rng(1).normal(0, 0.5, xf.shape).astype(np.float32)
    H, inl = fit_similarity(xm, xf, threshold=3.0, seed=0)
    assert corner_error(H, S, SHAPE) < 0.5
    assert (inl == truth).mean() > 0.97
    np.testing.assert_array_equal(fit_similarity(xm, xf, threshold=3.0, seed=0)[0], H)
    assert np.isnan(fit_similarity(xm[:1], xf[:1])[0]).all()  # one match fixes nothing


def test_estimate_auto_with_a_similarity_keeps_the_fewest_parameters_the_matches_need(
        real_points):
    """GRIC over three models: similarity truth -> similarity, affine truth with a clear
    shear -> affine, perspective truth -> homography."""
    models = ("homography", "affine", "similarity")
    S = np.array([[0.9, -0.3, 20.0], [0.3, 0.9, 10.0], [0.0, 0.0, 1.0]])
    A = np.array([[0.9, -0.1, 20.0], [0.3, 1.1, 10.0], [0.0, 0.0, 1.0]])
    for truth, want in ((S, "similarity"), (A, "affine"), (H_TRUE, "homography")):
        xm, xf, _ = _with_outliers(real_points, truth, 0.3, seed=6)
        xf = xf + np.random.default_rng(2).normal(0, 0.5, xf.shape).astype(np.float32)
        assert estimate(xm, xf, SHAPE, transform="auto", models=models).model == want


def test_gric_charges_outliers_a_fixed_cost_and_each_parameter_ln_4n():
    xm = np.array([[10, 10], [200, 40], [60, 300], [400, 420], [250, 250]], np.float64)
    xf = xm.copy()
    xf[4] += [30, 0]  # one match far off
    H = np.eye(3)
    g_h = gric(H, xm, xf, sigma=1.5, dof=MODEL_DOF["homography"])
    g_a = gric(H, xm, xf, sigma=1.5, dof=MODEL_DOF["affine"])
    assert g_h - g_a == pytest.approx(2 * np.log(20))
    assert g_a == pytest.approx(4.0 + 6 * np.log(20))  # only the outlier costs, capped at 4
    xf[0] += [1.5, 0]  # one sigma off: costs 1
    assert gric(H, xm, xf, sigma=1.5, dof=6) == pytest.approx(g_a + 1.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma > 0"):
            gric(H, xm, xf, sigma=bad, dof=6)


def test_support_of_counts_inliers_of_a_given_transform(real_points):
    xm, xf, truth = _with_outliers(real_points, H_TRUE, 0.3)
    e = support_of(2 * H_TRUE, xm, xf, threshold=3.0, model="georeferencing")  # scale of H free
    np.testing.assert_array_equal(e.inliers, truth)
    assert e.model == "georeferencing" and e.H[2, 2] == 1.0
    assert e.rmse_px < 1e-3
    off = support_of(translation(2.0, 0.0) @ H_TRUE, xm, xf, threshold=3.0)
    assert off.num_inliers == truth.sum() and off.rmse_px == pytest.approx(2.0, abs=1e-3)
    assert support_of(translation(4.0, 0.0) @ H_TRUE, xm, xf, threshold=3.0).num_inliers == 0
    none = support_of(H_TRUE, xm[:0], xf[:0])
    assert none.num_inliers == 0 and np.isnan(none.rmse_px)


@pytest.mark.parametrize("model, H", [
    ("similarity", similarity(12.0, 1.1, (256.0, 256.0), (270.0, 240.0))),
    ("affine", np.array([[0.95, -0.12, 20.0], [0.2, 1.05, -8.0], [0.0, 0.0, 1.0]])),
    ("homography", H_TRUE)])
def test_refit_least_squares_on_the_inliers_keeps_the_model(real_points, corner_error, model, H):
    """A transform 1.5 px off keeps the right inliers; one least-squares step of its own
    model on them lands on the truth (noise-free inliers), the model unchanged."""
    xm, xf, truth = _with_outliers(real_points, H, 0.3)
    off = support_of(translation(1.5, -0.5) @ H, xm, xf, threshold=3.0, model=model)
    np.testing.assert_array_equal(off.inliers, truth)
    r = refit(off, xm, xf, SHAPE, threshold=3.0)
    assert r.model == model and corner_error(r.H, H, SHAPE) < 0.05
    np.testing.assert_array_equal(r.inliers, truth)
    if model == "similarity":  # still z -> a z + b
        assert r.H[0, 0] == pytest.approx(r.H[1, 1]) and r.H[0, 1] == pytest.approx(-r.H[1, 0])


def test_refit_leaves_what_it_cannot_refit(real_points):
    xm, xf, _ = _with_outliers(real_points, H_TRUE, 0.3)
    given = support_of(H_TRUE, xm, xf, threshold=3.0, model="georeferencing")
    assert refit(given, xm, xf, SHAPE, threshold=3.0) is given  # not a fitted model
    few = support_of(H_TRUE, xm[:3], xf[:3], threshold=3.0, model="homography")
    assert refit(few, xm[:3], xf[:3], SHAPE, threshold=3.0) is few  # 3 inliers for 8 parameters
    mirrored = xf.copy()
    mirrored[:, 0] = -mirrored[:, 0]  # the inliers' least-squares fit mirrors the image
    flip = Estimate(np.diag([-1.0, 1.0, 1.0]), np.ones(len(xm), bool), 0.0, "affine")
    assert refit(flip, xm, mirrored, SHAPE, threshold=3.0) is flip


def test_estimate_too_few_matches(real_points):
    xm, xf, _ = _with_outliers(real_points[:11], H_TRUE, 0.0)
    with pytest.raises(RegistrationFailed, match="at least 12") as exc:
        estimate(xm, xf, SHAPE, min_inliers=12)
    assert "11 matches" in exc.value.reason


def test_estimate_too_few_inliers(real_points):
    xm, xf, truth = _with_outliers(real_points[:40], H_TRUE, 0.75, seed=2)
    assert truth.sum() == 10
    with pytest.raises(RegistrationFailed, match="inliers"):
        estimate(xm, xf, SHAPE, min_inliers=12)


def test_estimate_mirroring_fails(real_points):
    mirror = np.array([[-1.0, 0, 511.0], [0, 1.0, 0], [0, 0, 1.0]])
    xm, xf, _ = _with_outliers(real_points, mirror, 0.0)
    # affine RANSAC fits the mirror exactly; check_transform rejects it
    with pytest.raises(RegistrationFailed, match="mirror"):
        estimate(xm, xf, SHAPE, transform="affine")
    # kornia's homography RANSAC already discards orientation-flipping samples: no inliers
    with pytest.raises(RegistrationFailed):
        estimate(xm, xf, SHAPE, transform="homography")
    # auto: both fits fail, and the reason names both
    with pytest.raises(RegistrationFailed, match="homography: .*; affine: .*mirror"):
        estimate(xm, xf, SHAPE, transform="auto")
    # a similarity cannot mirror: its RANSAC finds no mirrored inliers
    with pytest.raises(RegistrationFailed):
        estimate(xm, xf, SHAPE, transform="similarity")
    with pytest.raises(ValueError, match="'auto' or one of"):
        estimate(xm, xf, SHAPE, transform="projective")


def test_check_transform():
    assert check_transform(H_TRUE, SHAPE) is None
    assert check_transform(np.eye(3), SHAPE) is None
    assert "mirror" in check_transform(np.diag([1.0, -1.0, 1.0]), SHAPE)
    assert "scale" in check_transform(np.diag([10.0, 10.0, 1.0]), SHAPE)
    assert "scale" in check_transform(np.diag([0.1, 0.1, 1.0]), SHAPE)
    assert "anisotropy" in check_transform(np.diag([5.0, 1.0, 1.0]), SHAPE)
    assert "infinity" in check_transform(np.array([[1.0, 0, 0], [0, 1, 0], [-0.004, 0, 1]]), SHAPE)
    assert "not finite" in check_transform(np.full((3, 3), np.nan), SHAPE)


def test_affine_deviation_zero_for_affine_and_large_for_bent_homography():
    A = np.array([[0.9, -0.3, 40.0], [0.3, 0.9, -20.0], [0.0, 0.0, 1.0]])
    assert affine_deviation(A, (600, 600), (500, 500)) < 1e-6
    bent = A.copy()
    bent[2, :2] = (8e-4, 3e-4)
    d = affine_deviation(bent, (600, 600), (500, 500))
    assert 20.0 < d < 100.0
    # measured over the overlap only: a far-away moving image gives no points, hence 0
    far = A.copy()
    far[:2, 2] = (5000.0, 5000.0)
    assert affine_deviation(far, (600, 600), (500, 500)) == 0.0


