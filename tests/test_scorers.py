"""register.scorers: which scorer a config picks, what each gives, and that the network's
weights are loaded only when a scorer needs them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import register.score
from register.config import Config
from register.detect import detect
from register.io import read_image, to_gray
from register.match import shortlist
from register.patches import crop_patches
from register.score import native_bfloat16
from register.scorers import (NetworkScorer, StructuralScorer, Timer, make_scorer,
                              needs_network)
from register.structural import oriented_gradient_channels


@pytest.mark.parametrize("changes, network", [
    ({}, True),  # the default: fused
    ({"selection": "structural"}, False),
    ({"selection": "network"}, True),
    ({"selection": "structural", "min_probability": 0.3}, True),  # a gate needs probabilities
])
def test_needs_network_follows_selection_and_gate(changes, network):
    assert needs_network(Config().replace(**changes).match) is network


def test_make_scorer_structural_never_loads_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_model called for the structural scorer")

    monkeypatch.setattr(register.score, "load_model", refuse)
    scorer = make_scorer(Config(model="/no/such/weights.pt").replace(selection="structural"))
    assert isinstance(scorer, StructuralScorer)
    assert scorer.info() == {"name": "structural", "device": "cpu"}


def test_make_scorer_network_loads_the_configured_weights():
    scorer = make_scorer(Config(model="random").replace(selection="network"), device="cpu")
    assert isinstance(scorer, NetworkScorer)
    native = native_bfloat16(torch.device("cpu"))
    assert scorer.info() == {"name": "network", "weights": "random-init lite (seed 0)",
                             "preset": "lite", "device": "cpu",
                             "precision": "bfloat16" if native else "float32"}


@pytest.fixture(scope="module")
def candidates(data_root, srif_opt_ir_pair):
    """A real optical-infrared pair resampled by its truth, and its shortlisted candidates."""
    import cv2

    p = srif_opt_ir_pair
    f = to_gray(read_image(data_root / p.fixed))
    m = to_gray(read_image(data_root / p.moving))
    h, w = f.image.shape
    mi = cv2.warpPerspective(m.image, p.H_array, (w, h))
    mm = cv2.warpPerspective(m.mask.astype(np.uint8), p.H_array, (w, h)).astype(bool)
    kp = detect(f.image, f.mask & mm, max_keypoints=16, border=40)
    cands = shortlist(oriented_gradient_channels(f.image, f.mask),
                      oriented_gradient_channels(mi, mm), np.round(kp.xy), radius=8, k=3,
                      half=20)
    return f.image, mi, cands


def test_make_scorer_runs_a_given_model_in_the_configured_precision(random_model):
    cfg = Config(model="random").replace(selection="network")
    for precision in ("float32", "bfloat16"):
        scorer = make_scorer(cfg.replace(precision=precision), model=random_model)
        assert scorer.model is random_model and scorer.info()["precision"] == precision
    make_scorer(cfg, model=random_model)  # back to "auto", as the session-wide fixture was


def test_structural_scorer_gives_no_probabilities(candidates):
    fixed, moving, cands = candidates
    timer = Timer()
    assert StructuralScorer().score(fixed, moving, cands, timer) is None
    assert timer.t == {}  # no stage was run, none is reported


def test_network_scorer_scores_every_candidate_and_times_its_stages(candidates, random_model):
    fixed, moving, cands = candidates
    timer = Timer()
    prob = NetworkScorer(random_model, batch_size=7).score(fixed, moving, cands, timer)
    assert prob.shape == cands.structural.shape and prob.dtype == np.float32
    assert np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()
    assert set(timer.t) == {"patches", "score"} and timer.t["score"] > 0


def test_network_scorer_reuses_work_without_changing_a_probability(candidates, random_model):
    """Repeated candidate positions and fixed keypoints seen in an earlier pass are embedded
    once; the probabilities equal scoring every pair afresh, and a new frame starts over."""
    from register.match import Candidates
    from register.score import score_pairs

    fixed, moving, cands = candidates
    xy_cand = cands.xy_cand.copy()
    xy_cand[:, -1] = xy_cand[:, 0]  # duplicate positions, as rows with fewer peaks have
    dup = Candidates(cands.xy_fixed, xy_cand, cands.structural)
    n, k = dup.structural.shape
    direct = score_pairs(random_model, crop_patches(fixed, np.repeat(dup.xy_fixed, k, 0)),
                         crop_patches(moving, xy_cand.reshape(-1, 2))).reshape(n, k)
    scorer = NetworkScorer(random_model, batch_size=5)
    import register.score as score_module

    heads = []
    real = score_module.score_features

    def counting(model, ff, fm, i_f, i_m, **kw):
        heads.append(len(i_f))
        return real(model, ff, fm, i_f, i_m, **kw)

    score_module.score_features = counting
    try:
        np.testing.assert_allclose(scorer.score(fixed, moving, dup, Timer()), direct, atol=1e-5)
    finally:
        score_module.score_features = real
    assert len(scorer._features) == n
    # each distinct (keypoint, position) pair went through the head once
    distinct = len({(i, tuple(p)) for i in range(n) for p in xy_cand[i]})
    assert heads == [distinct] and heads[0] < n * k
    # a second pass over part of the same keypoints embeds none of them again
    half = Candidates(dup.xy_fixed[::2], xy_cand[::2], dup.structural[::2])
    np.testing.assert_allclose(scorer.score(fixed, moving, half, Timer()), direct[::2],
                               atol=1e-5)
    assert len(scorer._features) == n
    # another frame (a copy with other pixels) is embedded afresh, not read from the cache
    other = np.ascontiguousarray(fixed[::-1])
    again = scorer.score(other, moving, dup, Timer())
    assert len(scorer._features) == n
    expected = score_pairs(random_model, crop_patches(other, np.repeat(dup.xy_fixed, k, 0)),
                           crop_patches(moving, xy_cand.reshape(-1, 2))).reshape(n, k)
    np.testing.assert_allclose(again, expected, atol=1e-5)
    assert not np.allclose(again, direct, atol=1e-3)


def test_network_scorer_score_shifts_equals_scoring_each_shifted_pair(candidates, random_model):
    """The vote's (N, S) probabilities are those of the fixed patch against the moving patch
    moved by each offset, scored pair by pair."""
    from register.score import score_pairs
    from register.verify import shift_grid

    fixed, moving, cands = candidates
    xy = cands.xy_fixed[:6]
    offsets, _ = shift_grid(8, 4)
    timer = Timer()
    prob = NetworkScorer(random_model, batch_size=9).score_shifts(fixed, moving, xy, offsets,
                                                                  timer)
    s = len(offsets)
    direct = score_pairs(random_model, crop_patches(fixed, np.repeat(xy, s, 0)),
                         crop_patches(moving, (xy[:, None] + offsets[None]).reshape(-1, 2)))
    assert prob.shape == (6, s)
    np.testing.assert_allclose(prob, direct.reshape(6, s), atol=1e-5)
    assert timer.t["network_check"] > 0
    empty = NetworkScorer(random_model).score_shifts(fixed, moving, xy[:0], offsets, Timer())
    assert empty.shape == (0, s)
    assert StructuralScorer().score_shifts(fixed, moving, xy, offsets, Timer()) is None


@pytest.mark.parametrize("mode", ["fused", "structural"])
def test_score_candidates_selects_as_scoring_all_from_fewer_pairs(candidates, random_model,
                                                                   mode):
    from register.match import select
    from register.scorers import score_candidates

    fixed, moving, cands = candidates
    full = NetworkScorer(random_model).score(fixed, moving, cands, Timer())
    seen = []

    class Counting(NetworkScorer):
        def score(self, fixed, moving, cands, timer):
            seen.append(cands.structural.size)
            return super().score(fixed, moving, cands, timer)

    part = score_candidates(Counting(random_model), fixed, moving, cands, Timer(), ratio=1.0,
                            mode=mode)
    finite = np.isfinite(cands.structural)
    full, part = np.where(finite, full, 0.0), np.where(finite, part, 0.0)
    for_full = select(full, cands.structural, min_probability=0.3, ratio=1.0, mode=mode)
    for_part = select(part, cands.structural, min_probability=0.3, ratio=1.0, mode=mode)
    np.testing.assert_array_equal(for_part[0], for_full[0])
    np.testing.assert_array_equal(for_part[1][for_part[0]], for_full[1][for_full[0]])
    assert sum(seen) < finite.sum() and seen[0] == len(cands)
    scored = part != 0
    np.testing.assert_allclose(part[scored], full[scored], atol=1e-5)


def test_score_candidates_passes_on_a_scorer_without_probabilities(candidates):
    from register.scorers import score_candidates

    fixed, moving, cands = candidates
    assert score_candidates(StructuralScorer(), fixed, moving, cands, Timer(), ratio=1.0,
                            mode="fused") is None
