"""Block arithmetic: which fixed-size blocks cover a byte range. Pure functions.

Ranges are half-open, ``[start, end)``, everywhere in mmfs; only the HTTP Range header is inclusive.
"""

from __future__ import annotations

__all__ = ["block_bounds", "block_count", "blocks_for_range", "clamp_read"]


def block_count(file_size: int, block_size: int) -> int:
    """How many blocks hold a file: the last one may be short; an empty file has none."""
    return -(-file_size // block_size) if file_size > 0 else 0


def block_bounds(index: int, block_size: int, file_size: int) -> tuple[int, int]:
    """``[start, end)`` of block ``index``; the last block ends at the file's end."""
    start = index * block_size
    if index < 0 or start >= file_size:
        raise ValueError(f"block {index} is outside a file of {file_size} bytes")
    return start, min(start + block_size, file_size)


def clamp_read(offset: int, size: int, file_size: int) -> tuple[int, int]:
    """A read of ``size`` bytes at ``offset`` as ``[start, end)`` within the file (empty past EOF)."""
    if offset < 0 or size < 0:
        raise ValueError("negative offset or size")
    start = min(offset, file_size)
    return start, min(start + size, file_size)


def blocks_for_range(start: int, end: int, block_size: int) -> range:
    """The indices of the blocks that ``[start, end)`` touches (none for an empty range)."""
    if end <= start:
        return range(0)
    return range(start // block_size, (end - 1) // block_size + 1)
