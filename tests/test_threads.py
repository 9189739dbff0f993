"""register.threads: torch threads per stage and a process's thread budget."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from register.config import Config
from register.io import read_image, to_gray
from register.search import coarse_hypotheses
from register.threads import limit_threads, pool_size, thread_limit, torch_threads


def test_thread_limit_sets_every_pool_and_restores():
    before = (torch.get_num_threads(), cv2.getNumThreads(), pool_size())
    with thread_limit(1):
        assert (torch.get_num_threads(), cv2.getNumThreads(), pool_size()) == (1, 1, 1)
    assert (torch.get_num_threads(), cv2.getNumThreads(), pool_size()) == before


def test_pool_size_is_at_most_the_cpu_count():
    with thread_limit(10_000):
        assert pool_size() == (os.cpu_count() or 1)


def test_limit_threads_rejects_fewer_than_one():
    with pytest.raises(ValueError, match="at least 1"):
        limit_threads(0)


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_coarse_hypotheses_same_under_one_thread(data_root, srif_opt_ir_pair):
    # the search sorts its peaks, so its pool's size changes the time, not the result
    p = srif_opt_ir_pair
    f = to_gray(read_image(data_root / p.fixed))
    m = to_gray(read_image(data_root / p.moving))
    cfg = Config().search
    free = coarse_hypotheses(f.image, f.mask, m.image, m.mask, cfg)
    with thread_limit(1):
        one = coarse_hypotheses(f.image, f.mask, m.image, m.mask, cfg)
    assert len(free) == len(one) >= 1
    for a, b in zip(free, one):
        np.testing.assert_array_equal(a.H, b.H)
        assert (a.angle_deg, a.scale, a.score) == (b.angle_deg, b.scale, b.score)
