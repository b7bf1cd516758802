"""Process-wide CPU settings."""

import ctypes
import sys

import pytest
import torch

from rewardkit.runtime import keep_freed_memory


class MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _malloc_state() -> MallInfo2:
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
    return mallinfo2()


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"),
                    reason="glibc's malloc")
def test_a_freed_activation_stays_with_the_process_for_the_next_one():
    megabytes = 64  # over glibc's largest default mmap threshold (32 MB): unmapped on free by default
    assert keep_freed_memory()
    block = torch.ones(megabytes << 18)
    held = _malloc_state()
    assert held.hblkhd < megabytes << 20 <= held.uordblks  # served from the heap, not its own mapping
    del block
    freed = _malloc_state()
    assert freed.arena >= megabytes << 20 <= freed.fordblks  # freed to the heap, kept for the next allocation
