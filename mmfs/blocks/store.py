"""Where blocks live: a small ``BlockStore`` interface and its diskcache-backed implementation.

A block is stored whole or not at all, behind a header that says what it is (magic, the length of the data
and its CRC-32), so a torn write, a truncated file or a foreign value is never served: it reads as a miss
and is downloaded again. Keys say what a block is: ``<file_id>/<block_size>/<index>``, so a change of block
size never mixes blocks of two layouts. Every block of a file carries the file_id as its diskcache tag, so
deleting a file evicts its blocks in one statement.

diskcache unpickles values it finds marked as pickles (CVE-2025-69872: whoever can write the cache folder
could run code). This store writes only ``bytes`` under ``str`` keys and refuses to read anything else; the
folder is created 0700.

Concurrency: ``diskcache.Cache`` is safe across threads and processes; the verified-key set has its own lock.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import BinaryIO, Protocol

import diskcache
from diskcache.core import MODE_PICKLE

from mmfs.private_dir import make_private_dir

__all__ = ["BlockStore", "DiskBlockStore", "MemoryBlockStore", "block_key", "check_framed_file"]

log = logging.getLogger("mmfs.blocks")

_MAGIC = b"MMB1"
_HEADER = struct.Struct("<4sQI")  # magic, data length, crc32


def block_key(file_id: str, block_size: int, index: int) -> str:
    return f"{file_id}/{block_size}/{index}"


class BlockStore(Protocol):
    """What the reader needs of a store. ``get`` returns a verified block or None."""

    def get(self, key: str) -> memoryview | bytes | None: ...
    def contains(self, key: str) -> bool: ...
    def put(self, key: str, data: bytes, file_id: str) -> None: ...
    def evict_file(self, file_id: str) -> int: ...
    def close(self) -> None: ...


class _Framed(io.RawIOBase):
    """Header then block, read as one stream: diskcache writes it without a concatenated 4 MiB copy."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._parts = [memoryview(_HEADER.pack(_MAGIC, len(data), zlib.crc32(data))), memoryview(data)]

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._parts and not len(self._parts[0]):
            self._parts.pop(0)
        if not self._parts:
            return b""
        part = self._parts[0]
        take = len(part) if size is None or size < 0 else min(size, len(part))
        self._parts[0] = part[take:]
        return part[:take]  # type: ignore[return-value]  # a view: file.write takes it as is


def _unframe(value: bytes) -> memoryview | None:
    """The block inside a stored value, checked; a view, so a 4 MiB block is not copied to be checked."""
    if len(value) < _HEADER.size:
        return None
    magic, length, crc = _HEADER.unpack_from(value)
    data = memoryview(value)[_HEADER.size :]
    if magic != _MAGIC or length != len(data) or zlib.crc32(data) != crc:
        return None
    return data


def check_framed_file(f: BinaryIO, *, crc: bool = True) -> tuple[int, int] | None:
    """``(offset, length)`` of the block inside a stored value's file, after checking its header and (with
    ``crc``) its checksum, read in pieces so a 4 MiB block is never held whole; None when it fails."""
    header = os.pread(f.fileno(), _HEADER.size, 0)
    if len(header) < _HEADER.size:
        return None
    magic, length, crc = _HEADER.unpack(header)
    if magic != _MAGIC or os.fstat(f.fileno()).st_size != _HEADER.size + length:
        return None
    if not crc:
        return _HEADER.size, length
    running, pos = 0, _HEADER.size
    while pos < _HEADER.size + length:
        chunk = os.pread(f.fileno(), min(1 << 20, _HEADER.size + length - pos), pos)
        if not chunk:
            return None
        running = zlib.crc32(chunk, running)
        pos += len(chunk)
    return (_HEADER.size, length) if running == crc else None


class _BytesOnlyDisk(diskcache.Disk):
    """diskcache's Disk, refusing to store or load anything but str keys and bytes values."""

    def put(self, key):
        if not isinstance(key, str):
            raise TypeError("block keys are str")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise ValueError("refusing a pickled cache key")
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not (read and isinstance(value, _Framed)) and not isinstance(value, bytes):
            raise TypeError("block values are bytes")
        return super().store(value, read, key=key)

    def fetch(self, mode, filename, value, read):
        if mode == MODE_PICKLE:
            raise ValueError("refusing a pickled cache value")
        return super().fetch(mode, filename, value, read)


class DiskBlockStore:
    """Blocks in a diskcache folder bounded by ``size_limit`` bytes (evicting least-recently-stored)."""

    def __init__(self, directory: Path, size_limit: int) -> None:
        make_private_dir(directory)
        self._cache = diskcache.Cache(
            str(directory),
            disk=_BytesOnlyDisk,
            size_limit=size_limit,
            # least-recently-stored: "recently used" would write to SQLite on every read (~100 us each).
            eviction_policy="least-recently-stored",
            tag_index=True,
            statistics=False,
            # diskcache culls a fixed count per insert, not "down to the limit": one per insert keeps the
            # cache full instead of emptying ten blocks at a time; put() trims any remainder.
            cull_limit=1,
        )
        self._size_limit = size_limit

    def get(self, key: str) -> memoryview | None:
        try:
            value = self._cache.get(key, default=None)
        except (ValueError, OSError) as exc:
            log.warning("unreadable cache entry %s (%s): dropping it", key, exc)
            self._cache.delete(key)
            return None
        if value is None:
            return None
        data = _unframe(value) if isinstance(value, bytes) else None
        if data is None:
            log.warning("cache entry %s failed its check: dropping it", key)
            self._cache.delete(key)
        return data

    def contains(self, key: str) -> bool:
        """Whether a block is stored (one index look-up: its bytes are not read or checked)."""
        return key in self._cache

    def open_file(self, key: str) -> BinaryIO | None:
        """The stored value's own file, open and unchecked (see ``check_framed_file``), for reads by file
        descriptor; None when the block is missing or kept inside the index rather than in a file."""
        try:
            value = self._cache.get(key, default=None, read=True)
        except (ValueError, OSError):
            return None
        if value is None or not hasattr(value, "fileno"):
            return None
        return value

    def drop(self, key: str) -> None:
        """Forget a block found damaged."""
        log.warning("cache entry %s failed its check: dropping it", key)
        self._cache.delete(key)

    def put(self, key: str, data: bytes, file_id: str) -> None:
        try:
            self._cache.set(key, _Framed(data), read=True, tag=file_id)
            if self._cache.volume() > self._size_limit:  # a short block evicted for a long one
                self._cache.cull()
        except OSError as exc:  # a full disk must not fail the read that fetched the block
            log.warning("could not store block %s: %s", key, exc)

    def evict_file(self, file_id: str) -> int:
        return self._cache.evict(file_id)

    def volume(self) -> int:
        return self._cache.volume()

    def close(self) -> None:
        self._cache.close()


class MemoryBlockStore:
    """A dict-backed store for tests and for mounts with no disk cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: dict[str, tuple[str, bytes]] = {}

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._blocks.get(key)
        return entry[1] if entry else None

    def contains(self, key: str) -> bool:
        with self._lock:
            return key in self._blocks

    def put(self, key: str, data: bytes, file_id: str) -> None:
        with self._lock:
            self._blocks[key] = (file_id, bytes(data))

    def evict_file(self, file_id: str) -> int:
        with self._lock:
            doomed = [key for key, (owner, _) in self._blocks.items() if owner == file_id]
            for key in doomed:
                del self._blocks[key]
        return len(doomed)

    def close(self) -> None:
        pass
