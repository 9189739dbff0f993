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
