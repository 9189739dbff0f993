"""Torch intra-op threads for stages made of many small tensor operations.

RANSAC's tiny batched solves and the search's per-hypothesis FFTs are far faster on one torch
thread each than with several threads fighting over them, and the search already runs its
scales on a thread pool of its own. Measured on the 2-core machine: the coarse search on a
512x512 pair takes 2.0 s with one torch thread and 4.1 s with two.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


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
