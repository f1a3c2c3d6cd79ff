"""Memory for blocks: buffers received into again and again, and glibc's malloc tuned for the rest.

``BlockBuffers`` hands out block-sized buffers for downloads to land in, each used for block after block.
A fresh 4 MiB buffer is fresh memory, and the kernel faults in each of its 1,024 pages as the first bytes
land: on a cold read those faults and allocations were about a fifth of the mount's CPU.

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
import sys
import threading
from dataclasses import dataclass

__all__ = ["BlockBuffers", "return_big_buffers_to_the_system"]

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


@dataclass
class BufferCounts:
    pooled: int  # buffers the pool holds, busy or idle (never more than its limit)
    reused: int  # buffers handed out again
    made: int  # buffers made for the pool
    unpooled: int  # buffers made outside it: the pool was full, or not a whole block


class BlockBuffers:
    """Block-sized buffers, each handed out again once nothing refers to it any more.

    A block received into a buffer goes on to the memory cache, the write-behind queue, readers' views
    and waiters; any of them may keep it for a while, and none says when it is done. So the pool does not
    wait to be given a buffer back: it hands out one that nothing but itself refers to (a view of a buffer
    holds a reference to it, a list or a queue holding it too), so no holder can lose its bytes to another
    block. Those holders bound how many are busy; the pool keeps at most ``limit`` and, idle, at most
    ``spare`` besides the one it hands out, so its memory is what the holders hold, plus a few blocks.
    Past ``limit``, or for a block shorter than ``size`` (a file's last), a buffer of its own is made,
    returned to the system when dropped.

    Concurrency: ``_lock`` guards the list; a buffer in it can be reached only through it, so none can be
    taken between being found idle and handed out.
    """

    def __init__(self, size: int, limit: int, spare: int = 4) -> None:
        self.size = size
        self._limit = max(0, limit)
        self._spare = max(0, spare)
        self._lock = threading.Lock()
        self._buffers: list[bytearray] = []
        self._reused = self._made = self._unpooled = 0
        # The references an idle buffer has, seen the way ``_references`` sees them (the interpreter's own count
        # of a call's arguments may differ from one version to the next: measured, not assumed).
        self._buffers.append(bytearray(1))
        self._idle_refs = self._references()[0]
        self._buffers.clear()

    def _references(self) -> list[int]:
        """How many references each buffer has, counted the same way every time."""
        count = sys.getrefcount
        return [count(buf) for buf in self._buffers]

    def take(self, length: int) -> bytearray:
        """A buffer of exactly ``length`` bytes, its content whatever it last held: the caller overwrites
        all of it."""
        if length != self.size:
            with self._lock:
                self._unpooled += 1
            return bytearray(length)
        with self._lock:
            idle = [i for i, refs in enumerate(self._references()) if refs <= self._idle_refs]
            for i in reversed(idle[1 + self._spare:]):  # more idle than needed: back to the system
                del self._buffers[i]
            if idle:
                self._reused += 1
                return self._buffers[idle[0]]
            buf = bytearray(length)
            if len(self._buffers) < self._limit:
                self._buffers.append(buf)
                self._made += 1
            else:
                self._unpooled += 1
            return buf

    def counts(self) -> BufferCounts:
        with self._lock:
            return BufferCounts(len(self._buffers), self._reused, self._made, self._unpooled)
