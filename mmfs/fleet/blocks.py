"""A shared block tier between a mount's disk cache and the platform: a ``RangeSource`` that asks Redis first.

``SharedBlockSource`` wraps the source that downloads (``RemoteSource``): a range is looked up in Redis, and
only on a miss downloaded, by one mount (the others wait for it under a lease). The downloaded bytes are
then added to Redis in the background, so the next mount that needs them reads them from Redis instead of
the CDN. A file's bytes never change under its id, so a stored range is right forever; Redis's own
``maxmemory`` policy (``allkeys-lru``) decides what stays.

Two shapes are shared, so that mounts meet whatever ranges they ask for:
- whole blocks, keyed by index (``blk:{<file_id>:<block size>:<index>}``): any read inside one is served
  from it;
- *units*, the fixed 256 KiB slices of a block (``…:u<n>``): a read smaller than a block (the first reads
  of a file, a read after a seek, any read of a small file) fetches the units covering it, so two mounts
  asking different ranges of one block still share the same keys. A file smaller than a unit is one unit;
  a block whose units are all in Redis is put together from them (and then shared whole).
The braces are a hash tag: a block, its units and its leases live in one slot of a Redis Cluster, so one
``MGET`` reads a block's units; different blocks spread over every slot.

The true size of a file listed with ``bytes: 0`` (a generated video) costs a probe; it is shared too
(hash ``sizes``), so the fleet probes each such file once.

Every value is sealed (``mmfs.fleet.seal``) under its own key with a key derived from the account's API
key: a value cut short, corrupted, written by something that does not hold the API key, or moved from
another key does not open, and is counted ``bad`` and downloaded again. Nothing from Redis reaches the
reader (and so the disk cache) without opening. Redis trouble of any kind means "a miss".

Concurrency: fills run on a small pool; ``_lock`` guards the pending count, counters and the small memory of
recent units.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mmfs.api import deadline as api_deadline
from mmfs.blocks.ports import PlatformSource
from mmfs.blocks.source import copy_fetched
from mmfs.fleet.link import RedisLink
from mmfs.fleet.seal import Seal
from mmfs.threads import thread_pool

__all__ = ["UNIT", "SharedBlockSource"]

log = logging.getLogger("mmfs.fleet")

# The slice of a block shared for reads smaller than a block: a small file is one; a read after a seek
# downloads at most two more than it asked for.
UNIT = 256 << 10
# A mount downloading any part of a block holds the block's lease this long at most; peers wanting part of
# the same block meanwhile wait for it in Redis (up to _WAIT_SECONDS) instead of downloading it too: mounts
# started together on the same files then fetch each byte from the CDN once between them.
_LEASE_MS = 10_000
_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.02
# Fills waiting to be written: beyond this a filled block is simply not shared (memory stays bounded at
# this many blocks, 32 MiB with 4 MiB blocks, however slow Redis is).
_MAX_PENDING = 8
# Units this mount fetched or read lately, kept in memory: the reader asks for a small file's bytes in
# several reads, which would otherwise each go to Redis (or race the fill of the unit they need).
_RECENT_BYTES = 8 << 20

Data = bytes | bytearray | memoryview


def _wait_limit() -> float:
    """How long to wait for a peer: _WAIT_SECONDS, but at most half of what the read has left, so that a
    peer that never delivers leaves time to download it here."""
    left = api_deadline.remaining()
    return _WAIT_SECONDS if left is None else max(0.0, min(_WAIT_SECONDS, left / 2))


class SharedBlockSource:
    def __init__(self, inner: PlatformSource, link: RedisLink, prefix: str, seal: Seal,
                 block_size: int = 4 << 20) -> None:
        self._inner = inner
        # The rest of the source port is the inner source's, bound once so those calls go straight to it. A
        # whole-body stream (a host that ignores Range) is not shared: it comes from the platform.
        self.stream = inner.stream
        self.true_size = inner.true_size
        self.ignores_range = inner.ignores_range
        self.range_known = inner.range_known
        self.forget = inner.forget
        self._block_size = block_size
        self._unit = UNIT if block_size % UNIT == 0 else block_size
        self._link = link
        self._prefix = prefix
        self._seal = seal
        self._sizes_key = f"{prefix}sizes"
        self._sizes: dict[str, int] = {}
        # Set once the filesystem exists: its size of a file when that costs no request (``Sizes.known_by_id``).
        self.known_size: Callable[[str], int | None] = lambda _file_id: None
        self._lock = threading.Lock()
        self._pending = 0
        self._recent: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._recent_bytes = 0
        self._warned: set[str] = set()
        self._pool = thread_pool(2, "mmfs-fleet-fill")
        self.counts = {"hits": 0, "misses": 0, "waits": 0, "filled": 0, "bad": 0, "dropped": 0,
                       "unit_hits": 0, "sizes_shared": 0}

    # -- keys and sizes -----------------------------------------------------------------------------------

    def _block_key(self, file_id: str, index: int) -> str:
        return f"{self._prefix}blk:{{{file_id}:{self._block_size}:{index}}}"

    def _size(self, file_id: str) -> int | None:
        size = self.known_size(file_id)
        if size is None:
            with self._lock:
                size = self._sizes.get(file_id)
        return size

    def size(self, file_id: str) -> int:
        """The true size of a file listed without one: shared, so the fleet probes each file once."""
        name = f"{self._sizes_key}\0{file_id}"
        data = self._seal.open(name, self._link.run("size get", lambda r: r.hget(self._sizes_key, file_id), None))
        if data is not None and bytes(data).isdigit():
            self._count("sizes_shared")
            size = int(bytes(data))
        else:
            size = self._inner.size(file_id)
            value = self._seal.seal(name, str(size).encode())
            self._link.run("size set", lambda r: r.hset(self._sizes_key, file_id, value), None)
        with self._lock:
            self._sizes[file_id] = size
        return size

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    # -- reads --------------------------------------------------------------------------------------------

    def fetch(self, file_id: str, start: int, end: int) -> Data:
        index = start // self._block_size
        first = index * self._block_size
        size = self._size(file_id)
        # Where this block ends, as far as anyone can tell; never short of what is asked.
        last = max(end, first + self._block_size if size is None else min(first + self._block_size, size))
        if size is None:
            last = end  # units past an unknown end could ask beyond the file
        key = self._block_key(file_id, index)
        units = self._units(first, last, start, end)
        data, got = self._look(key, first, last, units, start, end)
        if data is not None:
            return data
        # One lease per block, whatever part of it is downloaded: a mount fetching a piece and another
        # fetching the whole block (or other pieces) of it never download the same bytes at once.
        lease = f"{key}:lease"
        took = self._link.run("block lease", lambda r: r.set(lease, b"1", nx=True, px=_LEASE_MS), None)
        if not took and self._link.joined:
            self._count("waits")
            deadline = time.monotonic() + _wait_limit()
            missing = [self._unit_key(key, first, u) for u, g in zip(units, got, strict=True) if g is None]
            while time.monotonic() < deadline and self._link.joined:
                time.sleep(_POLL_SECONDS)
                # A cheap look (no bytes) until there is something to read: the block, or the units missing.
                block, units_in, leased = self._link.run("block wait", lambda r: self._ready(r, key, missing, lease),
                                                         (0, 0, 1))
                if block or units_in == len(missing) or not leased:
                    data, got = self._look(key, first, last, units, start, end)
                    if data is not None:
                        return data
                if not leased:
                    # Released without what this read needs: this mount fetches it (under the lease).
                    took = self._link.run("block lease", lambda r: r.set(lease, b"1", nx=True, px=_LEASE_MS),
                                          None)
                    break
        self._count("misses")
        try:
            if start == first and end == last and all(g is None for g in got):
                data = self._inner.fetch(file_id, start, end)  # a whole block, none of it shared: as one
                fills: list[tuple[str, Data]] = [(key, data)]
            else:
                data, fills = self._fetch_units(file_id, key, first, last, units, got, start, end)
        except BaseException:
            if took:  # let a waiting peer try now rather than wait out the lease
                self._link.run("block lease", lambda r: r.delete(lease), 0)
            raise
        self._fill(fills, lease if took else None)
        return data

    @staticmethod
    def _ready(r: Any, key: str, missing: list[str], lease: str) -> list[int]:
        pipe = r.pipeline(transaction=False)
        pipe.exists(key)
        pipe.exists(*missing) if missing else pipe.exists(key)
        pipe.exists(lease)
        block, units_in, leased = pipe.execute()
        return [block, units_in if missing else 0, leased]

    def fetch_into(self, file_id: str, start: int, into: bytearray | memoryview) -> None:
        # A shared block comes whole from Redis or from the one download its lease holder made: a copy.
        copy_fetched(self.fetch, file_id, start, into)

    def share_block(self, file_id: str, start: int, data: bytes | bytearray) -> None:
        """A whole block the reader put together itself (pieces it had, then the rest): share it."""
        self._fill([(self._block_key(file_id, start // self._block_size), data)], None)

    def _look(self, key: str, first: int, last: int, units: list[tuple[int, int]], start: int,
              end: int) -> tuple[Data | None, list[Data | None]]:
        """``[start, end)`` from Redis (the whole block, else the units covering it), or None and the units
        found so far."""
        data = self._checked(key, self._link.run("block get", lambda r: r.get(key), None), end - first)
        if data is not None:
            self._count("hits")
            return data[start - first : end - first], []
        got = self._shared_units(key, units)
        if all(g is not None for g in got):
            self._count("unit_hits")
            return self._assemble(key, first, last, units, got, start, end), got  # type: ignore[arg-type]
        return None, got

    def _units(self, first: int, last: int, start: int, end: int) -> list[tuple[int, int]]:
        """The units (absolute ``[a, b)``) of the block at ``first`` that cover ``[start, end)``."""
        u = self._unit
        return [(first + k * u, min(first + (k + 1) * u, last))
                for k in range((start - first) // u, (end - 1 - first) // u + 1)]

    def _unit_key(self, key: str, first: int, unit: tuple[int, int]) -> str:
        return f"{key}:u{(unit[0] - first) // self._unit}"

    def _shared_units(self, key: str, units: list[tuple[int, int]]) -> list[Data | None]:
        first = units[0][0] - units[0][0] % self._block_size
        names = [self._unit_key(key, first, u) for u in units]
        got: list[Data | None] = []
        with self._lock:
            for name in names:
                got.append(self._recent.get(name))
                if name in self._recent:
                    self._recent.move_to_end(name)
        ask = [n for n, g in zip(names, got, strict=True) if g is None]
        if ask:
            values = self._link.run("unit get", lambda r: r.mget(ask), None) or [None] * len(ask)
            answers = dict(zip(ask, values, strict=True))
            for i, name in enumerate(names):
                if got[i] is None:
                    got[i] = self._checked(name, answers.get(name), units[i][1] - units[i][0])
                    if got[i] is not None:  # the next small read of this unit need not ask Redis again
                        self._keep(name, bytes(got[i]))  # type: ignore[arg-type]
        return got

    def _assemble(self, key: str, first: int, last: int, units: list[tuple[int, int]], got: list[Data],
                  start: int, end: int) -> Data:
        span = bytearray().join(memoryview(g)[: b - a] for g, (a, b) in zip(got, units, strict=True))
        if units[0][0] == first and units[-1][1] == last and last - first > self._unit:
            self._fill([(key, span)], None)  # every unit of the block: share it whole as well
        return memoryview(span)[start - units[0][0] : end - units[0][0]]

    def _fetch_units(self, file_id: str, key: str, first: int, last: int, units: list[tuple[int, int]],
                     got: list[Data | None], start: int, end: int) -> tuple[Data, list[tuple[str, Data]]]:
        """The units covering a read smaller than a block: those missing downloaded as one range, each then
        shared on its own."""
        missing = [i for i, g in enumerate(got) if g is None]
        lo, hi = missing[0], missing[-1]
        a, b = units[lo][0], units[hi][1]
        data = self._inner.fetch(file_id, a, b)
        fills: list[tuple[str, Data]] = []
        for i in range(lo, hi + 1):
            ua, ub = units[i]
            piece = bytes(memoryview(data)[ua - a : ub - a])
            got[i] = piece
            name = self._unit_key(key, first, units[i])
            self._keep(name, piece)
            fills.append((name, piece))
        return self._assemble(key, first, last, units, got, start, end), fills  # type: ignore[arg-type]

    def _keep(self, name: str, piece: bytes) -> None:
        with self._lock:
            if name not in self._recent:
                self._recent_bytes += len(piece)
            self._recent[name] = piece
            while self._recent_bytes > _RECENT_BYTES:
                _, dropped = self._recent.popitem(last=False)
                self._recent_bytes -= len(dropped)

    def _checked(self, key: str, raw: object, length: int) -> memoryview | None:
        """The shared value, opened, when it holds at least ``length`` bytes (a file's bytes never change,
        so a longer value of the same key is as right)."""
        if raw is None:
            return None
        data = self._seal.open(key, raw)
        if data is not None and len(data) >= length:
            return data
        if data is None:
            self._count("bad")
            with self._lock:  # said once per key: whoever fills Redis with junk must not fill the log too
                first = len(self._warned) < 1000 and key not in self._warned
                if first:
                    self._warned.add(key)
            (log.warning if first else log.debug)("shared value %s does not carry this account's seal: "
                                                  "ignoring it", key)
        return None

    # -- fills --------------------------------------------------------------------------------------------

    def _fill(self, items: list[tuple[str, Data]], lease: str | None) -> None:
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
        values = [(key, self._seal.seal(key, data)) for key, data in items]  # a copy: the reader owns data
        try:
            self._pool.submit(self._store, values, lease)
        except RuntimeError:  # closing
            with self._lock:
                self._pending -= 1

    def _store(self, values: list[tuple[str, bytes]], lease: str | None) -> None:
        def store(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for key, value in values:
                pipe.set(key, value)
            if lease is not None:
                pipe.delete(lease)
            return pipe.execute()

        try:
            if self._link.run("block set", store, None):
                self._link.note_room()
                self._count("filled", len(values))
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
