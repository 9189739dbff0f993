"""register.hypotheses: where start transforms come from, in order."""
from __future__ import annotations

import numpy as np

import register.hypotheses as hypotheses
from register.config import Config
from register.frames import working_images
from register.io import read_image
from register.scorers import Timer
from register.search import Hypothesis


def _working(data_root, pair, cfg):
    fw, mw, _, _ = working_images(read_image(data_root / pair.fixed),
                                  read_image(data_root / pair.moving), cfg)
    return fw, mw


def test_find_hypotheses_georeferencing_first_and_no_search(data_root, srif_opt_ir_pair,
                                                             monkeypatch):
    cfg = Config(max_keypoints=32)
    fw, mw = _working(data_root, srif_opt_ir_pair, cfg)
    monkeypatch.setattr(hypotheses, "iter_hypotheses",
                        lambda *a: (_ for _ in ()).throw(AssertionError("searched")))
    georef = Hypothesis(H=np.eye(3), score=0.0, angle_deg=0.0, scale=1.0)
    said, timer = [], Timer()
    found = list(hypotheses.find_hypotheses(fw, mw, cfg, georef, timer=timer,
                                            say=said.append))
    assert found[0] == (georef, "georeferencing")
    assert all(src == "georeferencing" for _, src in found) and len(found) <= 2
    assert said == [] and timer.t["hypotheses"] > 0


def test_find_hypotheses_keypoint_similarity_before_the_search(data_root):
    # MIFNet optical-NIR: SIFT finds the similarity, and it comes before any search result
    cfg = Config(max_keypoints=32)
    d = data_root / "mifnet_examples"
    fw, mw, _, _ = working_images(read_image(d / "opt_nir_1.png"),
                                  read_image(d / "opt_nir_2.png"), cfg)
    said = []
    found = hypotheses.find_hypotheses(fw, mw, cfg, None, timer=Timer(), say=said.append)
    first, source = next(found)
    assert source == "keypoint similarity" and said == []
    _, source = next(found)
    assert source == "rotation/scale search" and said == ["searching rotation and scale hypotheses"]
