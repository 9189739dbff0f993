"""register.geometry: transfer, translations, similarities, resize maps, scales."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from register.geometry import resize_map, similarity, transfer, transform_scale, translation

H_TRUE = np.array([[0.92, -0.21, 35.0], [0.19, 0.97, -18.0], [2e-4, -1e-4, 1.0]])


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


def test_transfer_round_trip(real_points):
    fwd = transfer(H_TRUE, real_points)
    assert fwd.shape == real_points.shape and fwd.dtype == np.float64
    back = transfer(np.linalg.inv(H_TRUE), fwd)
    np.testing.assert_allclose(back, real_points, atol=1e-9)
    # projective division is applied
    p = transfer(np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]]), np.array([[3.0, 4.0]]))
    np.testing.assert_allclose(p, [[3.0, 4.0]])


def test_translation_moves_points_and_composes(real_points):
    T = translation(2.5, -4.0)
    assert T.shape == (3, 3) and T.dtype == np.float64
    np.testing.assert_allclose(transfer(T, real_points), real_points + [2.5, -4.0])
    np.testing.assert_allclose(translation(1.0, 2.0) @ translation(-1.0, -2.0), np.eye(3))


def test_transform_scale_ignores_rotation_shift_and_normalisation():
    c, s = np.cos(0.7), np.sin(0.7)
    H = np.array([[1.5 * c, -1.5 * s, 40.0], [1.5 * s, 1.5 * c, -7.0], [0.0, 0.0, 1.0]])
    assert transform_scale(H) == pytest.approx(1.5)
    assert transform_scale(4.0 * H) == pytest.approx(1.5)  # H and 4 H are the same transform
    assert transform_scale(H[:2]) == pytest.approx(1.5)  # (2, 3) affine
    assert transform_scale(np.full((3, 3), np.nan)) == 0.0


def test_resize_map_aligns_pixel_centres():
    """cv2.resize aligns pixel centres: halving maps x to 0.5 x - 0.25 (the centre of the first
    pair of source pixels), doubling maps x to 2 x + 0.5; the image corners' outer edges stay."""
    import cv2

    M = resize_map((100, 200), (50, 100))
    assert np.allclose(transfer(M, np.array([[0.5, 0.5], [-0.5, -0.5]])), [[0.0, 0.0], [-0.5, -0.5]])
    img = np.zeros((100, 200), np.float32)
    img[40:42, 60:62] = 1.0  # a 2x2 block centred at (60.5, 40.5)
    small = cv2.resize(img, (100, 50), interpolation=cv2.INTER_AREA)
    assert small[20, 30] == 1.0 and np.allclose(transfer(M, np.array([[60.5, 40.5]])), [[30, 20]])
    assert np.allclose(resize_map((10, 10), (20, 20))[:2, 2], 0.5)
