"""How a keypoint's shortlisted candidate positions are scored: one small interface, two
scorers.

A scorer gets the fixed frame, the moving image resampled into it under a hypothesis, and the
:class:`~register.match.Candidates` the structural correlation shortlisted, and returns their
match probabilities, or None when it has none to give (the candidates are then ranked by their
structural correlation alone). :class:`StructuralScorer` is that ranking (``selection
"structural"``); :class:`NetworkScorer` (the default, fused selection: best on the validation
split, ``docs/results.md``) scores the 64x64 patch pairs with SSML-QNet, computing each patch's
branch features once (:mod:`register.score`, the only module that moves tensors between
devices). :func:`make_scorer` picks one from a config and loads weights only for the network.
"""
from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from .config import Config, MatchConfig
from .match import Candidates
from .patches import crop_patches


class Timer:
    """Seconds per stage, summed over calls (``Result.timings``)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def add(self, name: str, since: float) -> None:
        """Add the time since ``since`` (a ``time.perf_counter()`` value) to stage ``name``."""
        self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - since


class Scorer(Protocol):
    """Scores shortlisted candidates; see the module docstring."""

    name: str

    def info(self) -> dict:
        """What ran, for reports: ``name`` and, for a network, weights, preset and device."""

    def score(self, fixed: np.ndarray, moving: np.ndarray, cands: Candidates,
              timer: Timer) -> np.ndarray | None:
        """(N, K) float32 match probabilities of ``cands``, or None.

        Args:
            fixed: (H, W) float32 fixed frame.
            moving: (H, W) float32 moving image resampled into that frame.
            cands: N keypoints with K candidate positions each (x = column, y = row, 0-based).
        """


class StructuralScorer:
    """No probabilities: the structural correlation alone ranks the candidates."""

    name = "structural"

    def info(self) -> dict:
        return {"name": self.name, "device": "cpu"}

    def score(self, fixed, moving, cands, timer) -> None:
        return None


class NetworkScorer:
    """SSML-QNet match probabilities of the candidates' 64x64 patch pairs, in batches."""

    name = "network"

    def __init__(self, model, *, batch_size: int = 512) -> None:
        self.model = model
        self.batch_size = int(batch_size)

    def info(self) -> dict:
        from .score import model_info

        return {"name": self.name, **model_info(self.model),
                "device": str(next(self.model.parameters()).device)}

    def score(self, fixed, moving, cands, timer) -> np.ndarray:
        from .score import embed, score_features

        n, k = cands.structural.shape
        t = time.perf_counter()
        pf = crop_patches(fixed, cands.xy_fixed)
        pm = crop_patches(moving, cands.xy_cand.reshape(-1, 2))
        timer.add("patches", t)
        t = time.perf_counter()
        ef = embed(self.model, pf, "fixed", batch_size=self.batch_size)
        em = embed(self.model, pm, "moving", batch_size=self.batch_size)
        prob = score_features(self.model, ef, em, np.repeat(np.arange(n), k), np.arange(n * k),
                              batch_size=self.batch_size).reshape(n, k)
        timer.add("score", t)
        return prob


def needs_network(match: MatchConfig) -> bool:
    """Whether SSML-QNet's probabilities can change the selected matches."""
    return match.selection != "structural" or match.gate > 0


def make_scorer(cfg: Config, *, device: str = "auto", model=None) -> Scorer:
    """The scorer ``cfg.match`` asks for. The network's weights (``cfg.model``) are loaded on
    ``device`` only when it is needed, unless a loaded ``model`` is given."""
    if not needs_network(cfg.match):
        return StructuralScorer()
    if model is None:
        from .score import load_model

        model = load_model(cfg.model, device, seed=cfg.seed)
    return NetworkScorer(model, batch_size=cfg.match.batch_size)
