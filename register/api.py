"""``register_pair``: register one pair of images.

Stages: io -> hypotheses (georeferencing; or a SIFT similarity, then a rotation/scale search)
-> for each hypothesis: detect -> shortlist candidates -> score (a :mod:`register.scorers`
scorer) -> select -> estimate (RANSAC) -> global check -> verdict (:mod:`register.decide`);
the best candidate is refined with smaller search windows, recentred on the check's peak when
that helps, and judged once more. With ``--modality opt-sar`` an affine transform or a
similarity is fitted first, a homography only replaces it when the check clearly prefers it,
and a pair without a confirmed one is judged again with the general models
(``EstimateConfig.sar_auto_models``), where a final homography again gives way to the lower
orders fitted to its own matches unless the check clearly prefers it; an accepted
optical-SAR transform is then polished by a small similarity that maximises the global
structural correlation (:mod:`register.polish`), refitted once to the matches the polished
transform agrees with (:func:`register.estimate.refit`) and kept when the check ranks it
higher. A final transform the check and SIFT refuse is put to the network's vote
(:func:`register.verify.network_check`, the ``network`` rule of :mod:`register.decide`). The
parts are in :mod:`register.pipeline`; writing the outputs is :mod:`register.outputs`.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .decide import Evidence, Policy, Verdict, bend_limit, judge, network_vote_clear, rank
from .frames import georef_homography, is_sar, working_images
from .geometry import transfer
from .io import READ_MAX_SIDE, Raster, read_image, to_gray
from .hypotheses import SEARCH
from .match import Matches
from .estimate import refit, support_of
from .judged import Candidate, Judged
from .pipeline import Pipeline
from .polish import polish_similarity
from .scorers import Timer, make_scorer
from .search import Hypothesis
from .verify import NetworkVote


@dataclass(frozen=True)
class Result:
    """Outcome of :func:`register_pair`.

    Attributes:
        status: ``"ok"`` or ``"failed"``.
        reason: why it failed (empty when ok).
        H: (3, 3) float64 homography, moving px -> fixed px at full resolution (x = column,
            y = row, 0-based); None when failed.
        matches: the last stage's selected matches (full-resolution pixels) or None.
        inliers: (M,) bool over ``matches`` or None.
        rmse_px: inlier RMSE in fixed pixels (NaN when failed).
        counts: num_keypoints / num_candidates / num_matches / num_inliers.
        timings: seconds per stage (``patches`` and ``score`` only when a network scored,
            ``network_check`` when it voted).
        hypothesis: how the start transform was found.
        verification: the evidence on the final transform: ``z_at_zero_shift`` and
            ``peak_shift_px`` of the global check (:func:`register.verify.verify_alignment`;
            the shift in working-resolution fixed px), ``affine_deviation_px`` (how far the
            transform bends away from an affine one over the overlap, working px),
            ``transform`` (the model RANSAC fitted: ``"homography"``, ``"affine"`` or
            ``"similarity"``; or
            ``"georeferencing"`` when the georeferencing itself was kept: the check confirmed
            it and ranked it above every transform fitted from it), ``recentred`` (whether
            matching once more from the transform moved onto the check's correlation peak gave
            the final transform), ``polish`` (when the modality is polished:
            ``moved_px``, ``correlation_before``, ``correlation_after`` and ``kept``, whether
            the check ranked the polished transform higher), ``keypoint_support`` (SIFT
            correspondences the transform explains, when a SIFT hypothesis was found),
            ``network_vote`` (``keypoints``, ``share`` and ``z`` of
            :func:`register.verify.network_check`, when the other rules refused the final
            transform and a network was loaded) and, when ok, ``confirmed_by``
            (``"check"``, ``"keypoints"`` or ``"network"``, :func:`register.decide.judge`).
        candidates: every hypothesis RANSAC supported, in the order tried: ``source``,
            ``angle_deg``, ``scale``, ``num_inliers``, ``z``, ``peak_shift_px``,
            ``affine_deviation_px``, ``transform``, ``confirmed`` and ``H`` (3x3 list, moving
            px -> fixed px at full resolution, before refinement).
        scorer: which scorer ranked the candidates (:meth:`register.scorers.Scorer.info`):
            ``name`` (``"structural"`` or ``"network"``), ``device`` and, for the network,
            ``weights`` and ``preset``.
        closest_H: when failed, the (3, 3) full-resolution transform (moving px -> fixed px)
            that came closest and was refused, for diagnosis only; None when ok or when RANSAC
            supported no hypothesis. ``matches`` and ``inliers`` are then that attempt's (all
            False when nothing was fitted).
    """

    status: str
    reason: str = ""
    H: np.ndarray | None = None
    matches: Matches | None = None
    inliers: np.ndarray | None = None
    rmse_px: float = float("nan")
    counts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    hypothesis: str = ""
    verification: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    scorer: dict = field(default_factory=dict)
    closest_H: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def as_raster(x: str | Path | Raster) -> Raster:
    """A raster as given, or read from a path (decimated when its longer side exceeds
    :data:`register.io.READ_MAX_SIDE`; results stay in full-resolution px)."""
    return x if isinstance(x, Raster) else read_image(x, max_side=READ_MAX_SIDE)


def check_inputs(fixed: Raster, moving: Raster, cfg: Config) -> None:
    """Raise :class:`InputError` for inputs ``register_pair`` cannot use (bands, constant or
    all-nodata images, disjoint georeferenced footprints) before any work starts."""
    to_gray(fixed, band=cfg.band_fixed)
    to_gray(moving, band=cfg.band_moving, sar=is_sar(moving, cfg.modality), sar_db=cfg.sar_db)
    if fixed.georeferenced and moving.georeferenced:
        georef_homography(fixed, moving)


def register_pair(fixed: str | Path | Raster, moving: str | Path | Raster,
                  config: Config | None = None, *, device: str = "auto", model=None,
                  progress: Callable[[str], None] | None = None) -> Result:
    """Register ``moving`` onto ``fixed``.

    Args:
        fixed, moving: file paths or :class:`~register.io.Raster` objects.
        config: options (defaults: :class:`~register.config.Config`).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``, where a network
            scorer runs (ignored when ``model`` is given or the scorer needs no network).
        model: a network from :func:`register.score.load_model`, reused across calls (it
            scores in ``config.precision``, set on it).
        progress: called with a short message at each stage.

    Returns:
        A :class:`Result`; ``status == "failed"`` (with ``reason``) when no trustworthy
        transform was found.

    Raises:
        InputError: unreadable, too small, constant or non-overlapping inputs, bad options.
    """
    cfg, timer = config or Config(), Timer()
    t = time.perf_counter()
    fr, mr = as_raster(fixed), as_raster(moving)
    fw, mw, Sf, Sm = working_images(fr, mr, cfg)
    timer.add("io", t)
    t = time.perf_counter()
    scorer = make_scorer(cfg, device=device, model=model)
    if scorer.name != "structural" and model is None:
        timer.add("load_model", t)
    pipe = Pipeline(fw, mw, cfg, scorer, timer, progress or (lambda msg: None))
    base = dict(timings=timer.t, scorer=scorer.info())
    georef = None  # the map the two georeferencings imply (working px)
    if fr.georeferenced and mr.georeferenced:
        t = time.perf_counter()
        georef = Hypothesis(H=Sf @ georef_homography(fr, mr) @ np.linalg.inv(Sm),
                            score=float("nan"), angle_deg=0.0, scale=1.0)
        timer.add("hypotheses", t)
    first = _first_models(cfg)
    if first is None:
        result = _decide(pipe, georef, cfg, (Sf, Sm), base)
    else:
        with pipe.comparing(first):
            result = _decide(pipe, georef, cfg, (Sf, Sm), base)
        if not result.ok:  # judged again with the general models; the matches are reused
            pipe.say(f"no {' or '.join(first)} transform was confirmed; trying "
                     f"{' or '.join(pipe.models)}")
            result = _decide(pipe, georef, cfg, (Sf, Sm), base, prefer=first)
    if georef is not None and not result.ok:
        result = _left_as_georeferenced(result, pipe, georef.H)
    return result


def _first_models(cfg: Config) -> tuple[str, ...] | None:
    """The models ``transform="auto"`` tries first for this modality, or None when it goes
    straight to ``cfg.estimate.auto_models`` (see ``EstimateConfig.sar_auto_models``)."""
    first = cfg.estimate.sar_auto_models
    if cfg.transform == "auto" and cfg.modality == "opt-sar" and first != cfg.estimate.auto_models:
        return first
    return None


def _left_as_georeferenced(result: Result, pipe: Pipeline, H_georef: np.ndarray) -> Result:
    """A failure on georeferenced inputs, said as what it means for them: no correction was
    confirmed and the georeferencing stays as it is, with the global check measured on the
    georeferencing itself (``verification["georeferencing_check"]``)."""
    check = pipe.check(H_georef)
    verification = {**result.verification,
                    "georeferencing_check": {"z_at_zero_shift": round(check.z, 3),
                                             "peak_shift_px": round(check.shift, 3)}}
    reason = (f"no correction confirmed; the georeferencing was left as it is (its own check: "
              f"z {check.z:.1f} at zero shift, peak {check.shift:.1f} px away): {result.reason}")
    return dataclasses.replace(result, reason=reason, verification=verification)


def _decide(pipe: Pipeline, georef: Hypothesis | None, cfg: Config,
            maps: tuple[np.ndarray, np.ndarray], base: dict,
            prefer: tuple[str, ...] | None = None) -> Result:
    """Hypotheses, refinement, recentring and the final verdict (see the module docstring);
    ``prefer``: the lower-order models a final homography gives way to
    (:meth:`Pipeline.lower_order`)."""
    Sf, Sm = maps
    trial = pipe.try_hypotheses(georef)
    how = ", ".join(trial.sources) or SEARCH
    if trial.tried == 0:
        return Result("failed", "no rotation/scale hypothesis overlaps the fixed image",
                      hypothesis=how, **base)
    prior = pipe.georeferencing_prior(georef)
    if trial.best is None and prior is None:
        counts, why, loc = max(trial.unsupported, key=lambda u: u[0]["num_matches"])
        full = full_resolution(loc.matches, Sf, Sm)
        return Result("failed", f"no hypothesis was supported by the matches ({why})",
                      matches=full, inliers=np.zeros(len(full), bool), counts=counts,
                      hypothesis=how, **base)
    start = trial.best or prior
    judged, radius = pipe.refine(start.judged)
    judged, recentred = pipe.recentre(judged, radius)
    judged = pipe.perspective(start, judged)
    if prefer is not None:
        judged = pipe.lower_order(judged, prefer)
    confirmed_before = start.judged.verdict.accepted
    if prior is not None and prior.judged.rank > judged.rank:
        start, judged, recentred, confirmed_before = prior, prior.judged, False, True
    judged, polish = _polish(pipe, judged, cfg, confirmed_before)
    judged, vote = _network_vote(pipe, judged, cfg, confirmed_before)
    return conclude(start, judged, recentred, confirmed_before, cfg, (Sf, Sm),
                    candidates=[candidate_row(c, Sf, Sm) for c in trial.supported],
                    polish=polish, vote=vote, **base)


def candidate_row(c: Candidate, Sf: np.ndarray, Sm: np.ndarray) -> dict:
    """One row of ``Result.candidates``: a supported hypothesis (``rank``: its 0-based place in
    the search's list, 0 for other sources) and the judgement of its transform, ``H`` in
    full-resolution px (``Sf``, ``Sm``: full -> working px maps)."""
    ev, H = c.judged.evidence, np.linalg.inv(Sf) @ c.judged.est.H @ Sm
    return {"source": c.source, "rank": c.hyp.rank, "angle_deg": round(c.hyp.angle_deg, 2),
            "scale": round(c.hyp.scale, 4), "num_inliers": ev.inliers, "z": round(ev.z, 3),
            "peak_shift_px": round(c.judged.check.shift, 3),
            "affine_deviation_px": round(ev.bend, 3), "transform": c.judged.est.model,
            "confirmed": c.judged.verdict.accepted, "H": (H / H[2, 2]).tolist()}


def _network_vote(pipe: Pipeline, judged: Judged, cfg: Config,
                  confirmed_before: bool) -> tuple[Judged, NetworkVote | None]:
    """The final transform with the network's vote (:meth:`Pipeline.network_vote`) in its
    evidence, asked only when the policy hears it and the final verdict (``confirmed_before``
    as in :func:`conclude`) refuses the transform without it; and the vote (None when not
    asked or there is no network)."""
    if cfg.policy.network_confirm_z <= 0 or final_verdict(judged, confirmed_before,
                                                          cfg.policy)[1].accepted:
        return judged, None
    pipe.say("asking the network about the refused transform")
    vote = pipe.network_vote(judged.est.H)
    if vote is None:
        return judged, None
    ev = dataclasses.replace(judged.evidence, network_z=vote.z)
    return dataclasses.replace(judged, evidence=ev, verdict=judge(ev, cfg.policy)), vote


def _polish(pipe: Pipeline, judged: Judged, cfg: Config,
            confirmed_before: bool) -> tuple[Judged, dict | None]:
    """The transform polished (:func:`register.polish.polish_similarity`) when ``cfg.polish``
    covers the modality and the final verdict (:func:`conclude`'s: ``confirmed_before`` as
    there) accepts it, then refitted once by least squares to the matches within the RANSAC
    threshold of it (:func:`register.estimate.refit`; validation: docs/results.md, "Optical-SAR
    polish"), and kept when that verdict ranks the result higher, so a polish
    never changes whether a pair is accepted; with what was done, for
    ``Result.verification["polish"]`` (None when nothing ran)."""
    pc = cfg.polish

    def final(j: Judged) -> tuple[bool, float]:
        return rank(*final_verdict(j, confirmed_before, cfg.policy))

    if cfg.modality not in pc.modalities or not final(judged)[0]:
        return judged, None
    pipe.say("polishing the transform")
    t = time.perf_counter()
    fw, mw = pipe.fixed, pipe.moving
    p = polish_similarity(fw.image, fw.mask, mw.image, mw.mask, judged.est.H, side=pc.side,
                          steps=tuple(pc.steps), rounds=pc.rounds)
    m = judged.located.matches
    th = cfg.estimate.ransac_threshold
    est = support_of(p.H, m.xy_moving, m.xy_fixed, threshold=th, model=judged.est.model)
    if pc.refit:
        est = refit(est, m.xy_moving, m.xy_fixed, mw.image.shape, threshold=th)
    again = pipe.rejudge(est, judged.located, judged)
    pipe.timer.add("polish", t)
    kept = final(again) > final(judged)
    info = {"moved_px": round(float(p.moved_px), 3),
            "correlation_before": round(float(p.score_before), 4),
            "correlation_after": round(float(p.score_after), 4), "kept": bool(kept)}
    return (again if kept else judged), info


def final_verdict(judged: Judged, confirmed_before: bool,
                  policy: Policy) -> tuple[Evidence, Verdict]:
    """The evidence and verdict of the final judgement of ``judged``: its own evidence with
    ``confirmed_before`` (whether any hypothesis was confirmed before refinement) set, so the
    ``rescued`` rule applies; :func:`conclude` gives it, the polish and the vote ask it first."""
    ev = dataclasses.replace(judged.evidence, confirmed_before=confirmed_before)
    return ev, judge(ev, policy)


def conclude(start: Candidate, judged: Judged, recentred: bool, confirmed_before: bool,
             cfg: Config, maps: tuple[np.ndarray, np.ndarray], *, polish: dict | None = None,
             vote: NetworkVote | None = None, **base) -> Result:
    """The final verdict on the refined transform, as a :class:`Result`: ``start`` is the
    candidate it came from, ``maps`` the (Sf, Sm) full-size -> working px maps."""
    ev, verdict = final_verdict(judged, confirmed_before, cfg.policy)
    est, loc = judged.est, judged.located
    verification = {"z_at_zero_shift": round(ev.z, 3),
                    "peak_shift_px": round(judged.check.shift, 3),
                    "affine_deviation_px": round(ev.bend, 3), "transform": est.model,
                    "recentred": recentred}
    if polish is not None:
        verification["polish"] = polish
    if ev.keypoint_support is not None:
        verification["keypoint_support"] = ev.keypoint_support
    if vote is not None:
        verification["network_vote"] = {"keypoints": vote.keypoints,
                                        "share": round(vote.share, 3), "z": round(vote.z, 3)}
    common = dict(counts=loc.counts(est.num_inliers), hypothesis=start.source,
                  verification=verification, **base)
    Sf, Sm = maps
    H = np.linalg.inv(Sf) @ est.H @ Sm
    full = full_resolution(loc.matches, Sf, Sm)
    if not verdict.accepted:
        return Result("failed", failure_reason(ev, verdict.veto, judged.check.shift, cfg),
                      matches=full, inliers=est.inliers, closest_H=H / H[2, 2], **common)
    verification["confirmed_by"] = verdict.by
    hyp = start.hyp
    if start.source != "georeferencing":
        common["hypothesis"] = (f"{start.source} (rotation {hyp.angle_deg:.1f} deg, "
                                f"scale {hyp.scale:.3f})")
    return Result("ok", "", H / H[2, 2], full, est.inliers, est.rmse_px / Sf[0, 0], **common)


def full_resolution(m: Matches, Sf: np.ndarray, Sm: np.ndarray) -> Matches:
    """Matches in working px as full-resolution px (``Sf``, ``Sm``: full -> working maps)."""
    return Matches(transfer(np.linalg.inv(Sf), m.xy_fixed).astype(np.float32),
                   transfer(np.linalg.inv(Sm), m.xy_moving).astype(np.float32), m.probability)


def failure_reason(ev: Evidence, veto: str, shift_working_px: float, cfg: Config) -> str:
    """Why the final transform was refused, with the numbers and the rule's threshold."""
    p = cfg.policy
    kp = ("" if ev.keypoint_support is None else f"; it explains {ev.keypoint_support} SIFT "
          f"correspondences, need {p.keypoint_confirm_inliers}")
    if network_vote_clear(ev, p):  # a clear vote refused: the transform bends
        kp += (f"; the network's vote at zero shift has z {ev.network_z:.1f}, but it cannot "
               f"vouch for a transform that bends {ev.bend:.0f} px (more than "
               f"{bend_limit(ev, p):.3g})")
    elif ev.network_z is not None:
        kp += (f"; the network's vote at zero shift has z {ev.network_z:.1f}, need "
               f"{p.network_confirm_z:g}")
    if veto == "bent":
        return (f"the transform that RANSAC found bends {ev.bend:.0f} px away from an affine "
                f"transform over the overlap (more than {bend_limit(ev, p):.3g} px at the "
                f"working resolution) with only z {ev.z:.1f} in the structural check (need "
                f"{p.bent_min_z:g} for a bent transform{kp}); it is probably fitted to chance "
                "matches")
    if veto == "weak":
        what = (f"the structural check passes only weakly (z {ev.z:.1f}, under {p.low_z:g}) and "
                f"RANSAC found only {ev.inliers} inliers (need {p.low_z_min_inliers} at such a z")
    elif veto == "rescued":
        what = ("no hypothesis was confirmed, and the refined transform passes the structural "
                f"check only weakly (z {ev.z:.1f}, need {p.rescued_min_z:g} for a transform "
                "confirmed only after refinement")
    elif veto == "late":
        what = ("the transform comes from a late rotation/scale hypothesis (ranked after the "
                f"first {p.late_rank}) and passes the structural check only weakly (z "
                f"{ev.z:.1f}, need {p.late_min_z:g} for a late hypothesis")
    else:
        what = ("the transform that RANSAC found is not confirmed by the global structural check "
                f"(z {ev.z:.1f} at zero shift, need {p.verify_min_z:g}; correlation peak "
                f"{shift_working_px:.1f} px away")
    return f"{what}{kp}); it is probably wrong"
