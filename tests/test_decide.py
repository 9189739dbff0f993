"""register.decide: the acceptance policy as a table. Each row is evidence in, verdict out; the
rows are the incidents that set the thresholds (docs/policy.md tells each one's story)."""
from __future__ import annotations

import pytest

from register.decide import (VETOES, Evidence, Policy, Verdict, bend_limit, clearly_supported,
                             judge, keeps_refining, late_hypothesis, network_vote_clear,
                             policy_fields, prefers_perspective, refinement_converged,
                             tries_late, wants_recentring)

P = Policy()

# (incident, evidence, expected verdict (by, veto))
JUDGE_TABLE = [
    ("a right transform: sharp check at zero shift",
     Evidence(z=18.9, shift=0.3, inliers=61), ("check", "")),
    ("right results on validation peaked at z >= 9.2",
     Evidence(z=9.2, shift=0.5, inliers=40), ("check", "")),
    ("a wrong validation result passed at z 8.6: under the gate",
     Evidence(z=8.6, shift=0.4, inliers=40), (None, "")),
    ("val opt-SAR 75 before recentring: z 18.6 but the peak 2.9 check px away",
     Evidence(z=18.6, shift=2.9, inliers=50), (None, "")),
    ("low-structure VIS-NIR (field/0008 kind): weak check, 45 SIFT pairs explained",
     Evidence(z=7.5, shift=3.0, inliers=30, keypoint_support=45), ("keypoints", "")),
    ("no wrong similarity explained more than 7 SIFT pairs: 7 confirm nothing",
     Evidence(z=7.0, shift=0.5, inliers=30, keypoint_support=7), (None, "")),
    ("SIFT support at the gate (30) confirms",
     Evidence(z=3.0, shift=9.0, inliers=30, keypoint_support=30), ("keypoints", "")),
    ("keypoint confirmation off (0): SIFT support confirms nothing",
     Evidence(z=7.0, shift=0.5, inliers=30, keypoint_support=500), (None, "")),
    ("MIFNet demo pair: real perspective bends 37.5 px at z 14.8",
     Evidence(z=14.8, shift=0.6, inliers=80, bend=37.5), ("check", "")),
    ("a chance homography (test opt-SAR 199): bends 58 px at z 9.3",
     Evidence(z=9.3, shift=0.4, inliers=40, bend=58.0), (None, "bent")),
    ("a bent transform that SIFT correspondences back is kept",
     Evidence(z=9.3, shift=0.4, inliers=40, bend=58.0, keypoint_support=40), ("check", "")),
    ("val BigEarthNet 35VPK_57_38 (a 120 px tile): a homography bending 15 px, 112 px off at "
     "z 10.8; the limit on a 120 px frame is 24 x 120 / 512 = 5.6 px",
     Evidence(z=10.8, shift=0.1, inliers=66, bend=15.1, frame_side=120.0), (None, "bent")),
    ("the same bend on a 512 px frame is under the limit",
     Evidence(z=10.8, shift=0.1, inliers=66, bend=15.1, frame_side=512.0), ("check", "")),
    ("frames larger than 512 px keep the 24 px limit (validation TNO 01, 768 px: a right "
     "homography bent 9.1 px)",
     Evidence(z=10.8, shift=0.1, inliers=66, bend=23.0, frame_side=768.0), ("check", "")),
    ("the demo pair's 37.5 px bend at z 14.8 on its 512 px frame stays accepted",
     Evidence(z=14.8, shift=0.6, inliers=80, bend=37.5, frame_side=512.0), ("check", "")),
    ("an affine transform never bends",
     Evidence(z=9.3, shift=0.4, inliers=40, bend=0.0), ("check", "")),
    ("val opt-IR 130 enlarged: z 9.3 with 12 inliers, 128 px off",
     Evidence(z=9.3, shift=0.5, inliers=12), (None, "weak")),
    ("weak checks with 24-170 inliers were all within 8.3 px",
     Evidence(z=9.5, shift=0.5, inliers=24), ("check", "")),
    ("a weak check with few inliers but SIFT backing",
     Evidence(z=9.3, shift=0.5, inliers=12, keypoint_support=35), ("check", "")),
    ("a bent and weak transform is refused as bent (the first rule that applies)",
     Evidence(z=9.3, shift=0.5, inliers=12, bend=40.0), (None, "bent")),
    ("val FLIR_07809: nothing confirmed, refined into z 11.2, 85 px off",
     Evidence(z=11.2, shift=0.5, inliers=40, confirmed_before=False), (None, "rescued")),
    ("stress FLIR_07190: nothing confirmed, refined into z 9.3, 184 px off",
     Evidence(z=9.3, shift=0.5, inliers=40, confirmed_before=False), (None, "rescued")),
    ("rescued results within 8 px had z 11.8-17.9: 13.5 passes",
     Evidence(z=13.5, shift=0.5, inliers=40, confirmed_before=False), ("check", "")),
    ("the rescued rule only concerns refined transforms: the same z before refinement passes",
     Evidence(z=11.2, shift=0.5, inliers=40), ("check", "")),
    ("SIFT backing lifts the rescued rule too",
     Evidence(z=11.2, shift=0.5, inliers=40, keypoint_support=60, confirmed_before=False),
     ("check", "")),
    ("val opt-SAR 64 with 8 search hypotheses: a late one (rank 4-7) at z 10.4, 133 px off",
     Evidence(z=10.4, shift=0.1, inliers=33, late=True), (None, "late")),
    ("val opt-SAR 42 and 69: late hypotheses right at z 14.1 and 20.8 pass",
     Evidence(z=14.1, shift=0.7, inliers=33, late=True), ("check", "")),
    ("val opt-SAR 124: a right late hypothesis at z 11.5 (2.0 px) is refused too: the price",
     Evidence(z=11.5, shift=0.7, inliers=64, late=True), (None, "late")),
    ("the late rule only concerns late hypotheses: the same z from the first four passes",
     Evidence(z=10.4, shift=0.1, inliers=33), ("check", "")),
    ("SIFT backing lifts the late rule",
     Evidence(z=10.4, shift=0.1, inliers=33, keypoint_support=45, late=True), ("check", "")),
    ("test opt-SAR 169: check z 8.97 under the gate, the network's vote z 24: right (0.5 px)",
     Evidence(z=8.97, shift=0.1, inliers=68, network_z=24.3), ("network", "")),
    ("a wrong SAR chip transform (stress 81, 196 px off) had the highest wrong vote, z 6.6",
     Evidence(z=8.3, shift=0.5, inliers=40, network_z=6.6), (None, "")),
    ("a vote at the gate (9) confirms",
     Evidence(z=5.0, shift=9.0, inliers=20, network_z=9.0), ("network", "")),
    ("test VIS-NIR mountain/0012: a homography bending 26 px wins the vote (z 9.8), 53 px off "
     "at one side: the vote cannot vouch for its shape",
     Evidence(z=8.4, shift=0.6, inliers=84, bend=25.8, network_z=9.8), (None, "")),
    ("stress opt-SAR 114: rescued veto at z 10.2, the vote z 14.6 lifts it (5.3 px)",
     Evidence(z=10.2, shift=0.5, inliers=40, confirmed_before=False, network_z=14.6),
     ("network", "")),
    ("a transform the check accepts stays confirmed by the check, whatever the vote",
     Evidence(z=18.0, shift=0.5, inliers=60, network_z=-1.0), ("check", "")),
    ("the network's rule off (0): a clear vote confirms nothing",
     Evidence(z=7.0, shift=0.5, inliers=30, network_z=30.0), (None, "")),
]


@pytest.mark.parametrize("incident, ev, expected", JUDGE_TABLE, ids=[r[0] for r in JUDGE_TABLE])
def test_judge_table(incident, ev, expected):
    policy = P
    if "off (0)" in incident:
        policy = Policy(keypoint_confirm_inliers=0, network_confirm_z=0.0)
    v = judge(ev, policy)
    assert (v.by, v.veto) == expected
    assert v.accepted is (expected[0] is not None)
    assert v.veto in ("",) + VETOES


@pytest.mark.parametrize("name, value, ev", [
    ("verify_min_z", 0.0, Evidence(z=0.5, shift=0.5, inliers=40)),
    ("max_affine_deviation", 0.0, Evidence(z=9.3, shift=0.5, inliers=40, bend=300.0)),
    ("low_z", 0.0, Evidence(z=9.3, shift=0.5, inliers=12)),
])
def test_judge_rules_switch_off_at_zero(name, value, ev):
    """A threshold of 0 turns its rule off (the saved ablation configs rely on it)."""
    assert not judge(ev, P).accepted
    assert judge(ev, Policy(**{name: value})).accepted


@pytest.mark.parametrize("rank, late_rank, late", [(0, 4, False), (3, 4, False), (4, 4, True),
                                                   (7, 4, True), (7, 0, False), (0, 0, False)])
def test_late_hypothesis_from_late_rank_on(rank, late_rank, late):
    """Search hypotheses from the 0-based ``late_rank`` on are late; 0 turns the rule off."""
    assert late_hypothesis(rank, Policy(late_rank=late_rank)) is late


@pytest.mark.parametrize("best, tries", [(None, True), (Verdict(None), True),
                                         (Verdict(None, "late"), True), (Verdict("check"), False),
                                         (Verdict("network"), False)])
def test_tries_late_only_while_nothing_was_accepted(best, tries):
    """The late hypotheses are a fallback: matched while the best so far is refused or absent."""
    assert tries_late(best) is tries


@pytest.mark.parametrize("frame_side, limit", [(0.0, 24.0), (120.0, 5.625), (256.0, 12.0),
                                               (512.0, 24.0), (768.0, 24.0)])
def test_bend_limit_shrinks_in_proportion_below_the_full_side(frame_side, limit):
    """24 working px on frames of 512 px and more, the same share of the side below; an
    unknown side (0) gets the full limit."""
    ev = Evidence(z=10.0, shift=0.5, inliers=40, bend=1.0, frame_side=frame_side)
    assert bend_limit(ev, P) == pytest.approx(limit)
    assert bend_limit(ev, Policy(bend_full_side=0.0)) == pytest.approx(24.0)


# (incident, evidence, accepted?, stops the search?)
STOP_TABLE = [
    ("a confirmed hypothesis with z >= 15 ends the search",
     Evidence(z=15.0, shift=0.5, inliers=20, keypoints=300), True),
    ("z 14 with 30 of 300 keypoints as inliers does not",
     Evidence(z=14.0, shift=0.5, inliers=30, keypoints=300), False),
    ("30 % of the keypoints as inliers does",
     Evidence(z=10.0, shift=0.5, inliers=90, keypoints=300), True),
    ("... but never fewer than 36 inliers (3 x RANSAC's minimum)",
     Evidence(z=10.0, shift=0.5, inliers=30, keypoints=40), False),
    ("an unconfirmed hypothesis never ends the search, whatever its z",
     Evidence(z=25.0, shift=6.0, inliers=200, keypoints=300), False),
]


@pytest.mark.parametrize("incident, ev, stops", STOP_TABLE, ids=[r[0] for r in STOP_TABLE])
def test_clearly_supported_table(incident, ev, stops):
    assert clearly_supported(ev, judge(ev, P), P) is stops


def test_clearly_supported_accept_z_zero_turns_the_z_rule_off():
    ev = Evidence(z=40.0, shift=0.1, inliers=20, keypoints=300)
    assert clearly_supported(ev, Verdict("check"), P)
    assert not clearly_supported(ev, Verdict("check"), Policy(accept_z=0.0))


@pytest.mark.parametrize("before, after, keeps", [(100, 80, True), (100, 79, False),
                                                  (20, 40, True)])
def test_keeps_refining_needs_most_inliers(before, after, keeps):
    """A wrong hypothesis falls apart under refinement: losing over a fifth stops it."""
    assert keeps_refining(before, after, P) is keeps


@pytest.mark.parametrize("moved, converged", [
    (0.2, True),   # the step moved the corners a fifth of a pixel: narrower windows add nothing
    (3.0, False),  # still moving
])
def test_refinement_converged_when_a_step_barely_moves(moved, converged):
    policy = Policy(refine_converged_px=0.5)
    assert refinement_converged(moved, policy) is converged
    assert not refinement_converged(moved, Policy(refine_converged_px=0.0))  # 0 = off


@pytest.mark.parametrize("check_px, working_px, window, wanted", [
    (1.5, 2.9, 4.0, True),   # val opt-SAR 75: peak 2.9 px away, within the 4 px window
    (0.9, 1.8, 4.0, False),  # under 1 check px: nothing to gain
    (5.0, 10.0, 4.0, False),  # beyond the window: recentring accepted one 10 px off
])
def test_wants_recentring_only_within_the_last_window(check_px, working_px, window, wanted):
    assert wants_recentring(check_px, working_px, window, P) is wanted
    assert not wants_recentring(check_px, working_px, window, Policy(recentre_min_shift=0.0))


OK, NO = Verdict("check"), Verdict(None)


@pytest.mark.parametrize("incident, simple, homography, keeps_homography", [
    ("MIFNet demo, real perspective: the homography's check is > 2 higher",
     (Evidence(z=12.1, shift=0.5, inliers=60), OK), (Evidence(z=15.0, shift=0.4, inliers=80), OK),
     True),
    ("SAR bends on validation gained at most 0.8: the similarity stays",
     (Evidence(z=14.5, shift=0.5, inliers=29), OK), (Evidence(z=15.3, shift=0.5, inliers=61), OK),
     False),
    ("a refused homography never replaces",
     (Evidence(z=10.0, shift=0.5, inliers=30), OK), (Evidence(z=19.0, shift=3.0, inliers=90), NO),
     False),
    ("an accepted homography replaces a refused simpler fit",
     (Evidence(z=9.5, shift=2.5, inliers=30), NO), (Evidence(z=10.0, shift=0.5, inliers=40), OK),
     True),
])
def test_prefers_perspective_table(incident, simple, homography, keeps_homography):
    assert prefers_perspective(*simple, *homography, P) is keeps_homography


def test_policy_fields_each_have_a_reason_in_the_docs():
    """Every threshold has a section in docs/policy.md (its history lives there, not in code)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "policy.md").read_text()
    missing = [f for f in policy_fields() if f"`{f}`" not in text]
    assert not missing, f"thresholds without a section in docs/policy.md: {missing}"


@pytest.mark.parametrize("network_z, gate, clear", [
    (None, 9.0, False), (8.9, 9.0, False), (9.0, 9.0, True), (30.0, 0.0, False)])
def test_network_vote_clear_at_the_gate_and_off(network_z, gate, clear):
    # failure_reason tells a refused clear vote (a bent transform) from a vote under the gate
    ev = Evidence(z=5.0, shift=0.5, inliers=30, bend=40.0, network_z=network_z)
    assert network_vote_clear(ev, Policy(network_confirm_z=gate)) is clear

