"""register.polish: a similarity correction that maximises the global structural correlation."""
from __future__ import annotations

import numpy as np
import pytest

from register.config import Config
from register.frames import working_images
from register.geometry import similarity
from register.polish import polish_similarity

STEPS = Config().polish.steps


@pytest.fixture(scope="module")
def sar_pair(data_root):
    """A validation optical-SAR pair in working px: (fixed, moving, true H)."""
    from pipelines.datasets import load_pair, split

    pair = next(p for p in split("val/opt-sar", val_every=3) if p.name == "117")
    fixed, moving = load_pair(pair)
    fw, mw, Sf, Sm = working_images(fixed, moving, Config(modality="opt-sar"))
    return fw, mw, Sf @ pair.H_array @ np.linalg.inv(Sm)


def _off(fw, H):
    """A similarity error as a registration leaves one: 3 px, 1 degree, 2 % about the centre."""
    h, w = fw.image.shape
    c = ((w - 1) / 2, (h - 1) / 2)
    P = similarity(1.0, 1.02, c, (c[0] + 3.0, c[1] - 2.0))
    return P @ H


def test_polish_similarity_brings_a_disturbed_optimum_back(sar_pair, corner_error):
    """The correlation's optimum (reached from the truth: on this pair 6 working px from the
    corrected truth, the criterion's own bias) is found again from 15 px away."""
    fw, mw, H = sar_pair
    best = polish_similarity(fw.image, fw.mask, mw.image, mw.mask, H, side=320, steps=STEPS,
                             rounds=4)
    start = _off(fw, best.H)
    p = polish_similarity(fw.image, fw.mask, mw.image, mw.mask, start, side=320, steps=STEPS,
                          rounds=4)
    before, after = (corner_error(x, best.H, fw.image.shape) for x in (start, p.H))
    assert before > 10.0 and after < 0.2 * before
    assert p.score_after > p.score_before and p.moved_px > 5.0 and p.evaluations > 20


def test_polish_similarity_leaves_its_own_result(sar_pair):
    fw, mw, H = sar_pair
    once = polish_similarity(fw.image, fw.mask, mw.image, mw.mask, _off(fw, H), side=320,
                             steps=STEPS, rounds=4)
    twice = polish_similarity(fw.image, fw.mask, mw.image, mw.mask, once.H, side=320,
                              steps=STEPS, rounds=4)
    assert twice.moved_px < 0.5 and twice.score_after >= once.score_after


def test_register_pair_polishes_only_the_listed_modalities(data_root):
    from pipelines.datasets import load_pair, split
    from register.api import register_pair

    pair = next(p for p in split("val/opt-sar", val_every=3) if p.name == "117")
    fixed, moving = load_pair(pair)
    sar = register_pair(fixed, moving, Config(modality="opt-sar", make_figures=False),
                        model=None, device="cpu")
    assert sar.ok and set(sar.verification["polish"]) == {
        "moved_px", "correlation_before", "correlation_after", "kept"}
    assert "polish" in sar.timings
    off = register_pair(fixed, moving, Config(modality="opt-sar", make_figures=False).replace(
        polish={"modalities": ()}), device="cpu")
    assert "polish" not in off.verification and "polish" not in off.timings


def test_register_pair_refits_the_polished_transform_to_its_inliers(data_root):
    """With ``PolishConfig.refit`` the final transform is the least-squares fit of its model
    to the matches the polished transform agrees with: the run without the refit reports
    exactly those (its inliers), so refitting them reproduces the run with it."""
    from pipelines.datasets import load_pair, split
    from register.api import register_pair
    from register.estimate import Estimate, refit

    pair = next(p for p in split("val/opt-sar", val_every=3) if p.name == "6")
    fixed, moving = load_pair(pair)
    cfg = Config(modality="opt-sar", make_figures=False)
    on = register_pair(fixed, moving, cfg, device="cpu")
    off = register_pair(fixed, moving, cfg.replace(polish={"refit": False}), device="cpu")
    assert on.ok and off.ok and on.verification["polish"]["kept"]
    assert on.verification["polish"] == off.verification["polish"]  # the same polish
    model = off.verification["transform"]
    m = off.matches
    again = refit(Estimate(off.H, off.inliers, off.rmse_px, model), m.xy_moving, m.xy_fixed,
                  moving.shape, threshold=cfg.estimate.ransac_threshold)
    np.testing.assert_allclose(again.H, on.H, atol=1e-6)
    assert np.abs(on.H - off.H).max() > 0.1  # the refit moved it
