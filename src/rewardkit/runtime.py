"""Process-wide settings that make CPU training faster."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep the memory the process frees, for its next allocations; False where that is not
    possible (not Linux, not glibc).

    By default glibc serves every block over its mmap threshold (at most 32 MB) with a fresh mapping and unmaps it
    on free, so each training step's large activations (MiniLM's [tokens, 1536] intermediates are ~60 MB) come back
    as new pages the kernel zero-fills on first touch. Those page faults cost 7-10% of a MiniLM training step on a
    2-core CPU (benchmarks/bench_levers.py). From the heap, freed blocks are reused by the next step; peak memory
    stays the same, since steps allocate the same sizes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    largest = 2 ** 31 - 1  # mallopt takes a C int
    # setting the thresholds also stops glibc's dynamic threshold from moving them back
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, largest))
