"""Readahead policy: how much to fetch for a reader, and which blocks ahead. Pure logic, one per open file.

After a seek, a read that misses the cache downloads a small range (``first_fetch``, 16 KiB), not a
whole block: a video player or a PDF viewer jumping around pays for what it reads. Each read that carries
on where the last one ended fetches twice the bytes read in sequence so far, up to a whole block, in the
spirit of mountpoint-s3's prefetcher.
Once the reader has read ``min_streak`` bytes in sequence it is streaming (cp, a player playing): reads
fetch whole blocks, and blocks ahead are fetched in a window of ``ahead_factor`` times the bytes read in
sequence so far (so a fresh ``cp`` has all the parallelism within its first few MiB), up to a limit. A
seek resets both, so random access costs only what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmfs.blocks.arithmetic import block_count

__all__ = ["SequentialPrefetch"]

_GROWTH = 2  # a reader in sequence fetches this many times what it has read in sequence so far


@dataclass
class SequentialPrefetch:
    block_size: int
    file_size: int
    max_window: int = 16  # blocks; 16 x 4 MiB = the default 64 MiB in flight
    # The kernel may reorder or merge its readahead requests a little; a jump back or forward of up to
    # this many bytes still counts as "in sequence".
    slack: int = 256 << 10
    # Bytes read in sequence before fetching ahead: a program peeking at a header, or two neighbouring
    # small reads, is not a stream; cp and a video player pass this in their first few kernel reads.
    min_streak: int = 512 << 10
    # The download size of a cache miss right after a seek; it grows on every read in sequence. The
    # kernel passes a random 4 KiB pread on as a 4 KiB read: 16 KiB keeps that at 4x, one round trip.
    first_fetch: int = 16 << 10
    # A stream may have this many times the bytes it has read in sequence in flight ahead of it, and
    # at least ``first_window`` blocks: waiting on its first block alone would leave the network idle.
    ahead_factor: int = 8
    first_window: int = 4

    def __post_init__(self) -> None:
        self._next_offset: int | None = None
        self._streak = 0
        self._window = 0
        self._fetch = self.first_fetch
        self._scheduled = -1  # the furthest block already handed out: each block is asked for once

    @property
    def window(self) -> int:
        return self._window

    @property
    def streaming(self) -> bool:
        """The reader is in a sequential streak long enough to count as a stream."""
        return self._streak >= self.min_streak

    @property
    def fetch_size(self) -> int:
        """Bytes a read that misses the cache should download: small after a seek, then doubling while
        reads stay in sequence, whole blocks once the reader streams."""
        return self.block_size if self.streaming else min(self._fetch, self.block_size)

    def advise(self, offset: int, size: int) -> list[int]:
        """Record a read of ``size`` bytes at ``offset``; return the block indices worth fetching ahead."""
        sequential = self._next_offset is not None and abs(offset - self._next_offset) <= self.slack
        self._next_offset = offset + size
        if not sequential:
            self._window = 0
            self._streak = size
            self._fetch = self.first_fetch
            self._scheduled = -1
            return []
        self._streak += size
        # Twice the bytes read in sequence so far: two 128 KiB kernel reads fetch 512 KiB next, which
        # carries a stream to ``min_streak`` in one round trip, not three; tiny reads grow it slowly (and
        # the kernel's own readahead around one read does not snowball into megabytes).
        self._fetch = min(max(self.first_fetch, self._streak * _GROWTH), self.block_size)
        if self._streak < self.min_streak:
            return []
        block = (offset + max(size, 1) - 1) // self.block_size
        wanted = -(-self._streak * self.ahead_factor // self.block_size)
        self._window = min(max(self._window, wanted, self.first_window, 1), self.max_window)
        return self._ahead(block, self._window)

    def _ahead(self, block: int, window: int) -> list[int]:
        last = block_count(self.file_size, self.block_size) - 1
        first = max(block + 1, self._scheduled + 1)
        stop = min(block + window, last)
        if first > stop:
            return []
        self._scheduled = stop
        return list(range(first, stop + 1))
