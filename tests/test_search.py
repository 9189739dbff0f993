"""register.search: coarse rotation/scale hypotheses on real image pairs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from register.config import Config
from register.io import read_image, to_gray
from register.search import coarse_hypotheses, iter_hypotheses


def test_coarse_hypotheses_srif_optical_infrared(data_root, srif_opt_ir_pair, corner_error):
    p = srif_opt_ir_pair
    f = to_gray(read_image(data_root / p.fixed))
    m = to_gray(read_image(data_root / p.moving))
    cfg = Config()
    assert max(f.image.shape) <= cfg.frames.work_max_side  # 256 px: working scale = full scale
    hyps = coarse_hypotheses(f.image, f.mask, m.image, m.mask, cfg.search)
    assert 1 <= len(hyps) <= cfg.search.top_k
    errs = [corner_error(h.H, p.H_array, m.image.shape) for h in hyps]
    assert errs[0] < 10.0, f"first hypothesis not within 10 px of the ground truth: {errs}"
    for h in hyps:
        assert h.H.shape == (3, 3) and h.H[2, 2] == pytest.approx(1.0)
        assert 0.0 <= h.angle_deg < 360.0 and h.scale > 0


def test_coarse_hypotheses_recovers_rotation_120_scale_07(nir_small, corner_error):
    fixed = nir_small
    h, w = fixed.shape
    angle, scale = 120.0, 0.7
    # fixed -> moving: rotate 120 deg counter-clockwise (cv2 convention) and shrink to 0.7
    M = np.vstack([cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale), [0, 0, 1]])
    moving = cv2.warpAffine(1.0 - fixed, M[:2], (w, h), flags=cv2.INTER_LINEAR)  # contrast reversed
    mmask = cv2.warpAffine(np.ones((h, w), np.uint8), M[:2], (w, h),
                           flags=cv2.INTER_NEAREST).astype(bool)
    H_gt = np.linalg.inv(M)  # moving -> fixed
    hyps = coarse_hypotheses(fixed, np.ones((h, w), bool), moving, mmask, Config().search)
    errs = [corner_error(hy.H, H_gt, moving.shape) for hy in hyps]
    best = int(np.argmin(errs))
    assert errs[best] < 10.0, f"no hypothesis within 10 px: {errs}"
    # moving -> fixed undoes the rotation: 360 - 120 = 240 deg, scale 1 / 0.7
    d_angle = (hyps[best].angle_deg - (360.0 - angle) + 180.0) % 360.0 - 180.0
    assert abs(d_angle) < 5.0
    assert hyps[best].scale == pytest.approx(1 / scale, rel=0.08)


def test_similarity_peaks_half_turn_equals_direct(data_root):
    """Scoring angle + 180 from the angle's FFT gives what warping by angle + 180 gives."""
    from register.search import _fixed_level, _similarity_peaks

    f = to_gray(read_image(data_root / "mifnet_examples" / "opt_nir_1.png"))
    m = to_gray(read_image(data_root / "mifnet_examples" / "opt_nir_2.png"))
    level = _fixed_level(f.image, f.mask, 160)
    mask_u8 = m.mask.astype(np.uint8)
    for angle in (0.0, 37.5, 112.5):
        paired = _similarity_peaks(level, m.image, mask_u8, angle, 0.3, 0.1, half_turn=True)
        direct = _similarity_peaks(level, m.image, mask_u8, angle + 180.0, 0.3, 0.1)
        assert len(paired) == 2 and len(direct) == 1
        z_pair, a_pair, A_pair = paired[1]
        z_direct, a_direct, A_direct = direct[0]
        assert a_pair == a_direct
        # equal up to OpenCV's fixed-point rounding of sample positions in the mask warp
        assert z_pair == pytest.approx(z_direct, rel=1e-2)
        np.testing.assert_allclose(A_pair, A_direct, atol=0.1)


def test_similarity_peaks_quarter_turn_equals_direct(data_root):
    """On a square frame, scoring angle + 90 and angle + 270 from the angle's FFT against the
    quarter-turned fixed channels gives what warping by those angles gives."""
    from register.search import _fixed_level, _similarity_peaks

    f = to_gray(read_image(data_root / "mifnet_examples" / "opt_sar_1.png"))
    m = to_gray(read_image(data_root / "mifnet_examples" / "opt_sar_2.png"))
    level = _fixed_level(f.image, f.mask, 160, erode=True, quarter=True)
    assert level.shape == (160, 160) and level.quarter is not None
    mask_u8 = m.mask.astype(np.uint8)
    for angle in (7.5, 30.0, 82.5):
        four = _similarity_peaks(level, m.image, mask_u8, angle, level.d, 0.1, half_turn=True,
                                 quarter_turn=True)
        assert [a for _, a, _ in four] == [angle, angle + 180, angle + 90, angle + 270]
        for z, a, A in four[2:]:
            (z_direct, a_direct, A_direct), = _similarity_peaks(level, m.image, mask_u8, a,
                                                                level.d, 0.1)
            assert a == a_direct
            # equal up to float rounding (the direct warp samples at rotated float positions)
            assert z == pytest.approx(z_direct, rel=1e-3)
            np.testing.assert_allclose(A, A_direct, atol=0.01)


def test_quarter_turned_turns_frame_and_orientation_bins():
    """G[j, y, x] = F[j + C/2, n - 1 - x, y]; a frame that is not square gets no quarter
    spectrum (a quarter-turn would not map it onto itself)."""
    from register.search import _fixed_level, _quarter_turned

    rng = np.random.default_rng(0)
    F = rng.normal(size=(6, 5, 5)).astype(np.float32)
    G = _quarter_turned(F)
    for j, y, x in [(0, 0, 0), (1, 2, 4), (4, 3, 1), (5, 4, 4)]:
        assert G[j, y, x] == F[(j + 3) % 6, 4 - x, y]
    img = rng.random((120, 160)).astype(np.float32)
    assert _fixed_level(img, np.ones_like(img, bool), 160, quarter=True).quarter is None


def test_calibrated_removes_per_scale_offset():
    """A scale whose chance peaks all sit higher (a small footprint) gains nothing from it."""
    from register.search import _calibrated

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, 48)
    A = np.eye(3)
    small = [(6.0 + n, a * 7.5, 0.5, A) for a, n in enumerate(noise)]   # raised chance level
    large = [(3.0 + n, a * 7.5, 1.0, A) for a, n in enumerate(noise)]
    # a true peak 4 noise sigmas above its scale's chance level, yet below the small scale's best
    # chance peak
    large[10] = (min(7.0, max(r[0] for r in small) - 0.1), 75.0, 1.0, A)
    raw_best = max(small + large, key=lambda r: r[0])
    assert raw_best[2] == 0.5
    cal = _calibrated(small + large)
    best = max(cal, key=lambda r: r[0])
    assert (best[1], best[2]) == (75.0, 1.0)


def test_iter_hypotheses_refines_only_what_is_asked_for(data_root, srif_opt_ir_pair,
                                                        monkeypatch):
    """The lazy search gives the list's hypotheses in order, refining each on request, and
    leaves the caller's torch thread count alone while paused."""
    import torch

    import register.search as search

    p = srif_opt_ir_pair
    f = to_gray(read_image(data_root / p.fixed))
    m = to_gray(read_image(data_root / p.moving))
    cfg = Config().search
    every = coarse_hypotheses(f.image, f.mask, m.image, m.mask, cfg)
    refined = []
    real = search._refine
    monkeypatch.setattr(search, "_refine", lambda *a, **k: refined.append(1) or real(*a, **k))
    threads = torch.get_num_threads()
    lazy = iter_hypotheses(f.image, f.mask, m.image, m.mask, cfg)
    first = next(lazy)
    assert len(refined) == 1 and torch.get_num_threads() == threads
    np.testing.assert_array_equal(first.H, every[0].H)
    rest = list(lazy)
    assert [h.angle_deg for h in [first, *rest]] == [h.angle_deg for h in every]
    assert [h.rank for h in [first, *rest]] == list(range(len(every)))


def test_search_for_modality_sar_runs_coarse_search_at_sar_side():
    search = Config().search
    sar = search.for_modality("opt-sar")
    assert (sar.side, sar.fine_px) == (search.sar_side, search.fine_px) == (80, 320)
    assert search.for_modality("vis-nir") is search and search.for_modality("auto") is search
    off = Config().replace(sar_side=None).search  # the general settings for optical-SAR too
    assert off.for_modality("opt-sar") is off


def test_coarse_hypotheses_sar_settings_put_right_hypothesis_first(data_root, corner_error):
    """Validation optical-SAR 96 (held out of training, under the search sweep's seed-1 random
    similarity): at 160 px the right hypothesis comes second; the coarse search at 80 px,
    where speckle averages out, puts it first (docs/results.md, "Optical-SAR search")."""
    from pipelines.datasets import load_pair, validation_pairs
    from register.frames import working_images

    pair = next(p for p in validation_pairs("opt-sar", seed=1, every=3) if p.name == "96")
    fixed, moving = load_pair(pair)
    cfg = Config(modality="opt-sar")
    fw, mw, Sf, Sm = working_images(fixed, moving, cfg)
    truth = Sf @ pair.H_array @ np.linalg.inv(Sm)
    tol = cfg.match.search_radius

    def first_error(search):
        h = next(iter_hypotheses(fw.image, fw.mask, mw.image, mw.mask, search))
        return corner_error(h.H, truth, mw.image.shape)

    assert first_error(cfg.search.for_modality("opt-sar")) < tol < first_error(cfg.search)
