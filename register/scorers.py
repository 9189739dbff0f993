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
import torch

from .config import Config, MatchConfig
from .match import Candidates, candidates_to_score
from .patches import crop_patches


class Timer:
    """Seconds per stage, summed over calls (``Result.timings``)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def add(self, name: str, since: float) -> None:
        """Add the time since ``since`` (a ``time.perf_counter()`` value) to stage ``name``."""
        self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - since


class Scorer(Protocol):
    """Scores shortlisted candidates; see the module docstring. ``votes``: whether
    :meth:`score_shifts` gives probabilities (the network's vote needs them)."""

    name: str
    votes: bool

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

    def score_shifts(self, fixed: np.ndarray, moving: np.ndarray, xy: np.ndarray,
                     offsets: np.ndarray, timer: Timer) -> np.ndarray | None:
        """(N, S) float32 match probabilities of the fixed patch at each keypoint ``xy``
        (N, 2) float32 against the moving patch at ``xy + offsets[s]`` ((S, 2) float32 px;
        x = column, y = row, 0-based), or None (the network's vote,
        :func:`register.verify.network_check`). ``fixed``, ``moving`` as in :meth:`score`.
        """


class StructuralScorer:
    """No probabilities: the structural correlation alone ranks the candidates."""

    name = "structural"
    votes = False

    def info(self) -> dict:
        return {"name": self.name, "device": "cpu"}

    def score(self, fixed, moving, cands, timer) -> None:
        return None

    def score_shifts(self, fixed, moving, xy, offsets, timer) -> None:
        return None


class NetworkScorer:
    """SSML-QNet match probabilities of the candidates' 64x64 patch pairs, in batches.

    Work that cannot change a probability is not repeated: each distinct candidate position is
    embedded once and each distinct (keypoint, position) pair goes through the head once (rows
    with fewer than K peaks repeat their last: a third of the pairs in the narrow refinement
    windows), and the fixed patches' features are kept for the current fixed frame, so a
    refinement pass embeds only keypoints it has not seen. The frame is recognised by
    identity: the arrays passed as ``fixed`` must not be changed in place between calls.
    """

    name = "network"
    votes = True

    def __init__(self, model, *, batch_size: int | None = None) -> None:
        self.model = model
        self.batch_size = None if batch_size is None else int(batch_size)  # None: the device's
        # the fixed frame whose patch features are cached, (F, D, 8, 8) features of the
        # keypoints seen in it so far, and each keypoint's (x, y) -> its row
        self._frame: np.ndarray | None = None
        self._features: torch.Tensor | None = None
        self._rows: dict[tuple[float, float], int] = {}

    def info(self) -> dict:
        from .score import model_info

        return {"name": self.name, **model_info(self.model),
                "device": str(next(self.model.parameters()).device)}

    def score(self, fixed, moving, cands, timer) -> np.ndarray:
        from .score import embed, score_features

        n, k = cands.structural.shape
        t = time.perf_counter()
        xy_m, index_m = np.unique(cands.xy_cand.reshape(-1, 2), axis=0, return_inverse=True)
        pm = crop_patches(moving, xy_m)
        timer.add("patches", t)
        rows = self._fixed_rows(fixed, cands.xy_fixed, timer)
        t = time.perf_counter()
        em = embed(self.model, pm, "moving", batch_size=self.batch_size)
        pairs, index_p = np.unique(np.stack([np.repeat(rows, k), index_m.reshape(-1)], 1),
                                   axis=0, return_inverse=True)
        prob = score_features(self.model, self._features, em, pairs[:, 0], pairs[:, 1],
                              batch_size=self.batch_size)
        timer.add("score", t)
        return prob[index_p.reshape(-1)].reshape(n, k)

    def score_shifts(self, fixed, moving, xy, offsets, timer) -> np.ndarray:
        from .score import embed, score_features

        n, s = len(xy), len(offsets)
        if n == 0:
            return np.zeros((0, s), np.float32)
        rows = self._fixed_rows(fixed, xy, timer, stage="network_check")
        t = time.perf_counter()
        pm = crop_patches(moving, (np.asarray(xy, np.float32)[:, None] + offsets[None]
                                   ).reshape(-1, 2))
        timer.add("patches", t)
        t = time.perf_counter()
        em = embed(self.model, pm, "moving", batch_size=self.batch_size)
        prob = score_features(self.model, self._features, em, np.repeat(rows, s),
                              np.arange(n * s), batch_size=self.batch_size)
        timer.add("network_check", t)
        return prob.reshape(n, s)

    def _fixed_rows(self, fixed: np.ndarray, xy: np.ndarray, timer: Timer, *,
                    stage: str = "score") -> np.ndarray:
        """(N,) rows of :attr:`_features` holding the fixed patches at keypoints ``xy``
        (N, 2) float32 (x = column, y = row, 0-based), embedding those not seen before (timed
        as ``stage``)."""
        from .score import embed

        if fixed is not self._frame:
            self._frame, self._features, self._rows = fixed, None, {}
        keys = [(float(x), float(y)) for x, y in xy]
        new = list(dict.fromkeys(key for key in keys if key not in self._rows))
        if new or self._features is None:
            t = time.perf_counter()
            patches = crop_patches(fixed, np.asarray(new, np.float32).reshape(-1, 2))
            timer.add("patches", t)
            t = time.perf_counter()
            feats = embed(self.model, patches, "fixed", batch_size=self.batch_size)
            timer.add(stage, t)
            start = 0 if self._features is None else len(self._features)
            self._features = (feats if self._features is None
                              else torch.cat([self._features, feats]))
            self._rows.update({key: start + i for i, key in enumerate(new)})
        return np.array([self._rows[key] for key in keys], np.int64)


def score_candidates(scorer: Scorer, fixed: np.ndarray, moving: np.ndarray, cands: Candidates,
                     timer: Timer, *, ratio: float, mode: str) -> np.ndarray | None:
    """(N, K) float32 probabilities of the candidates that can change
    :func:`~register.match.select`'s result (``ratio``, ``mode`` as there), 0 at the others;
    None from a scorer that gives none.

    Each keypoint's structurally best candidate is scored first, then only the candidates
    that could still outrank it or stop it (:func:`~register.match.candidates_to_score`): the
    same selection from a third to a half fewer patch pairs on the benchmark pairs.
    """
    n, k = cands.structural.shape
    rows = np.arange(n)
    top = cands.structural.argmax(1)
    first = scorer.score(fixed, moving, cands.pick(rows, top), timer)
    if first is None:
        return None
    prob = np.zeros((n, k), np.float32)
    prob[rows, top] = first[:, 0]
    more = candidates_to_score(prob[rows, top], cands.structural, ratio=ratio, mode=mode)
    if more.any():
        r, c = np.nonzero(more)
        prob[r, c] = scorer.score(fixed, moving, cands.pick(r, c), timer)[:, 0]
    return prob


def needs_network(match: MatchConfig) -> bool:
    """Whether SSML-QNet's probabilities can change the selected matches."""
    return match.selection != "structural" or match.gate > 0


def make_scorer(cfg: Config, *, device: str = "auto", model=None) -> Scorer:
    """The scorer ``cfg.match`` asks for. The network's weights (``cfg.model``) are loaded on
    ``device`` only when it is needed, unless a loaded ``model`` is given; either way it scores
    in ``cfg.precision`` (:func:`register.score.set_precision`, applied to a given model)."""
    if not needs_network(cfg.match):
        return StructuralScorer()
    from .score import load_model, set_precision

    if model is None:
        model = load_model(cfg.model, device, seed=cfg.seed, precision=cfg.precision)
    else:
        set_precision(model, cfg.precision)
    return NetworkScorer(model, batch_size=cfg.match.batch_size)
