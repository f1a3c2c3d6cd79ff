"""Readahead policy: which blocks to fetch ahead of a reader. Pure logic, one instance per open file.

A reader that keeps reading where it left off is streaming (cp, a video player): fetch ahead in a window
that doubles on every block boundary crossed in sequence, up to a limit, as mountpoint-s3's prefetcher and
rclone's chunked reader do. A seek resets the window, so random access costs only what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmfs.blocks.arithmetic import block_count

__all__ = ["SequentialPrefetch"]


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

    def __post_init__(self) -> None:
        self._next_offset: int | None = None
        self._streak = 0
        self._window = 0
        self._last_block = -1
        self._scheduled = -1  # the furthest block already handed out: each block is asked for once

    @property
    def window(self) -> int:
        return self._window

    @property
    def streaming(self) -> bool:
        """The reader is in a sequential streak long enough to count as a stream."""
        return self._streak >= self.min_streak

    def advise(self, offset: int, size: int) -> list[int]:
        """Record a read of ``size`` bytes at ``offset``; return the block indices worth fetching ahead."""
        sequential = self._next_offset is not None and abs(offset - self._next_offset) <= self.slack
        self._next_offset = offset + size
        if not sequential:
            self._window = 0
            self._streak = size
            self._last_block = offset // self.block_size
            self._scheduled = -1
            return []
        self._streak += size
        if self._streak < self.min_streak:
            return []
        block = (offset + max(size, 1) - 1) // self.block_size
        if block != self._last_block:
            self._last_block = block
            self._window = min(max(1, self._window * 2), self.max_window)
        elif self._window == 0:
            self._window = 1
        return self._ahead(block, self._window)

    def _ahead(self, block: int, window: int) -> list[int]:
        last = block_count(self.file_size, self.block_size) - 1
        first = max(block + 1, self._scheduled + 1)
        stop = min(block + window, last)
        if first > stop:
            return []
        self._scheduled = stop
        return list(range(first, stop + 1))
