"""The registration policy: when a transform is accepted, and when the search stops.

Pure functions over small frozen dataclasses, no I/O: :class:`Evidence` says what was measured
about one transform, :class:`Policy` holds every acceptance threshold (one line each; the
incidents that set them are in ``docs/policy.md``), :func:`judge` gives the :class:`Verdict`
and :func:`clearly_supported` the early-stop rule. ``tests/test_decide.py`` tests the rules as
a table.

The rules, in the order :func:`judge` applies them:

========== ==================================================================================
rule       a transform ...
========== ==================================================================================
check      is confirmed when the global structural check peaks at zero shift: z at least
           ``verify_min_z`` and the peak within ``verify_max_shift`` check px.
keypoints  is confirmed when it explains at least ``keypoint_confirm_inliers`` SIFT
           correspondences, whatever the check says (low-structure scenes).
network    is confirmed when SSML-QNet finds its patch pairs matching at zero shift rather
           than around it (:func:`register.verify.network_vote`: z at least
           ``network_confirm_z``), whatever the check says, unless it bends more than
           :func:`bend_limit` (the vote looks at keypoints one by one: it cannot vouch
           for a transform's shape); asked only of a final transform the other rules refuse.
bent       confirmed by the check only, that bends more than :func:`bend_limit` working px
           away from an affine transform (``max_affine_deviation`` on frames of
           ``bend_full_side`` px and more, in proportion on smaller ones), needs z at least
           ``bent_min_z``.
weak       confirmed by the check only with z under ``low_z`` needs ``low_z_min_inliers``
           RANSAC inliers.
rescued    confirmed by the check only after refinement, when no hypothesis was confirmed
           before it, needs z at least ``rescued_min_z``.
late       confirmed by the check only, that comes from a search hypothesis ranked
           ``late_rank`` or later (0-based), needs z at least ``late_min_z``; late
           hypotheses are matched only while none before them was accepted
           (:func:`tries_late`).
========== ==================================================================================

On optical-SAR an affine transform or a similarity is fitted first; :func:`prefers_perspective`
says when a homography fitted to the same matches replaces it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

#: Vetoes :func:`judge` can give, in the order it tries them ("" = none).
VETOES = ("bent", "weak", "rescued", "late")


@dataclass(frozen=True)
class Policy:
    """Every acceptance threshold of the pipeline (the reasons: ``docs/policy.md``)."""

    # right transforms' checks peaked at z >= 9.2 on the validation pairs, a wrong one at 8.6
    verify_min_z: float = 9.0
    # the check's peak must lie this close to zero shift (check px, at verify_side resolution)
    verify_max_shift: float = 2.0
    # no similarity more than 20 px off explained more than 7 SIFT pairs in 1,266 draws (0 = off)
    keypoint_confirm_inliers: int = 30
    # chance-match homographies bend; real perspective (MIFNet demo) bends 24.5-37.5 px (0 = off)
    max_affine_deviation: float = 24.0
    # ... on frames of this longer side (working px) and more; less in proportion on smaller ones:
    # a 120 px validation tile was accepted bending 15 px, 112 px off (z 10.8)
    bend_full_side: float = 512.0
    # ... and a bent transform passes only with this clear a check (the demo: z 14.8-16.4)
    bent_min_z: float = 13.0
    # a check under this z is weak (0 = off) ...
    low_z: float = 11.0
    # ... and needs this many inliers: 11 weak passes with 12-23 inliers were all 11-278 px off
    low_z_min_inliers: int = 24
    # refinement optimises the check's own features: rescued wrong results had z 9.3-11.2
    rescued_min_z: float = 13.0
    # search hypotheses from this 0-based rank on are late (0 = none): each one more tried is one
    # more chance for a wrong transform to pass; on optical-SAR validation ranks 4-7 found 3
    # right transforms (z 11.5-20.8) and one 133 px off (z 10.4)
    late_rank: int = 4
    # ... and a late one passes the check only with this clear a z (as a rescued one)
    late_min_z: float = 13.0
    # a confirmed hypothesis with this check z ends the search (0 = off); no validation result moved
    accept_z: float = 15.0
    # ... or with this share of the keypoints as inliers
    accept_inlier_fraction: float = 0.3
    # ... and at least this many inliers (3 x RANSAC's minimum of 12)
    accept_min_inliers: int = 36
    # a refinement that keeps less than this share of the inliers is falling apart: stop refining
    refine_keep_fraction: float = 0.8
    # a refinement step that moves the transform less than this (moving working px at the
    # fixed image's corners) has converged; at 0.5 one validation result went 4.7 -> 5.7 px
    refine_converged_px: float = 0.25
    # a final check peaking this far off zero shift (check px) gets one more match from the peak
    recentre_min_shift: float = 1.0
    # the georeferencing's shift-corrected copy is tried only when it moves a corner this far (px)
    georef_min_shift: float = 2.0
    # the network's vote confirms at this z (0 = off): wrong transforms reached 6.6 on validation,
    # the pipeline's right VIS-NIR ones 15 and up
    network_confirm_z: float = 9.0
    # a homography replaces an optical-SAR affine/similarity fit when its check z is this much
    # higher: real perspective (MIFNet demo) gains > 2; SAR bends gained at most 0.8 on validation
    perspective_min_gain: float = 2.0


@dataclass(frozen=True)
class Evidence:
    """What was measured about one transform.

    Attributes:
        z: z-score of the global structural check's correlation at zero shift.
        shift: distance of the check's correlation peak from zero shift, in check px (the
            resolution of ``verify_side``; working px times the check's scale).
        inliers: RANSAC inliers of the transform.
        keypoints: keypoints detected in the fixed frame for this transform's matching.
        keypoint_support: SIFT correspondences the transform explains; None without a SIFT
            hypothesis.
        bend: how far the transform bends away from an affine one over the overlap (working
            px; 0 for an affine transform).
        frame_side: the longer side of the fixed frame the bend is measured in (working px;
            0: unknown, the full ``max_affine_deviation`` applies).
        network_z: z of the network's vote at zero shift (:func:`register.verify.network_vote`);
            None when not measured.
        confirmed_before: whether any hypothesis was confirmed before refinement. Only the
            final judgement of a refined transform sets it False; the hypothesis loop and the
            ranking of candidates leave it True, so the ``rescued`` rule never reorders them.
        late: whether the transform comes from a search hypothesis ranked ``late_rank`` or
            later (:func:`late_hypothesis`).
    """

    z: float
    shift: float
    inliers: int
    keypoints: int = 0
    keypoint_support: int | None = None
    bend: float = 0.0
    frame_side: float = 0.0
    network_z: float | None = None
    confirmed_before: bool = True
    late: bool = False


@dataclass(frozen=True)
class Verdict:
    """:func:`judge`'s answer: ``by`` is "check", "keypoints" or "network" when accepted, None
    otherwise;
    ``veto`` names the rule of :data:`VETOES` that refused a confirmed transform ("" if none)."""

    by: str | None
    veto: str = ""

    @property
    def accepted(self) -> bool:
        return self.by is not None


def keypoint_backed(ev: Evidence, policy: Policy) -> bool:
    """Whether the SIFT correspondences the transform explains confirm it on their own."""
    n = ev.keypoint_support
    return n is not None and 0 < policy.keypoint_confirm_inliers <= n


def network_vote_clear(ev: Evidence, policy: Policy) -> bool:
    """Whether the network's vote reaches ``network_confirm_z`` (the rule on)."""
    z = ev.network_z
    return z is not None and 0 < policy.network_confirm_z <= z


def bend_limit(ev: Evidence, policy: Policy) -> float:
    """The most a transform may bend (working px) before the ``bent`` rule applies:
    ``max_affine_deviation`` on a frame whose longer side is at least ``bend_full_side``, the
    same share of the side on a smaller frame (perspective is a fraction of the view; the
    absolute limit was set on 512 px frames and checked on 173-768 px ones)."""
    side, full = ev.frame_side, policy.bend_full_side
    share = min(1.0, side / full) if side > 0 and full > 0 else 1.0
    return policy.max_affine_deviation * share


def bent(ev: Evidence, policy: Policy) -> bool:
    """Whether the transform bends more than :func:`bend_limit` (never when
    ``max_affine_deviation`` is 0: the rule off)."""
    return 0 < policy.max_affine_deviation and bend_limit(ev, policy) < ev.bend


def network_backed(ev: Evidence, policy: Policy) -> bool:
    """Whether the network's vote confirms the transform on its own: a clear vote, and a
    transform that does not bend (a homography right where most keypoints are and 50 px off
    at one side wins the vote)."""
    return network_vote_clear(ev, policy) and not bent(ev, policy)


def check_passes(ev: Evidence, policy: Policy) -> bool:
    """Whether the global check confirms the transform: z high enough, peak near zero shift."""
    return ev.z >= policy.verify_min_z and ev.shift <= policy.verify_max_shift


def judge(ev: Evidence, policy: Policy = Policy()) -> Verdict:
    """Accept or refuse one transform (the rules of this module's table, in order).

    SIFT correspondences, when enough, confirm a transform and lift every veto; the vetoes
    apply to transforms confirmed by the check alone. The network's vote is heard last: it
    confirms (and lifts a veto) only where the other rules refuse.
    """
    if keypoint_backed(ev, policy):
        return Verdict("check" if check_passes(ev, policy) else "keypoints")
    verdict = _by_check(ev, policy)
    if not verdict.accepted and network_backed(ev, policy):
        return Verdict("network")
    return verdict


def _by_check(ev: Evidence, policy: Policy) -> Verdict:
    """The check's verdict and its vetoes (:func:`judge` without SIFT or the network)."""
    if not check_passes(ev, policy):
        return Verdict(None)
    if bent(ev, policy) and ev.z < policy.bent_min_z:
        return Verdict(None, "bent")
    if ev.z < policy.low_z and ev.inliers < policy.low_z_min_inliers:
        return Verdict(None, "weak")
    if not ev.confirmed_before and ev.z < policy.rescued_min_z:
        return Verdict(None, "rescued")
    if ev.late and ev.z < policy.late_min_z:
        return Verdict(None, "late")
    return Verdict("check")


def tries_late(best: Verdict | None) -> bool:
    """Whether the search's late hypotheses are matched: only while no hypothesis before them
    was accepted (``best``: the verdict of the best so far, None if none was supported). They
    are a fallback; tried after an accepted one, they replaced it with a worse transform on
    validation (VIS-LWIR FLIR_07809 4.6 -> 5.5 px)."""
    return best is None or not best.accepted


def late_hypothesis(rank: int, policy: Policy = Policy()) -> bool:
    """Whether a search hypothesis of 0-based ``rank`` is late (the ``late`` rule applies to
    what comes from it); never when ``late_rank`` is 0 (the rule off)."""
    return 0 < policy.late_rank <= rank


def rank(ev: Evidence, verdict: Verdict) -> tuple[bool, float]:
    """Order of preference between judged transforms: accepted first, then the higher z."""
    return verdict.accepted, ev.z


def clearly_supported(ev: Evidence, verdict: Verdict, policy: Policy = Policy()) -> bool:
    """The early-stop rule: an accepted hypothesis with a clear check (z >= ``accept_z``) or a
    large inlier share ends the search; the remaining hypotheses cannot matter."""
    if not verdict.accepted:
        return False
    if 0 < policy.accept_z <= ev.z:
        return True
    return ev.inliers >= max(policy.accept_min_inliers,
                             policy.accept_inlier_fraction * ev.keypoints)


def keeps_refining(inliers_before: int, inliers_after: int, policy: Policy = Policy()) -> bool:
    """Whether a refinement step is kept: it must keep most of the inliers."""
    return inliers_after >= policy.refine_keep_fraction * inliers_before


def refinement_converged(moved_px: float, policy: Policy = Policy()) -> bool:
    """Whether refinement stops after a step that moved the transform ``moved_px`` moving
    working px (:func:`register.geometry.corner_distance`): a narrower window would find
    the same matches again."""
    return moved_px < policy.refine_converged_px


def wants_recentring(shift_check_px: float, shift_working_px: float, window_working_px: float,
                     policy: Policy = Policy()) -> bool:
    """Whether the final transform is matched once more from the check's peak: the peak is at
    least ``recentre_min_shift`` check px off zero shift but within the last matching window
    (a peak farther away means a transform off by more than refinement corrects)."""
    return (0 < policy.recentre_min_shift <= shift_check_px
            and shift_working_px <= window_working_px)


def prefers_perspective(simple: Evidence, simple_verdict: Verdict, homography: Evidence,
                        homography_verdict: Verdict, policy: Policy = Policy()) -> bool:
    """Whether a homography fitted to the same matches replaces a lower-order transform (tried
    first on optical-SAR): it must be accepted and its check clearly higher, by
    ``perspective_min_gain``, unless the lower-order one was not accepted at all."""
    if not homography_verdict.accepted:
        return False
    if not simple_verdict.accepted:
        return True
    return homography.z >= simple.z + policy.perspective_min_gain


def policy_fields() -> tuple[str, ...]:
    """Names of :class:`Policy`'s thresholds, in order."""
    return tuple(f.name for f in fields(Policy))
