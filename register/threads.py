"""CPU threads: torch's for stages made of many small tensor operations, and a process's budget.

RANSAC's tiny batched solves and the search's per-hypothesis FFTs are far faster on one torch
thread each than with several threads fighting over them, and the search already runs its
scales on a thread pool of its own. Measured on the 2-core machine: the coarse search on a
512x512 pair takes 2.0 s with one torch thread and 4.1 s with two.

A worker process that shares the machine's cores with others (:mod:`pipelines.tiles`) limits
all three of its thread pools at once with :func:`limit_threads`: torch's intra-op threads,
OpenCV's, and the search's pool (:func:`pool_size`). Without a limit each uses every core.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import cv2
import torch

_budget: int | None = None  # set by limit_threads; None: every core


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count after.

    The setting is process-wide: other threads calling torch meanwhile see it too.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pool_size() -> int:
    """Threads for a pool of this process's own (the search's scales): the CPU count, or the
    budget :func:`limit_threads` set when it is smaller."""
    cores = os.cpu_count() or 1
    return cores if _budget is None else max(1, min(cores, _budget))


def limit_threads(n: int) -> None:
    """Use at most ``n`` threads per parallel stage in this process: torch's intra-op threads,
    OpenCV's (``cv2.setNumThreads``) and :func:`pool_size`. Process-wide, like the settings
    it makes; :func:`thread_limit` undoes it after a block.

    Raises:
        ValueError: ``n`` < 1.
    """
    if int(n) < 1:
        raise ValueError(f"limit_threads: expected at least 1 thread, got {n}")
    _set(int(n), int(n), int(n))


@contextmanager
def thread_limit(n: int) -> Iterator[None]:
    """:func:`limit_threads` for the block; the previous torch and OpenCV counts and budget
    are restored after."""
    before = (torch.get_num_threads(), cv2.getNumThreads(), _budget)
    limit_threads(n)
    try:
        yield
    finally:
        _set(*before)


def _set(torch_n: int, cv2_n: int, budget: int | None) -> None:
    global _budget
    torch.set_num_threads(torch_n)
    cv2.setNumThreads(cv2_n)
    _budget = budget
