"""register.verify: the global structural check on a real pair."""
from __future__ import annotations

import numpy as np

from register.config import Config
from register.geometry import similarity
from register.io import read_image, to_gray
from register.verify import verify_alignment


def test_verify_alignment_confirms_truth_and_rejects_wrong_transform(data_root, srif_opt_ir_pair):
    """The global check peaks at zero shift for the true transform, not for a rotated one."""
    pair = srif_opt_ir_pair
    f = to_gray(read_image(data_root / pair.fixed))
    m = to_gray(read_image(data_root / pair.moving))
    ok = verify_alignment(f.image, f.mask, m.image, m.mask, pair.H_array, 320)
    z_ok, shift_ok = ok.z, ok.shift
    h, w = f.image.shape
    c = ((w - 1) / 2, (h - 1) / 2)
    wrong = similarity(25.0, 1.0, c, c) @ pair.H_array
    bad = verify_alignment(f.image, f.mask, m.image, m.mask, wrong, 320)
    z_bad, shift_bad = bad.z, bad.shift
    cfg = Config()
    assert z_ok >= cfg.policy.verify_min_z and shift_ok <= cfg.policy.verify_max_shift
    assert z_bad < cfg.policy.verify_min_z or shift_bad > cfg.policy.verify_max_shift
    assert z_ok > z_bad + 5


def test_verify_alignment_offset_undoes_a_shift(data_root, srif_opt_ir_pair):
    """A transform moved by a few pixels fails the check; its peak offset moves it back."""
    pair = srif_opt_ir_pair
    f = to_gray(read_image(data_root / pair.fixed))
    m = to_gray(read_image(data_root / pair.moving))
    moved = np.array([[1, 0, 4.0], [0, 1, -3.0], [0, 0, 1]]) @ pair.H_array
    off = verify_alignment(f.image, f.mask, m.image, m.mask, moved, 320)
    assert off.shift > Config().policy.verify_max_shift
    np.testing.assert_allclose(off.offset, (-4.0, 3.0), atol=0.6)
    back = verify_alignment(f.image, f.mask, m.image, m.mask, off.recentred(moved), 320)
    assert back.shift < 0.6 and back.z > off.z + 5


def test_verify_alignment_reuses_a_check_frame_with_the_same_numbers(data_root,
                                                                     srif_opt_ir_pair):
    from register.verify import check_frame

    pair = srif_opt_ir_pair
    f = to_gray(read_image(data_root / pair.fixed))
    m = to_gray(read_image(data_root / pair.moving))
    frame = check_frame(f.image, f.mask, 320)
    h, w = f.image.shape
    for H in (pair.H_array, similarity(3.0, 1.05, ((w - 1) / 2, (h - 1) / 2), (w / 2, h / 2))
              @ pair.H_array):
        alone = verify_alignment(f.image, f.mask, m.image, m.mask, H, 320)
        shared = verify_alignment(f.image, f.mask, m.image, m.mask, H, 320, frame=frame)
        assert shared == alone  # bit for bit


def test_shift_grid_is_square_with_zero_inside():
    from register.verify import shift_grid

    grid, zero = shift_grid(8, 4)
    assert grid.shape == (25, 2) and grid.dtype == np.float32
    assert tuple(grid[zero]) == (0.0, 0.0)
    assert grid.min() == -8 and grid.max() == 8


def test_shift_grid_refuses_a_radius_off_the_steps():
    import pytest

    from register.verify import shift_grid

    with pytest.raises(ValueError, match="multiple of the step"):
        shift_grid(6, 4)


def test_network_vote_counts_zero_shift_wins_against_chance():
    from register.verify import network_vote

    prob = np.full((64, 25), 0.1, np.float32)
    prob[:, 3] = 0.9  # every keypoint prefers another shift
    assert network_vote(prob, 12).share == 0.0 and network_vote(prob, 12).z < 0
    prob[:32, 12] = 0.95  # half prefer zero shift
    v = network_vote(prob, 12)
    assert v.keypoints == 64 and v.share == 0.5
    assert np.isclose(v.z, (0.5 - 0.04) * np.sqrt(64 / (0.04 * 0.96)))
    assert network_vote(np.zeros((0, 25), np.float32), 12).z == 0.0


def test_network_check_votes_for_the_truth_not_a_near_miss(data_root, srif_opt_ir_pair):
    """On a real optical-infrared pair the shipped network's vote clears the policy's gate at
    the true transform and stays at chance 12 px away (outside the vote's +-8 px)."""
    from register.decide import Policy
    from register.scorers import NetworkScorer, Timer
    from register.score import load_model
    from register.verify import network_check

    pair = srif_opt_ir_pair
    f = to_gray(read_image(data_root / pair.fixed))
    m = to_gray(read_image(data_root / pair.moving))
    scorer = NetworkScorer(load_model("auto", "cpu"))
    cfg, timer = Config().verify, Timer()
    right = network_check(scorer, f, m, pair.H_array, cfg, timer)
    near = network_check(scorer, f, m, np.array([[1, 0, 12.0], [0, 1, 0], [0, 0, 1]])
                         @ pair.H_array, cfg, timer)
    gate = Policy().network_confirm_z
    assert right.keypoints >= 20 and right.z >= gate
    assert near.z < gate / 2
    assert timer.t.get("network_check", 0) > 0


def test_network_check_without_a_network_is_none(data_root, srif_opt_ir_pair):
    from register.scorers import StructuralScorer, Timer
    from register.verify import network_check

    pair = srif_opt_ir_pair
    f = to_gray(read_image(data_root / pair.fixed))
    m = to_gray(read_image(data_root / pair.moving))
    assert network_check(StructuralScorer(), f, m, pair.H_array, Config().verify, Timer()) is None
