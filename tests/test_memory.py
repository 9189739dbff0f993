"""register.memory: freed buffers are reused instead of page-faulted afresh."""
import json
import platform
import subprocess
import sys

import pytest

from register.memory import hold_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# run in a fresh interpreter: a heap that already holds free memory serves a buffer from it
# whatever the thresholds say
PROBE = """
import ctypes, json, resource, statistics, torch
from register.memory import M_MMAP_THRESHOLD, hold_freed_memory

def faults(n=9, mb=16):  # median page faults of a fresh torch buffer written through
    out = []                # (numpy would ask for huge pages: 512 times fewer)
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = torch.ones(mb << 18)
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del a
    return statistics.median(out)

# the state Dask's nanny leaves (a malloc threshold set): buffers over 128 kB mapped afresh
ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 128 << 10)
mapped = faults()
applied = hold_freed_memory()
faults()  # the heap grows to hold the buffer
print(json.dumps({"mapped": mapped, "applied": applied, "held": faults()}))
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_hold_freed_memory_reuses_buffers_a_fixed_threshold_mapped_afresh():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r["applied"] is True
    assert r["mapped"] > 1000  # 16 MB = 4096 pages, each faulted
    assert r["held"] < 0.05 * r["mapped"]


def test_hold_freed_memory_reports_whether_it_applied():
    assert hold_freed_memory() is GLIBC
