"""The registration procedure's parts: propose hypotheses, match and fit under one, judge, refine,
recentre. :func:`register.api.register_pair` is a short loop over them.

A :class:`Pipeline` holds one pair's working images, its config, its scorer, the caches
(the fixed frame at each matching zoom, the matches located under each transform) and the
timer. Everything it judges goes through :func:`register.decide.judge`; this module holds no
threshold of its own. The records its parts hand each other are in :mod:`register.judged`.

All transforms are (3, 3) float64 homographies mapping working moving px to working fixed px
(x = column, y = row, 0-based) unless a name says otherwise.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from .checks import RegistrationFailed
from .config import BORDER_PX, Config
from .decide import (Evidence, clearly_supported, judge, keeps_refining, late_hypothesis,
                     prefers_perspective, refinement_converged, tries_late, wants_recentring)
from .detect import detect
from .estimate import Estimate, affine_deviation, estimate, support_of
from .frames import enlarge, match_zoom
from .geometry import corner_distance, transfer
from .io import GrayImage
from .match import Matches, select, shortlist
from .hypotheses import SEARCH, find_hypotheses
from .judged import Candidate, Judged, Located, Trial
from .patches import warp_to_frame
from .scorers import Scorer, Timer, score_candidates
from .search import Hypothesis
from .sift import keypoint_support
from .structural import oriented_gradient_channels
from .verify import (Check, CheckFrame, NetworkVote, check_frame, network_check,
                     verify_alignment)

#: half-size of the structural template the shortlist correlates (px of the matching frame)
TEMPLATE_HALF = 20


class Pipeline:
    """One pair's registration procedure (see the module docstring).

    Args:
        fixed, moving: working images (:func:`register.frames.working_images`).
        cfg: the whole config; each stage reads its own group.
        scorer: ranks the shortlisted candidates (:mod:`register.scorers`).
        timer: collects seconds per stage.
        say: progress messages.
    """

    def __init__(self, fixed: GrayImage, moving: GrayImage, cfg: Config, scorer: Scorer,
                 timer: Timer, say: Callable[[str], None]):
        self.fixed, self.moving, self.cfg, self.scorer = fixed, moving, cfg, scorer
        self.timer, self.say = timer, say
        self.frames: dict[float, tuple[GrayImage, np.ndarray, np.ndarray]] = {}
        self.located: dict[tuple[bytes, int], Located] = {}
        self.checks: dict[bytes, Check] = {}
        self._check_frame: CheckFrame | None = None
        # refinements done, by start transform, inlier count and models: early refinement's
        # result is reused by the final one instead of fitted again
        self.refined: dict[tuple[bytes, int, tuple[str, ...]], tuple["Judged", float]] = {}
        self.support: tuple[np.ndarray, np.ndarray] | None = None  # SIFT correspondences
        self.models = cfg.estimate.auto_models  # what transform="auto" compares
        self._hypotheses: tuple[list, Iterator] | None = None  # found so far, and the source

    @contextmanager
    def comparing(self, models: tuple[str, ...]) -> Iterator[None]:
        """Within the block, ``transform="auto"`` compares ``models``; restored after."""
        before, self.models = self.models, tuple(models)
        try:
            yield
        finally:
            self.models = before

    # -- hypotheses ------------------------------------------------------------------------------
    def hypotheses(self, georef: Hypothesis | None) -> Iterator[tuple[Hypothesis, str]]:
        """(hypothesis, where it came from), lazily: each cheaper source first, the search only
        when the hypotheses before it did not end the loop. Found once per pair: a second loop
        (other transform models) replays them, then goes on where the first stopped
        (:func:`register.hypotheses.find_hypotheses`)."""
        if self._hypotheses is None:
            self._hypotheses = ([], find_hypotheses(self.fixed, self.moving, self.cfg, georef,
                                                      timer=self.timer, say=self.say))
        found, source = self._hypotheses
        i = 0
        while True:
            if i == len(found):
                nxt = next(source, None)
                if nxt is None:
                    return
                found.append(nxt)
            yield found[i]
            i += 1

    # -- matching and fitting --------------------------------------------------------------------
    def zoom_for(self, H: np.ndarray) -> float:
        """Enlargement of the fixed frame that matching under ``H`` uses."""
        fr = self.cfg.frames
        return match_zoom(H, self.moving.image.shape, self.fixed.image.shape,
                          min_side=fr.match_min_side, max_zoom=fr.match_max_zoom)

    def fixed_frame(self, zoom: float) -> tuple[GrayImage, np.ndarray, np.ndarray]:
        """The fixed image at a matching zoom, its channels and the map to it from working px."""
        if zoom not in self.frames:
            g, Z = (self.fixed, np.eye(3)) if zoom == 1.0 else enlarge(self.fixed, zoom)
            self.frames[zoom] = (g, oriented_gradient_channels(g.image, g.mask), Z)
        return self.frames[zoom]

    def match(self, H: np.ndarray, radius: int) -> Located:
        """Matches under ``H`` in working px; each (``H``, ``radius``) is matched once (a
        failure's counts and the georeferencing's own judgement reuse them). ``radius`` and the
        keypoint border are in the matching frame's px (radius / zoom working px)."""
        key = (np.asarray(H, np.float64).tobytes(), radius)
        if key not in self.located:
            zoom = self.zoom_for(H)
            frame, feat, Z = self.fixed_frame(zoom)
            loc = self._locate(Z @ H, frame, feat, radius)
            if zoom != 1.0:  # back to working fixed px
                m = loc.matches
                xy = transfer(np.linalg.inv(Z), m.xy_fixed).astype(np.float32)
                loc = Located(Matches(xy, m.xy_moving, m.probability), loc.keypoints,
                              loc.candidates)
            self.located[key] = loc
        return self.located[key]

    def _locate(self, H: np.ndarray, frame: GrayImage, feat_fixed: np.ndarray,
                radius: int) -> Located:
        """Detect keypoints in ``frame``, shortlist candidates in the moving image resampled
        under ``H`` (working moving px -> frame px), score and select; frame px."""
        timer, mc = self.timer, self.cfg.match
        t = time.perf_counter()
        mi, mm = warp_to_frame(self.moving.image, self.moving.mask, H, frame.image.shape)
        valid = frame.mask & mm
        timer.add("warp_hypothesis", t)
        t = time.perf_counter()
        kp = detect(frame.image, valid, max_keypoints=self.cfg.max_keypoints,
                    detector=mc.detector, nms_radius=mc.nms_radius,
                    border=max(BORDER_PX, TEMPLATE_HALF + radius + 1))
        timer.add("detect", t)
        if len(kp) == 0:
            empty = np.zeros((0, 2), np.float32)
            return Located(Matches(empty, empty, np.zeros(0, np.float32)), 0, 0)
        t = time.perf_counter()
        first = radius >= int(mc.search_radius)
        k = max(1, int(mc.shortlist if first or mc.refine_shortlist is None
                       else mc.refine_shortlist))
        cands = shortlist(feat_fixed, oriented_gradient_channels(mi, mm), np.round(kp.xy),
                          radius=radius, k=k, half=TEMPLATE_HALF)
        timer.add("shortlist", t)
        n = len(cands)
        scored = mc.network_min_radius <= radius and (mc.network_max_radius is None
                                                       or radius <= mc.network_max_radius)
        prob = (score_candidates(self.scorer, frame.image, mi, cands, timer, ratio=mc.ratio,
                                 mode=mc.selection) if scored else None)
        prob = np.ones((n, k), np.float32) if prob is None else prob
        prob = np.where(np.isfinite(cands.structural), prob, 0.0)
        keep, best = select(prob, cands.structural, min_probability=mc.gate,
                            ratio=mc.ratio, mode=mc.selection)
        xy_c = cands.xy_cand[np.arange(n), best][keep]
        xy_m = transfer(np.linalg.inv(H), xy_c).astype(np.float32)
        p = prob[np.arange(n), best][keep].astype(np.float32)
        return Located(Matches(cands.xy_fixed[keep].astype(np.float32), xy_m, p), n, n * k)

    def fit(self, H: np.ndarray, radius: int) -> tuple[Estimate, Located]:
        """Matches under ``H`` and the RANSAC transform they support; raises
        :class:`~register.checks.RegistrationFailed` when they support none."""
        loc = self.match(H, radius)
        return self.estimate(loc), loc

    def estimate(self, loc: Located) -> Estimate:
        """The RANSAC transform ``loc``'s matches support (:func:`register.estimate.estimate`,
        comparing :attr:`models`); raises :class:`~register.checks.RegistrationFailed`."""
        ec = self.cfg.estimate
        t = time.perf_counter()
        try:
            return estimate(loc.matches.xy_moving, loc.matches.xy_fixed, self.moving.image.shape,
                            transform=self.cfg.transform, threshold=ec.ransac_threshold,
                            iterations=ec.ransac_iterations, min_inliers=ec.min_inliers,
                            seed=self.cfg.seed, weights=loc.matches.probability,
                            models=self.models)
        finally:
            self.timer.add("estimate", t)

    # -- judging ---------------------------------------------------------------------------------
    def check(self, H: np.ndarray) -> Check:
        """The global structural check of ``H`` (:func:`register.verify.verify_alignment`), run
        once per transform (the georeferencing's is asked for by its judgement and again when
        a failure reports it)."""
        key = np.asarray(H, np.float64).tobytes()
        if key not in self.checks:
            fw, mw = self.fixed, self.moving
            t = time.perf_counter()
            self.checks[key] = verify_alignment(fw.image, fw.mask, mw.image, mw.mask, H,
                                                self.cfg.verify.side, frame=self.verify_frame)
            self.timer.add("verify", t)
        return self.checks[key]

    @property
    def verify_frame(self) -> CheckFrame:
        """The check's fixed side (:func:`register.verify.check_frame`), made once per pair;
        its ``d`` turns working px into check px."""
        if self._check_frame is None:
            fw = self.fixed
            self._check_frame = check_frame(fw.image, fw.mask, self.cfg.verify.side)
        return self._check_frame

    def judge(self, est: Estimate, loc: Located, *, confirmed_before: bool = True,
              late: bool = False) -> Judged:
        """The global check of ``est``, the evidence and :func:`register.decide.judge`'s verdict
        (``late``: ``est`` comes from a late search hypothesis, :func:`late_hypothesis`)."""
        fw, mw = self.fixed, self.moving
        check = self.check(est.H)
        n_kp = (None if self.support is None else
                keypoint_support(est.H, *self.support, self.cfg.estimate.ransac_threshold))
        ev = Evidence(z=check.z, shift=check.shift * self.verify_frame.d,  # check px
                      inliers=est.num_inliers, keypoints=loc.keypoints, keypoint_support=n_kp,
                      bend=affine_deviation(est.H, fw.image.shape, mw.image.shape),
                      frame_side=float(max(fw.image.shape)),
                      confirmed_before=confirmed_before, late=late)
        return Judged(est, loc, check, ev, judge(ev, self.cfg.policy))

    def rejudge(self, est: Estimate, loc: Located, source: Judged) -> Judged:
        """:meth:`judge` of a transform derived from ``source``'s (refined, recentred, refitted
        with other models, polished): it keeps where ``source`` came from, its evidence's
        ``confirmed_before`` and ``late``."""
        ev = source.evidence
        return self.judge(est, loc, confirmed_before=ev.confirmed_before, late=ev.late)

    def network_vote(self, H: np.ndarray) -> NetworkVote | None:
        """The network's vote on ``H`` (working px) in its matching frame
        (:func:`register.verify.network_check`); None without a network."""
        frame, _, Z = self.fixed_frame(self.zoom_for(H))
        return network_check(self.scorer, frame, self.moving, Z @ H, self.cfg.verify, self.timer)

    def try_hypotheses(self, georef: Hypothesis | None) -> Trial:
        """Match, fit and judge each hypothesis in turn; the best by :attr:`Judged.rank` wins
        (inlier counts favour large overlaps, so a wrong hypothesis covering the whole image
        can out-count a right one at a small scale). A clearly supported one ends the loop
        (:func:`register.decide.clearly_supported`), and so does a confirmed one whose
        refinement is clearly supported (``MatchConfig.early_refine``; it then wins, and the
        caller's :meth:`refine` of it returns that refinement). The search's late hypotheses
        (:func:`register.decide.late_hypothesis`) are matched only while nothing was accepted
        (:func:`register.decide.tries_late`)."""
        radius = int(self.cfg.match.search_radius)
        best, unsupported, supported, sources, tried = None, [], [], [], 0
        for hyp, source in self.hypotheses(georef):
            tried += 1
            sources += [source] if source not in sources else []
            self.support = hyp.support if hyp.support is not None else self.support
            self.say(f"scoring hypothesis {tried} ({source}: rotation {hyp.angle_deg:.0f} deg, "
                     f"scale {hyp.scale:.2f})")
            try:
                judged = self.judge(*self.fit(hyp.H, radius),
                                    late=late_hypothesis(hyp.rank, self.cfg.policy))
            except RegistrationFailed as exc:
                loc = self.match(hyp.H, radius)
                unsupported.append((loc.counts(0), exc.reason, loc))
            else:
                supported.append(Candidate(judged, hyp, source))
                if best is None or judged.rank > best.judged.rank:
                    best = supported[-1]
                if clearly_supported(judged.evidence, judged.verdict, self.cfg.policy):
                    break
                if self.cfg.match.early_refine and judged.verdict.accepted:
                    refined = self.refine(judged)[0]
                    if clearly_supported(refined.evidence, refined.verdict, self.cfg.policy):
                        best = supported[-1]
                        break
            if (source == SEARCH and late_hypothesis(hyp.rank + 1, self.cfg.policy)
                    and not tries_late(None if best is None else best.judged.verdict)):
                break  # the search's next hypothesis is late: a fallback, not needed
        return Trial(best, unsupported, supported, sources, tried)

    def georeferencing_prior(self, georef: Hypothesis | None) -> Candidate | None:
        """The georeferencing itself as a candidate transform, when its own matches support it
        and the check confirms it: on small or low-structure tiles the matches can support a
        fit a few pixels worse than the georeferencing they started from."""
        if georef is None:
            return None
        loc = self.match(georef.H, int(self.cfg.match.search_radius))  # the loop's first
        est = support_of(georef.H, loc.matches.xy_moving, loc.matches.xy_fixed,
                         threshold=self.cfg.estimate.ransac_threshold, model="georeferencing")
        if est.num_inliers < self.cfg.estimate.min_inliers:
            return None
        judged = self.judge(est, loc)
        return Candidate(judged, georef, "georeferencing") if judged.verdict.accepted else None

    # -- refining --------------------------------------------------------------------------------
    def refine(self, judged: Judged) -> tuple[Judged, float]:
        """Refine with halved search windows while the matches keep most of the inliers
        (:func:`register.decide.keeps_refining`) and the transform still moves
        (:func:`register.decide.refinement_converged`). The refined transform is judged
        afresh: a wrong hypothesis tends to fall apart under refinement. Returns it and the
        last window (matching-frame px); each start is refined once per pair and models."""
        key = (np.asarray(judged.est.H, np.float64).tobytes(), judged.est.num_inliers,
               tuple(self.models))
        if key not in self.refined:
            self.refined[key] = self._refine(judged)
        return self.refined[key]

    def _refine(self, judged: Judged) -> tuple[Judged, float]:
        est, loc, changed = judged.est, judged.located, False
        radius = float(self.cfg.match.search_radius)
        for it in range(self.cfg.match.refine_iterations):
            radius = max(3.0, radius / 2)
            self.say(f"refining ({it + 1}/{self.cfg.match.refine_iterations})")
            try:
                r_est, r_loc = self.fit(est.H, int(radius))
            except RegistrationFailed:
                break
            if not keeps_refining(est.num_inliers, r_est.num_inliers, self.cfg.policy):
                break
            moved = corner_distance(est.H, r_est.H, self.fixed.image.shape)
            est, loc, changed = r_est, r_loc, True
            if refinement_converged(moved, self.cfg.policy):
                break
        return (self.rejudge(est, loc, judged) if changed else judged), radius

    def recentre(self, judged: Judged, radius: float) -> tuple[Judged, bool]:
        """When the check's peak is off zero shift but within the last matching window
        (:func:`register.decide.wants_recentring`), match once more from the transform moved
        onto the peak and keep whichever the check ranks higher. Returns the kept transform and
        whether it is the recentred one."""
        window = radius / self.zoom_for(judged.est.H)  # the last matching window in working px
        if not wants_recentring(judged.evidence.shift, judged.check.shift, window,
                                self.cfg.policy):
            return judged, False
        self.say("recentring on the check's peak")
        try:
            again = self.rejudge(*self.fit(judged.check.recentred(judged.est.H), int(radius)),
                                 judged)
        except RegistrationFailed:
            return judged, False
        return (again, True) if again.rank > judged.rank else (judged, False)

    def perspective(self, start: Candidate, judged: Judged) -> Judged:
        """When lower-order models were tried first (optical-SAR), fit the general models to
        the start hypothesis's own matches and refine; if the refinement ends in a homography,
        let it replace ``judged`` when :func:`register.decide.prefers_perspective` says so.
        (Refined even when GRIC prefers an affine transform on the first, widest matching:
        on the oblique MIFNet demo pair the homography appears only in the narrower passes,
        and without it ``--modality opt-sar`` accepted an affine transform 49 px from it.)"""
        general = self.cfg.estimate.auto_models
        if self.cfg.transform != "auto" or self.models == general:
            return judged
        try:
            with self.comparing(general):
                est, loc = self.fit(start.hyp.H, int(self.cfg.match.search_radius))
                self.say("trying a homography")
                h, _ = self.refine(self.rejudge(est, loc, start.judged))
            if h.est.model != "homography":
                return judged
        except RegistrationFailed:
            return judged
        ev, hv = h.evidence, h.verdict
        return h if prefers_perspective(judged.evidence, judged.verdict, ev, hv,
                                        self.cfg.policy) else judged

    def lower_order(self, judged: Judged, models: tuple[str, ...]) -> Judged:
        """A homography found with the general models after ``models`` (optical-SAR's lower
        orders) confirmed nothing gives way to the lower-order transform fitted to its own
        final matches, unless :func:`register.decide.prefers_perspective` prefers it: the same
        prior as the first try, now on matches the refinement has made."""
        if judged.est.model != "homography" or self.cfg.transform != "auto":
            return judged
        try:
            with self.comparing(models):
                self.say(f"trying {' or '.join(models)} on the homography's matches")
                est = self.estimate(judged.located)
        except RegistrationFailed:
            return judged
        simple = self.rejudge(est, judged.located, judged)
        return judged if prefers_perspective(simple.evidence, simple.verdict, judged.evidence,
                                             judged.verdict, self.cfg.policy) else simple

