"""register.match: structural shortlist on real images, and candidate selection."""
from __future__ import annotations

import numpy as np
import pytest

from register.detect import detect
from register.io import read_image, to_gray
from register.match import (_fft_side, candidates_to_score, correlation_surfaces, local_maxima,
                            select, shortlist, top_peaks)
from register.structural import oriented_gradient_channels


@pytest.fixture(scope="module", params=["mifnet_examples/opt_sar_1.png",
                                        "srif_multimodal/optical_infrared/pair151_2.jpg"])
def image_and_keypoints(request, data_root):
    g = to_gray(read_image(data_root / request.param))
    radius, half = 16, 20
    kp = detect(g.image, g.mask, max_keypoints=64, border=radius + half + 1)
    return g, np.round(kp.xy), radius, half


def test_shortlist_self_pair_finds_own_position(image_and_keypoints):
    g, xy, radius, half = image_and_keypoints
    feat = oriented_gradient_channels(g.image, g.mask)
    k = 4
    c = shortlist(feat, feat, xy, radius=radius, k=k, half=half)
    assert len(c) == len(xy) > 20
    assert c.xy_cand.shape == (len(xy), k, 2) and c.structural.shape == (len(xy), k)
    np.testing.assert_array_equal(c.xy_fixed, xy)
    # the keypoint's own position is the first candidate (sub-pixel peaks of an unnormalised
    # correlation stay within a few hundredths), with the top structural score
    np.testing.assert_allclose(c.xy_cand[:, 0], xy, atol=0.1)
    assert np.isfinite(c.structural[:, 0]).all()
    assert (c.structural[:, 0] >= c.structural.max(1)).all()
    # ... equal to the template norm (the correlation of the template with itself)
    for i, (x, y) in enumerate(xy.astype(int)):
        t = feat[:, y - half:y + half + 1, x - half:x + half + 1]
        assert c.structural[i, 0] == pytest.approx(np.sqrt((t ** 2).sum()), rel=1e-3)
    # every candidate lies in the search window
    d = np.abs(c.xy_cand - xy[:, None])
    assert (d <= radius).all()


@pytest.mark.parametrize("radius", [16, 8, 4])
def test_correlation_surfaces_equal_opencv_template_matching(image_and_keypoints, radius):
    """The batched FFTs give cv2.matchTemplate's TM_CCORR surface per keypoint (to float
    rounding), on the real channels of a fixed image against a shifted copy."""
    import cv2

    g, xy, _, half = image_and_keypoints
    feat = oriented_gradient_channels(g.image, g.mask)
    moved = np.roll(feat, (3, -2), axis=(1, 2))
    xy = xy.astype(int)
    surf = correlation_surfaces(feat, moved, xy, radius=radius, half=half)
    assert surf.shape == (len(xy), 2 * radius + 1, 2 * radius + 1) and surf.dtype == np.float32
    ff, fm = np.moveaxis(feat, 0, -1).copy(), np.moveaxis(moved, 0, -1).copy()
    for i, (x, y) in enumerate(xy):
        ref = cv2.matchTemplate(fm[y - half - radius:y + half + radius + 1,
                                   x - half - radius:x + half + radius + 1],
                                ff[y - half:y + half + 1, x - half:x + half + 1], cv2.TM_CCORR)
        np.testing.assert_allclose(surf[i], ref, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("n, side", [(73, 80), (57, 60), (49, 50), (80, 80), (81, 90)])
def test_fft_side_is_even_and_5_smooth(n, side):
    assert _fft_side(n) == side


def test_top_peaks_follow_local_maxima_with_subpixel_vertex():
    """The k highest local maxima in local_maxima's order; a missing peak repeats the last
    position with value -inf; a sampled parabola's vertex is found to float precision."""
    rng = np.random.default_rng(0)
    surfaces = rng.normal(size=(20, 17, 17)).astype(np.float32)
    xy, val = top_peaks(surfaces, 4)
    for s, p, v in zip(surfaces, xy, val):
        ref = local_maxima(s, 4)
        np.testing.assert_array_equal(np.round(p).astype(int)[:, ::-1], ref)
        np.testing.assert_array_equal(v, [s[r, c] for r, c in ref])
        assert (np.abs(p - np.round(p)) <= 0.5).all()
    yy, xx = np.mgrid[:9, :9].astype(np.float32)
    bowl = -((xx - 3.3) ** 2 + (yy - 5.6) ** 2)  # one maximum, vertex at (3.3, 5.6)
    xy, val = top_peaks(bowl[None], 3)
    np.testing.assert_allclose(xy[0, 0], [3.3, 5.6], atol=1e-4)
    assert np.isneginf(val[0, 1:]).all() and (xy[0, 1:] == xy[0, 0]).all()


def test_shortlist_finds_shifted_position(image_and_keypoints):
    g, xy, radius, half = image_and_keypoints
    feat = oriented_gradient_channels(g.image, g.mask)
    dx, dy = 5, -7  # moving content sits at fixed position + (dx, dy)
    moved = np.roll(feat, (dy, dx), axis=(1, 2))
    c = shortlist(feat, moved, xy, radius=radius, k=3, half=half)
    np.testing.assert_allclose(c.xy_cand[:, 0], xy + [dx, dy], atol=0.1)


def test_shortlist_locates_fractional_shift_below_a_pixel(image_and_keypoints):
    """Moving content shifted by (2.4, -1.3) px: the candidates land within a fifth of a pixel
    of it (typically), where whole-pixel peaks would be 0.4 and 0.3 px off."""
    import cv2

    g, xy, radius, half = image_and_keypoints
    shift = np.array([2.4, -1.3])
    M = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
    h, w = g.image.shape
    moved = cv2.warpAffine(g.image, M, (w, h), flags=cv2.INTER_CUBIC)
    feat = oriented_gradient_channels(g.image, g.mask)
    c = shortlist(feat, oriented_gradient_channels(moved, g.mask), xy, radius=radius, k=3,
                  half=half)
    err = np.abs(c.xy_cand[:, 0] - (xy + shift))
    assert (np.median(err, axis=0) < 0.2).all(), np.median(err, axis=0)
    assert (err.max(1) < 1.0).mean() > 0.9


def test_shortlist_keypoint_too_close_to_border(image_and_keypoints):
    g, xy, radius, half = image_and_keypoints
    feat = oriented_gradient_channels(g.image, g.mask)
    pts = np.array([[5.0, 5.0], xy[0]], np.float32)
    c = shortlist(feat, feat, pts, radius=radius, k=2, half=half)
    np.testing.assert_array_equal(c.xy_cand[0], [[5, 5], [5, 5]])
    assert np.isneginf(c.structural[0]).all()
    assert np.isfinite(c.structural[1, 0])


def test_local_maxima_order():
    s = np.zeros((20, 20), np.float32)
    s[3, 4], s[15, 10], s[10, 17] = 1.0, 3.0, 2.0
    assert local_maxima(s, 2) == [(15, 10), (10, 17)]


PROB = np.array([
    [0.90, 0.10, 0.20],  # clear winner
    [0.60, 0.55, 0.10],  # winner, close runner-up
    [0.40, 0.30, 0.20],  # below min_probability
    [0.10, 0.20, 0.95],  # winner in the last column
    [0.70, 0.70, 0.00],  # tie
], np.float32)


def test_select_min_probability_and_ratio():
    keep, best = select(PROB, min_probability=0.5, ratio=1.0)
    np.testing.assert_array_equal(best[[0, 1, 3]], [0, 0, 2])
    np.testing.assert_array_equal(keep, [True, True, False, True, False])
    keep, best = select(PROB, min_probability=0.5, ratio=1.5)
    np.testing.assert_array_equal(keep, [True, False, False, True, False])
    keep, _ = select(PROB, min_probability=0.92, ratio=1.0)
    np.testing.assert_array_equal(keep, [False, False, False, True, False])
    keep, _ = select(PROB, min_probability=0.0, ratio=0.0)
    assert keep.all()


def test_select_single_candidate():
    prob = np.array([[0.3], [0.8]], np.float32)
    keep, best = select(prob, min_probability=0.5, ratio=2.0)
    np.testing.assert_array_equal(keep, [False, True])
    np.testing.assert_array_equal(best, [0, 0])


def test_select_modes_rank_differently():
    """network ranks by probability, structural by correlation, fused by their product."""
    prob = np.array([[0.9, 0.6]], np.float32)
    structural = np.array([[0.5, 1.0]], np.float32)
    _, best_net = select(prob, structural, min_probability=0.0, ratio=1.0, mode="network")
    _, best_st = select(prob, structural, min_probability=0.0, ratio=1.0, mode="structural")
    _, best_fu = select(prob, structural, min_probability=0.0, ratio=1.0, mode="fused")
    assert best_net[0] == 0 and best_st[0] == 1
    assert best_fu[0] == 1  # 0.6 * 1.0 beats 0.9 * 0.5


def test_select_structural_gate_by_probability():
    prob = np.array([[0.2, 0.9]], np.float32)
    structural = np.array([[1.0, 0.1]], np.float32)
    keep, best = select(prob, structural, min_probability=0.5, ratio=1.0, mode="structural")
    assert best[0] == 0 and not keep[0]


def test_select_ignores_missing_candidates():
    prob = np.array([[0.8, 0.8]], np.float32)
    structural = np.array([[0.7, -np.inf]], np.float32)
    keep, best = select(prob, structural, min_probability=0.0, ratio=1.0, mode="fused")
    assert keep[0] and best[0] == 0


def test_select_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        select(np.ones((1, 2), np.float32), np.ones((1, 2), np.float32), min_probability=0.0,
               ratio=1.0, mode="best")


def test_shortlist_sums_the_per_channel_correlations(image_and_keypoints):
    """One multi-channel matchTemplate gives each channel's correlation summed."""
    import cv2

    g, xy, radius, half = image_and_keypoints
    feat = oriented_gradient_channels(g.image, g.mask)
    moved = np.roll(feat, (3, -2), axis=(1, 2))
    c = shortlist(feat, moved, xy[:5], radius=radius, k=2, half=half)
    for i, (x, y) in enumerate(xy[:5].astype(int)):
        t = feat[:, y - half:y + half + 1, x - half:x + half + 1]
        r = moved[:, y - half - radius:y + half + radius + 1,
                  x - half - radius:x + half + radius + 1]
        surf = sum(cv2.matchTemplate(np.ascontiguousarray(r[j]), np.ascontiguousarray(t[j]),
                                     cv2.TM_CCORR) for j in range(len(feat)))
        assert c.structural[i, 0] == pytest.approx(surf.max() / (np.sqrt((t ** 2).sum()) + 1e-6),
                                                   rel=1e-5)


def _random_rows(rng, n=4000, k=4):
    """Rows as shortlists give them: structural correlations in decreasing order (some
    negative, some missing), and probabilities that are often exactly 0 or 1."""
    st = -np.sort(-rng.normal(0.5, 0.4, (n, k)).astype(np.float32), axis=1)
    st[rng.random((n, k)) < 0.1] = -np.inf
    st = -np.sort(-st, axis=1)
    prob = rng.random((n, k)).astype(np.float32)
    prob[rng.random((n, k)) < 0.1] = 0.0
    prob[rng.random((n, k)) < 0.05] = 1.0
    return prob, st


@pytest.mark.parametrize("mode", ["fused", "structural", "network"])
@pytest.mark.parametrize("ratio", [1.0, 1.5, 0.8])
def test_candidates_to_score_unscored_candidates_change_no_selection(mode, ratio):
    rng = np.random.default_rng(7)
    prob, st = _random_rows(rng)
    rows = np.arange(len(st))
    top = st.argmax(1)
    need = candidates_to_score(prob[rows, top], st, ratio=ratio, mode=mode)
    assert not need[rows, top].any() and not need[~np.isfinite(st)].any()
    partial = np.where(need, prob, 0.0).astype(np.float32)
    partial[rows, top] = prob[rows, top]
    for p in (prob, partial):  # as the pipeline does: missing candidates have probability 0
        p[~np.isfinite(st)] = 0.0
    full_keep, full_best = select(prob, st, min_probability=0.3, ratio=ratio, mode=mode)
    keep, best = select(partial, st, min_probability=0.3, ratio=ratio, mode=mode)
    np.testing.assert_array_equal(keep, full_keep)
    np.testing.assert_array_equal(best[keep], full_best[keep])
    scored, finite = need.sum() + len(st), np.isfinite(st).sum()
    if mode == "network":
        assert scored == finite
    else:  # the point: fewer probabilities to compute
        assert scored < 0.85 * finite


def test_candidates_to_score_keeps_candidates_that_could_win():
    st = np.array([[1.0, 0.9, 0.5], [1.0, 0.9, 0.5]], np.float32)
    need = candidates_to_score(np.array([0.95, 0.6], np.float32), st, ratio=1.0, mode="fused")
    # a confident best leaves no room; an unsure one leaves room to those relatively close
    np.testing.assert_array_equal(need, [[False, False, False], [False, True, False]])
    with pytest.raises(ValueError, match="mode"):
        candidates_to_score(np.ones(2, np.float32), st, ratio=1.0, mode="best")
