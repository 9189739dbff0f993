"""register.scorers: which scorer a config picks, what each gives, and that the network's
weights are loaded only when a scorer needs them."""
from __future__ import annotations

import numpy as np
import pytest

import register.score
from register.config import Config
from register.detect import detect
from register.io import read_image, to_gray
from register.match import shortlist
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
    assert scorer.info() == {"name": "network", "weights": "random-init lite (seed 0)",
                             "preset": "lite", "device": "cpu"}


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
