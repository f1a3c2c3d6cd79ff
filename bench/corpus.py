"""The benchmark's data: deterministic files that every tool serves and every reader can check.

A big file is a 1 MiB pattern repeated, each 1 MiB block stamped with its index in its first 8 bytes, so a
reader can check that block ``i`` really holds block ``i`` without hashing a gibibyte (which would cost as
much as the read being timed). The null filesystem serves the same bytes from memory, so one checker fits
every tool. Small files (for the listing test) hold a short line naming themselves.

Files are written once under the work folder and reused while their size is right.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

__all__ = [
    "BLOCK",
    "PATTERN",
    "STAMP_SIZE",
    "block_bytes",
    "check_block_stamps",
    "ensure_big_file",
    "ensure_small_files",
    "expected_bytes",
    "small_file_bytes",
    "small_file_name",
    "stamp_bytes",
]

BLOCK = 1 << 20
_SEED = 20240611
# Random bytes, so no layer on the way can compress or deduplicate them.
PATTERN = random.Random(_SEED).randbytes(BLOCK)
_STAMP = struct.Struct("<Q")
STAMP_SIZE = _STAMP.size


def stamp_bytes(index: int) -> bytes:
    """The first bytes of block ``index``: its index, so a reader can tell blocks apart."""
    return _STAMP.pack(index)


def block_bytes(index: int) -> bytes:
    """The full 1 MiB block number ``index`` of every big file."""
    return _STAMP.pack(index) + PATTERN[STAMP_SIZE:]


def expected_bytes(offset: int, length: int, size: int) -> bytes:
    """The bytes ``[offset, offset + length)`` of a big file of ``size`` bytes (cut at its end)."""
    end = min(offset + length, size)
    out = bytearray()
    pos = offset
    while pos < end:
        index, within = divmod(pos, BLOCK)
        take = min(BLOCK - within, end - pos)
        out += block_bytes(index)[within : within + take]
        pos += take
    return bytes(out)


def check_block_stamps(buf: bytes | bytearray | memoryview, offset: int) -> bool:
    """True when every block start inside ``buf`` (read from ``offset``) carries its own index."""
    view = memoryview(buf)
    first = -(-offset // BLOCK)  # the first block that starts at or after offset
    pos = first * BLOCK - offset
    while pos + STAMP_SIZE <= len(view):
        if _STAMP.unpack_from(view, pos)[0] != first:
            return False
        first += 1
        pos += BLOCK
    return True


def ensure_big_file(path: Path, size: int) -> Path:
    """Write the big file of ``size`` bytes at ``path`` unless it is already there with that size."""
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as out:
        index = 0
        remaining = size
        while remaining > 0:
            chunk = block_bytes(index)[: min(BLOCK, remaining)]
            out.write(chunk)
            remaining -= len(chunk)
            index += 1
    os.replace(tmp, path)
    return path


def small_file_name(index: int) -> str:
    return f"f{index:05d}.txt"


def small_file_bytes(index: int) -> bytes:
    # A few hundred bytes, different lengths, so du and ls have something real to add up.
    return (f"small file {index:05d}\n" * (1 + index % 16)).encode()


def ensure_small_files(folder: Path, count: int) -> Path:
    """Fill ``folder`` with ``count`` small files (kept when the folder already holds exactly those)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".complete"
    if marker.exists() and marker.read_text() == str(count):
        return folder
    for index in range(count):
        (folder / small_file_name(index)).write_bytes(small_file_bytes(index))
    marker.write_text(str(count))
    return folder
