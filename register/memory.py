"""How the process's C allocator keeps freed memory: set once by the programs that register
pairs (the CLI, the batch and evaluation pipelines), never by the library on import.

A registration allocates and frees buffers of one to thirty megabytes hundreds of times
(network activations, FFT spectra, resampled frames). glibc serves a buffer above its *mmap
threshold* with a fresh mapping, and gives the top of the heap back to the system once more
than its *trim threshold* is free there; both adapt on their own, so whether a buffer of a
given size is reused or page-faulted afresh on every call depends on where earlier buffers lay.
On the project's 2-core machine about half the processes were unlucky: one 256-patch
convolution's output reorder took 9 ms against 1.5 ms, and the benchmark's MIFNet
optical-NIR pair took 62,000 page faults per registration. :func:`hold_freed_memory` pins the
mmap threshold at glibc's largest, 32 MB, and the trim threshold at 1 GB: the same pair then
takes 1,800 page faults and 1.19 s against 1.44 s (``docs/results.md``, "Speed, session 14").
A process keeps the heap of its peak use until it exits, which is bounded by that peak.

Setting the thresholds explicitly also undoes a ``MALLOC_TRIM_THRESHOLD_`` inherited from the
environment (Dask's nanny sets one), which had turned the adaptive mmap threshold off.
"""
from __future__ import annotations

import ctypes
import platform

#: ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: glibc's largest mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2); buffers above it are
#: always mapped afresh, which is why the CPU network batch is 256 (register.score.DEFAULT_BATCH)
MMAP_THRESHOLD_BYTES = 32 << 20
#: free memory at the top of the heap kept for reuse instead of returned to the system
TRIM_THRESHOLD_BYTES = 1 << 30


def hold_freed_memory(*, mmap_threshold: int = MMAP_THRESHOLD_BYTES,
                      trim_threshold: int = TRIM_THRESHOLD_BYTES) -> bool:
    """Keep freed buffers up to ``mmap_threshold`` bytes on the heap for reuse, and up to
    ``trim_threshold`` bytes of free heap before returning it to the system (glibc's
    ``mallopt``). Idempotent and process-wide.

    Returns:
        True when both settings were applied; False on a C library other than glibc (macOS,
        Windows, musl), where nothing is changed.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and \
        bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
