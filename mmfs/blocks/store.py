"""Where blocks live: a small ``BlockStore`` interface and its diskcache-backed implementation.

A block is stored whole or not at all, behind a header that says what it is (magic, the length of the data
and a CRC-32C), so a torn write, a truncated file or a foreign value is never served: it reads as a miss
and is downloaded again. Keys say what a block is: ``<file_id>/<block_size>/<index>``, so a change of block
size never mixes blocks of two layouts. The checksum covers the key and the length as well as the bytes: a
value filed under another key (two index rows swapped, a file copied over another) fails its check like a
damaged one. Every ``get`` checks the value it read; a block file opened for reads by fd is checked when
opened (``check_framed_file``). CRC-32C, from the ``crc32c`` package (SSE4.2 or ARMv8 instructions), is
three to four times quicker than zlib's CRC-32 here, on a path every cached read takes.

Every block of a file carries the file_id as its diskcache tag, so
deleting a file evicts its blocks in one statement.

diskcache unpickles values it finds marked as pickles (CVE-2025-69872: whoever can write the cache folder
could run code). This store writes only ``bytes`` under ``str`` keys and refuses to read anything else; the
folder is created 0700.

The ceiling is kept before storing, not after: room for a block (and for what the folder holds besides
the values: SQLite's journal, the value files' folders) is made by evicting before its file is written, so
the folder never grows past ``size_limit``. A store that fails midway removes its partial file.

The cache heals: if its folder or database vanishes or is corrupted under a live mount (a tmp reaper, an
``rm -rf`` of the cache), the next operation that notices (an SQLite error, or the database file no longer
being the one opened, checked at most once a second) reopens it, starting afresh when it cannot be opened.
Until then, and whenever it cannot be rebuilt, reads are misses and go to the network; nothing fails.

Concurrency: ``diskcache.Cache`` is safe across threads and processes; room-making and healing hold one lock.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import shutil
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

import diskcache
from crc32c import crc32c
from diskcache.core import MODE_PICKLE

from mmfs.blocks.ports import BlockStore
from mmfs.private_dir import make_private_dir

__all__ = ["BlockStore", "DiskBlockStore", "MemoryBlockStore", "block_checksum", "block_key", "check_framed_file"]

log = logging.getLogger("mmfs.blocks")

# MMB1 values (a checksum of the bytes alone) fail the magic check: they read as misses and are replaced.
_MAGIC = b"MMB2"
_HEADER = struct.Struct("<4sQI")  # magic, data length, crc32c of (key, length, data)
# What the folder holds beyond diskcache's count (its volume is the database's pages plus the values):
# the WAL journal, kept small by the pragmas below, and its index;
_JOURNAL_ALLOWANCE = 512 << 10
# and per entry, the value file's rounding up to a filesystem block and its share of diskcache's two
# levels of folders (4 KiB each, at most two new ones per file).
_ENTRY_OVERHEAD = 12 << 10
# How often the database file is checked for being the one this store opened (one stat).
_IDENTITY_CHECK_INTERVAL = 1.0
# How long a cache that could not be rebuilt stays off before the next attempt.
_REBUILD_RETRY = 5.0

T = TypeVar("T")


def block_key(file_id: str, block_size: int, index: int) -> str:
    return f"{file_id}/{block_size}/{index}"


def _seed(key: str, length: int) -> int:
    """The checksum's start: the block's identity, so the same bytes filed under another key do not pass."""
    return crc32c(f"{key}\n{length}\n".encode("utf-8", "surrogateescape"))


def block_checksum(key: str, data: bytes | bytearray | memoryview) -> int:
    return crc32c(data, _seed(key, len(data)))


class _Framed(io.RawIOBase):
    """Header then block, read as one stream: diskcache writes it without a concatenated 4 MiB copy."""

    def __init__(self, key: str, data: bytes | bytearray | memoryview) -> None:
        header = _HEADER.pack(_MAGIC, len(data), block_checksum(key, data))
        self._parts = [memoryview(header), memoryview(data)]

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


def _unframe(value: bytes, key: str) -> memoryview | None:
    """The block inside a stored value, checked as ``key``'s; a view, so a 4 MiB block is not copied."""
    if len(value) < _HEADER.size:
        return None
    magic, length, crc = _HEADER.unpack_from(value)
    data = memoryview(value)[_HEADER.size :]
    if magic != _MAGIC or length != len(data) or block_checksum(key, data) != crc:
        return None
    return data


def check_framed_file(f: BinaryIO, key: str, *, crc: bool = True) -> tuple[int, int] | None:
    """``(offset, length)`` of the block inside a stored value's file, after checking its header and (with
    ``crc``) its checksum as ``key``'s, read in pieces so a 4 MiB block is never held whole; None when it
    fails."""
    header = os.pread(f.fileno(), _HEADER.size, 0)
    if len(header) < _HEADER.size:
        return None
    magic, length, stored_crc = _HEADER.unpack(header)
    if magic != _MAGIC or os.fstat(f.fileno()).st_size != _HEADER.size + length:
        return None
    if not crc:
        return _HEADER.size, length
    running, pos = _seed(key, length), _HEADER.size
    while pos < _HEADER.size + length:
        chunk = os.pread(f.fileno(), min(1 << 20, _HEADER.size + length - pos), pos)
        if not chunk:
            return None
        running = crc32c(chunk, running)
        pos += len(chunk)
    return (_HEADER.size, length) if running == stored_crc else None


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

    def _write(self, full_path, iterator, mode, encoding=None):
        # diskcache leaves a partly written file behind when the write fails (a full disk, a size limit):
        # nothing indexes it, so nothing would ever remove it.
        try:
            return super()._write(full_path, iterator, mode, encoding)
        except BaseException as exc:
            if not (isinstance(exc, OSError) and exc.errno == errno.EEXIST):  # not ours to remove
                with contextlib.suppress(OSError):
                    os.remove(full_path)
            raise


class _BlockCache(diskcache.Cache):
    """diskcache's Cache with eviction to a target, one entry at a time (its own cull drops ten at once)."""

    def footprint(self) -> int:
        """What the folder holds on disk, by diskcache's count plus the overheads it does not count."""
        return self.volume() + len(self) * _ENTRY_OVERHEAD + _JOURNAL_ALLOWANCE

    def make_room(self, need: int, limit: int) -> None:
        """Evict least-recently-stored entries until ``need`` more bytes fit under ``limit``."""
        while self.footprint() + need > limit:
            with self._transact(retry=True) as (sql, cleanup):
                rows = sql("SELECT rowid, filename FROM Cache ORDER BY store_time LIMIT 1").fetchall()
                if not rows:
                    return
                sql("DELETE FROM Cache WHERE rowid = ?", (rows[0][0],))
                cleanup(rows[0][1])


class DiskBlockStore:
    """Blocks in a diskcache folder that never holds more than ``size_limit`` bytes (evicting
    least-recently-stored), rebuilt when it is lost or corrupted under a live mount."""

    _disk: type[diskcache.Disk] = _BytesOnlyDisk

    def __init__(self, directory: Path, size_limit: int) -> None:
        self._directory = directory
        self._size_limit = size_limit
        self._lock = threading.Lock()
        self._pending = 0  # bytes of stores under way: room was made for them, their files are being written
        self._cache: _BlockCache | None = self._open()
        self._identity = self._db_identity()
        self._next_check = time.monotonic() + _IDENTITY_CHECK_INTERVAL
        self._next_rebuild = 0.0
        # --cache-max-age: seconds a block is kept after it was stored (None: until evicted for room).
        # diskcache reads an expired block as a miss; ``expire`` frees their space.
        self.max_age: float | None = None

    def _open(self) -> _BlockCache:
        make_private_dir(self._directory)
        cache = _BlockCache(
            str(self._directory),
            disk=self._disk,
            size_limit=self._size_limit,
            # least-recently-stored: "recently used" would write to SQLite on every read (~100 us each).
            eviction_policy="least-recently-stored",
            tag_index=True,
            statistics=False,
            # put() makes room before each store; diskcache's own cull runs after the file is written.
            cull_limit=0,
            # Checkpoint the WAL every 64 pages and truncate it back: it stays within _JOURNAL_ALLOWANCE.
            sqlite_wal_autocheckpoint=64,
            sqlite_journal_size_limit=256 << 10,
        )
        len(cache)  # a database that opens but cannot be read fails here, not at the first block
        return cache

    def _db_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._directory / "cache.db")
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _rebuild(self, broken: _BlockCache | None, why: object) -> None:
        """Reopen the cache; start afresh if what is on disk cannot be opened. Once per breakage: a thread
        that saw the same broken cache after another rebuilt it does nothing."""
        with self._lock:
            if self._cache is not broken or (broken is None and time.monotonic() < self._next_rebuild):
                return
            log.warning("block cache %s is broken (%s): rebuilding it; reads use the network meanwhile",
                        self._directory, why)
            self._cache = None
            if broken is not None:
                with contextlib.suppress(Exception):
                    broken.close()
            try:
                try:
                    cache = self._open()
                except (sqlite3.Error, OSError):
                    shutil.rmtree(self._directory, ignore_errors=True)
                    cache = self._open()
            except (sqlite3.Error, OSError, diskcache.Timeout) as exc:
                log.warning("cannot rebuild the block cache %s (%s): blocks are not cached", self._directory, exc)
                self._next_rebuild = time.monotonic() + _REBUILD_RETRY
                return
            self._pending = 0
            self._cache = cache
            self._identity = self._db_identity()

    def _check_identity(self) -> None:
        """The database file must still be the one opened: connections to a deleted one keep working."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + _IDENTITY_CHECK_INTERVAL
        cache, identity = self._cache, self._identity  # as seen before the stat: a rebuild since wins
        if cache is not None and self._db_identity() != identity:
            self._rebuild(cache, "its database was replaced or removed")

    def _using(self, op: Callable[[_BlockCache], T], default: T) -> T:
        """``op`` on the live cache; on a broken one, rebuild and answer ``default`` (a miss)."""
        self._check_identity()
        cache = self._cache
        if cache is None:
            self._rebuild(None, "it could not be rebuilt before")
            return default
        try:
            return op(cache)
        except (sqlite3.Error, diskcache.Timeout) as exc:
            if isinstance(exc, sqlite3.Error):
                self._rebuild(cache, exc)
            else:
                log.warning("block cache busy (%s): treating as a miss", exc)
            return default

    def get(self, key: str) -> memoryview | None:
        return self._using(lambda cache: self._get(cache, key), None)

    def _get(self, cache: _BlockCache, key: str) -> memoryview | None:
        try:
            value = cache.get(key, default=None)
        except (ValueError, OSError) as exc:
            log.warning("unreadable cache entry %s (%s): dropping it", key, exc)
            cache.delete(key)
            return None
        if value is None:
            return None
        data = _unframe(value, key) if isinstance(value, bytes) else None
        if data is None:
            log.warning("cache entry %s failed its check: dropping it", key)
            cache.delete(key)
        return data

    def contains(self, key: str) -> bool:
        """Whether a block is stored (one index look-up: its bytes are not read or checked)."""
        return self._using(lambda cache: key in cache, False)

    def keeps_files(self) -> bool:
        return True

    def span(self, file_id: str, block_size: int, start: int, end: int, file_size: int) -> None:
        """Blocks here are files of their own: the reader opens them (``open_file``), no range spans two."""
        return None

    def let_go_of_evicted(self, wait: bool = False) -> int:
        return 0  # the reader's BlockFiles holds the descriptors of this store's files

    def open_file(self, key: str) -> BinaryIO | None:
        """The stored value's own file, open and unchecked (see ``check_framed_file``), for reads by file
        descriptor; None when the block is missing or kept inside the index rather than in a file."""
        return self._using(lambda cache: self._open_file(cache, key), None)

    @staticmethod
    def _open_file(cache: _BlockCache, key: str) -> BinaryIO | None:
        try:
            value = cache.get(key, default=None, read=True)
        except (ValueError, OSError):
            return None
        if value is None or not hasattr(value, "fileno"):
            return None
        return value

    def drop(self, key: str) -> None:
        """Forget a block found damaged."""
        log.warning("cache entry %s failed its check: dropping it", key)
        self._using(lambda cache: cache.delete(key), None)

    def put(self, key: str, data: bytes, file_id: str) -> None:
        self._using(lambda cache: self._put(cache, key, data, file_id), None)

    def _put(self, cache: _BlockCache, key: str, data: bytes, file_id: str) -> None:
        need = _HEADER.size + len(data) + _ENTRY_OVERHEAD
        with self._lock:
            if need + _JOURNAL_ALLOWANCE > self._size_limit:
                return  # larger than the whole cache: never stored
            cache.make_room(self._pending + need, self._size_limit)
            self._pending += need
        try:
            cache.set(key, _Framed(key, data), read=True, tag=file_id, expire=self.max_age)
        except OSError as exc:  # a full disk must not fail the read that fetched the block
            log.warning("could not store block %s: %s", key, exc)
        finally:
            with self._lock:
                self._pending = max(0, self._pending - need)

    def evict_file(self, file_id: str) -> int:
        return self._using(lambda cache: cache.evict(file_id), 0)

    def volume(self) -> int:
        return self._using(lambda cache: cache.footprint(), 0)

    def free_bytes(self, wanted: int) -> int:
        """Evict least-recently-stored blocks until ``wanted`` bytes are freed or none is left: a spool
        being written on a full disk comes before the cache. Returns the bytes freed."""
        return self._using(lambda cache: self._free_bytes(cache, wanted), 0)

    def _free_bytes(self, cache: _BlockCache, wanted: int) -> int:
        if not len(cache):  # a stored count: an empty cache costs a spool write nothing
            return 0
        before = cache.volume()
        cache.reset("size_limit", max(0, before - wanted))
        try:
            cache.cull()
        except OSError as exc:
            log.warning("could not evict blocks to free space: %s", exc)
        finally:
            cache.reset("size_limit", self._size_limit)
        return max(0, before - cache.volume())

    # Counting and clearing heal like reads do: a removed cache folder must not fail `mmfs status`.
    def count(self) -> int:
        return self._using(len, 0)

    def file_ids(self) -> set[str]:
        """The files with at least one block here (keys begin with the file_id)."""
        return self._using(lambda cache: {str(key).split("/", 1)[0] for key in cache.iterkeys()}, set())

    def clear(self) -> None:
        self._using(lambda cache: cache.clear(), None)

    def expire(self) -> int:
        """Remove the blocks older than ``max_age``; how many went."""
        return self._using(lambda cache: cache.expire(), 0)

    def close(self) -> None:
        if self._cache is not None:
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

    def keeps_files(self) -> bool:
        return False

    def open_file(self, key: str) -> BinaryIO | None:
        return None

    def span(self, file_id: str, block_size: int, start: int, end: int, file_size: int) -> None:
        return None

    def let_go_of_evicted(self, wait: bool = False) -> int:
        return 0

    def drop(self, key: str) -> None:
        with self._lock:
            self._blocks.pop(key, None)

    def close(self) -> None:
        pass
