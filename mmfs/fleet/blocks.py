"""A shared block tier between a mount's disk cache and the platform: a ``RangeSource`` that asks Redis first.

``SharedBlockSource`` wraps the source that downloads (``RemoteSource``): a range is looked up in Redis, and
only on a miss downloaded, by one mount (the others wait for it under a per-block lease). The downloaded
bytes are then added to Redis in the background, so the next mount that needs them reads them from Redis
instead of the CDN. A file's bytes never change under its id,
so a stored range is right forever; Redis's own ``maxmemory`` policy (``allkeys-lru``) decides what stays.

Every stored range carries a header (magic, length, BLAKE2b digest) and is checked on the way out: a value
cut short, corrupted, or written by something else is ignored and downloaded again. Redis trouble of any
kind means "a miss".

Keys: ``<prefix>blk:<file_id>:<start>-<end>``, one per block-sized range the reader asks for, and beside
each ``...:lease`` while one mount downloads it.

Concurrency: fills run on a small pool; ``_lock`` guards the pending count and counters.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from mmfs.blocks.reader import RangeSource
from mmfs.fleet.link import RedisLink
from mmfs.threads import thread_pool

__all__ = ["SharedBlockSource", "frame", "unframe"]

log = logging.getLogger("mmfs.fleet")

_MAGIC = b"MMS1"
_DIGEST = 16
_HEADER = struct.Struct(f"<4sQ{_DIGEST}s")
# A mount downloading a block holds its lease this long at most; peers wanting the same block meanwhile
# wait for it in Redis (up to _WAIT_SECONDS) instead of downloading it too: mounts started together on the
# same files then fetch each block from the CDN once between them.
_LEASE_MS = 10_000
_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.02
# Fills waiting to be written: beyond this a filled block is simply not shared (memory stays bounded at
# this many blocks, 32 MiB with 4 MiB blocks, however slow Redis is).
_MAX_PENDING = 8


def frame(data: bytes | bytearray | memoryview) -> bytes:
    digest = hashlib.blake2b(data, digest_size=_DIGEST).digest()
    return b"".join((_HEADER.pack(_MAGIC, len(data), digest), data))  # one copy of the block, not two


def unframe(value: bytes) -> memoryview | None:
    """The range inside a stored value if it checks out, else None; a view, so the block is not copied."""
    if len(value) < _HEADER.size:
        return None
    magic, length, digest = _HEADER.unpack_from(value)
    data = memoryview(value)[_HEADER.size :]
    if magic != _MAGIC or length != len(data):
        return None
    if hashlib.blake2b(data, digest_size=_DIGEST).digest() != digest:
        return None
    return data


class SharedBlockSource:
    """Given the reader's ``block_size``, Redis holds whole blocks keyed by index, and any read inside a
    shared block is served from it. A smaller read (a piece, after a seek or at the start of a file) whose
    block nobody shared yet is shared under its own range, so a peer reading the same way finds it; a block
    the reader completed from its pieces is shared whole (``share_block``). Without ``block_size``, ranges
    are shared as asked."""

    def __init__(self, inner: RangeSource, link: RedisLink, prefix: str, block_size: int | None = None) -> None:
        self._inner = inner
        self._true_size: Callable[[str], int | None] = getattr(inner, "true_size", lambda _file_id: None)
        self._block_size = block_size
        self._link = link
        self._prefix = prefix
        self._lock = threading.Lock()
        self._pending = 0
        self._pool = thread_pool(2, "mmfs-fleet-fill")
        self.counts = {"hits": 0, "misses": 0, "waits": 0, "filled": 0, "bad": 0, "dropped": 0}

    def _key(self, file_id: str, start: int, end: int) -> str:
        if self._block_size is not None:
            return f"{self._prefix}blk:{file_id}:{self._block_size}:{start // self._block_size}"
        return f"{self._prefix}blk:{file_id}:{start}-{end}"

    def _whole(self, file_id: str, start: int, end: int) -> tuple[int, bool]:
        """Where the block holding ``start`` begins, and whether ``[start, end)`` is that whole block."""
        if self._block_size is None:
            return start, True
        first = start - start % self._block_size
        if start != first:
            return first, False
        true_size = self._true_size(file_id)
        return first, end - start == self._block_size or (true_size is not None and end == true_size)

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def fetch(self, file_id: str, start: int, end: int) -> bytes | bytearray | memoryview:
        key = self._key(file_id, start, end)
        first, whole = self._whole(file_id, start, end)
        indexed = self._block_size is not None
        data = self._checked(key, self._link.run("block get", lambda r: r.get(key), None), end - first, indexed)
        if data is not None:
            return data[start - first : end - first]
        if whole:
            return self._leased(key, file_id, start, end, indexed)
        data = self._leased(f"{self._prefix}pc:{file_id}:{start}-{end}", file_id, start, end, False)
        if self._whole(file_id, start, end)[1]:  # the download has told the file's size: the last block, whole
            self._fill(key, data, None)
        return data

    def share_block(self, file_id: str, start: int, data: bytes | bytearray) -> None:
        """A whole block the reader put together itself (pieces it had, then the rest): share it."""
        if self._block_size is not None:
            self._fill(self._key(file_id, start, start + len(data)), data, None)

    def _leased(self, key: str, file_id: str, start: int, end: int, indexed: bool) -> bytes | bytearray | memoryview:
        """``[start, end)`` under ``key``: one mount of the fleet downloads it (a lease), the others wait for
        it in Redis (bounded), then it is shared."""
        lease = f"{key}:lease"
        took = self._link.run("block lease", lambda r: r.set(lease, b"1", nx=True, px=_LEASE_MS), None)
        if not took and self._link.joined:
            data = self._wait_for_peer(key, lease, end - start, indexed)
            if data is not None:
                return data[: end - start]
        self._count("misses")
        data = self._inner.fetch(file_id, start, end)
        self._fill(key, data, lease if took else None)
        return data

    def _checked(self, key: str, raw: bytes | None, length: int, at_least: bool) -> memoryview | None:
        """The shared value, checked, when it holds the bytes asked for: exactly ``length`` for a range, at
        least ``length`` for a block by index (it holds every piece inside it)."""
        if raw is None:
            return None
        data = unframe(raw)
        if data is not None and (len(data) >= length if at_least else len(data) == length):
            self._count("hits")
            return data
        self._count("bad")
        log.warning("shared block %s failed its check: downloading it", key)
        return None

    def _wait_for_peer(self, key: str, lease: str, length: int, at_least: bool) -> memoryview | None:
        """Another mount is downloading this block: wait (bounded) for it to land in Redis."""
        self._count("waits")

        def look(r):
            pipe = r.pipeline(transaction=False)
            pipe.get(key)
            pipe.exists(lease)
            return pipe.execute()

        deadline = time.monotonic() + _WAIT_SECONDS
        while time.monotonic() < deadline and self._link.joined:
            time.sleep(_POLL_SECONDS)
            raw, leased = self._link.run("block wait", look, (None, 0))
            data = self._checked(key, raw, length, at_least)
            if data is not None or not leased:
                return data
        return None

    def _fill(self, key: str, data: bytes | bytearray, lease: str | None) -> None:
        with self._lock:
            if self._pending >= _MAX_PENDING or not self._link.joined:
                self.counts["dropped"] += 1
                drop = True
            else:
                self._pending += 1
                drop = False
        if drop:
            if lease is not None:  # let a waiting peer download it now rather than wait out the lease
                self._link.run("block lease", lambda r: r.delete(lease), 0)
            return
        value = frame(data)  # a copy: the reader owns ``data`` from here on
        try:
            self._pool.submit(self._store, key, value, lease)
        except RuntimeError:  # closing
            with self._lock:
                self._pending -= 1

    def _store(self, key: str, value: bytes, lease: str | None) -> None:
        def store(r):
            pipe = r.pipeline(transaction=False)
            pipe.set(key, value)
            if lease is not None:
                pipe.delete(lease)
            return pipe.execute()

        try:
            if self._link.run("block set", store, None):
                self._link.note_room()
                self._count("filled")
        finally:
            with self._lock:
                self._pending -= 1

    def __getattr__(self, name: str) -> Any:
        # url(), size(), forget() and anything else the filesystem asks of its source: the inner one's.
        return getattr(self._inner, name)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
