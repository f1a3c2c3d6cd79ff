"""Memory that a block cache gives back: glibc's malloc tuned for buffers of several MiB.

Blocks are 4 MiB buffers allocated and freed all the time, from many threads. glibc serves such a buffer
with its own mmap, and gives it back to the system when freed, until the first free: then it raises its
"mmap threshold" to that size and serves the next 4 MiB buffers from its heaps (one per thread, up to eight
per core), where freed blocks stay resident. Under sixteen readers that doubled the mount's RSS. A fixed
threshold keeps every buffer of 1 MiB or more on its own mapping, returned on free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["return_big_buffers_to_the_system"]

log = logging.getLogger("mmfs.blocks")

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_THRESHOLD = 1 << 20
_done = False


def return_big_buffers_to_the_system() -> None:
    """Fix glibc's mmap threshold at 1 MiB (once per process; a no-op off glibc)."""
    global _done
    if _done:
        return
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: its allocator is its own business
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not mallopt(_M_MMAP_THRESHOLD, _THRESHOLD):
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
