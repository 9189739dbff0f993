"""Where a pair's start transforms come from, cheapest first: the georeferencing (and its
correction by a global shift), else a SIFT similarity (:mod:`register.sift`), then the
rotation/scale search (:mod:`register.search`), each only when the ones before it did not end
the caller's loop.

Transforms are (3, 3) float64 homographies mapping working moving px to working fixed px
(x = column, y = row, 0-based).
"""
from __future__ import annotations

import time
from typing import Callable, Iterator

from .config import Config
from .geometry import corner_distance
from .io import GrayImage
from .scorers import Timer
from .search import Hypothesis, iter_hypotheses, translation_hypothesis
from .sift import keypoint_hypothesis

#: the source name of the rotation/scale search's hypotheses
SEARCH = "rotation/scale search"


def find_hypotheses(fixed: GrayImage, moving: GrayImage, cfg: Config,
                    georef: Hypothesis | None, *, timer: Timer,
                    say: Callable[[str], None]) -> Iterator[tuple[Hypothesis, str]]:
    """(hypothesis, where it came from), lazily, for the working images ``fixed`` and
    ``moving``. With ``georef`` (both inputs georeferenced): it, then its shift-corrected
    version when that moves it more than ``cfg.policy.georef_min_shift``. Without: the SIFT
    similarity (when ``cfg.search.keypoint_hypothesis``), then the search's hypotheses, each
    refined only when asked for. Time spent is added to ``timer``'s "hypotheses"."""
    fw, mw = fixed, moving
    if georef is not None:
        yield georef, "georeferencing"
        t = time.perf_counter()  # only when the georeferencing itself did not end the loop
        shifted = translation_hypothesis(fw.image, fw.mask, mw.image, mw.mask, georef.H,
                                         cfg.search)
        timer.add("hypotheses", t)
        if corner_distance(shifted.H, georef.H, fw.image.shape) > cfg.policy.georef_min_shift:
            yield shifted, "georeferencing"
        return
    t = time.perf_counter()
    if cfg.search.keypoint_hypothesis:
        kh = keypoint_hypothesis(fw.image, fw.mask, mw.image, mw.mask, cfg.search)
        timer.add("hypotheses", t)
        if kh is not None:
            yield kh, "keypoint similarity"
    say("searching rotation and scale hypotheses")
    found = iter_hypotheses(fw.image, fw.mask, mw.image, mw.mask,
                            cfg.search.for_modality(cfg.modality))
    while True:  # each refined only when the loop asks for it
        t = time.perf_counter()
        h = next(found, None)
        timer.add("hypotheses", t)
        if h is None:
            return
        yield h, SEARCH
