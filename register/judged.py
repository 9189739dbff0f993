"""What the pipeline's stages hand each other: the matches located under a transform, a
transform's judgement (its matches, the global check, the evidence and the verdict), a judged
hypothesis, and what the hypothesis loop found. Small frozen records; the procedure is
:mod:`register.pipeline`.

Transforms are (3, 3) float64 homographies mapping working moving px to working fixed px
(x = column, y = row, 0-based).
"""
from __future__ import annotations

from dataclasses import dataclass

from .decide import Evidence, Verdict, rank
from .estimate import Estimate
from .match import Matches
from .search import Hypothesis
from .verify import Check


@dataclass(frozen=True)
class Located:
    """Matches located under one transform: working px, with the keypoint and candidate
    counts of that matching."""

    matches: Matches
    keypoints: int
    candidates: int

    def counts(self, inliers: int) -> dict:
        """``Result.counts`` of these matches with ``inliers`` RANSAC inliers."""
        return dict(num_keypoints=self.keypoints, num_candidates=self.candidates,
                    num_matches=len(self.matches), num_inliers=inliers)


@dataclass(frozen=True)
class Judged:
    """A transform, the matches it was fitted to, the global check and the verdict on it."""

    est: Estimate
    located: Located
    check: Check
    evidence: Evidence
    verdict: Verdict

    @property
    def rank(self) -> tuple[bool, float]:
        """Order of preference (:func:`register.decide.rank`)."""
        return rank(self.evidence, self.verdict)


@dataclass(frozen=True)
class Candidate:
    """A hypothesis RANSAC supported, judged; ``source`` says where the hypothesis came from."""

    judged: Judged
    hyp: Hypothesis
    source: str


@dataclass(frozen=True)
class Trial:
    """What the hypothesis loop found: the best candidate (None when RANSAC supported none),
    the (counts, reason, located matches) of each hypothesis RANSAC did not support, every
    supported one in order (the report's ``Result.candidates``), the hypotheses' sources in
    order, and how many were tried."""

    best: Candidate | None
    unsupported: list
    supported: list
    sources: list
    tried: int
