"""Byte ranges of remote files, served from blocks: memory, then disk, then one download per block.

``BlockReader.read`` splits a read into the fixed-size blocks it covers and finds each one in a small
in-memory LRU (the kernel reads 128 KiB at a time, so a 4 MiB block is asked for 32 times in a row), then
in the ``BlockStore``, and only then downloads it. A read given a ``fetch`` smaller than a block (a reader
that has just seeked) downloads only that much around what it reads, kept in a ``PieceCache``, unless the
whole block is already at hand. Readers wanting the same block (or piece) wait on one download (single
flight). Every download holds a slot of one in-flight budget of ``prefetch_memory`` bytes: readers wait for
a slot, prefetches (on a bounded pool) that find none are dropped, never queued, so neither a slow network
nor many readers can grow memory. Downloaded blocks go to the store behind the reader (``WriteBehind``);
``locate`` answers a read of a block that is only on disk with its file (``BlockFiles``), for libfuse to
read by fd.

Concurrency: ``_lock`` guards ``_inflight``, ``_piece_inflight`` and ``_lru`` (and is taken around a piece
look-up, so a piece cannot land between a reader's look-up and its joining the download). Downloads and
store I/O run outside it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from mmfs.blocks.arithmetic import block_bounds, block_count, blocks_for_range, clamp_read
from mmfs.blocks.blockfiles import BlockFiles, FileSpan
from mmfs.blocks.memory import return_big_buffers_to_the_system
from mmfs.blocks.pieces import PieceCache
from mmfs.blocks.store import BlockStore, DiskBlockStore, block_key
from mmfs.blocks.writeback import WriteBehind

__all__ = ["BlockReader", "RangeSource"]

# A block's bytes: a view into what the store or the network produced, sliced without copying.
Block = bytes | bytearray | memoryview

log = logging.getLogger("mmfs.blocks")

# Sub-block fetches start on this boundary: page-aligned, like the reads the kernel sends.
_PIECE_ALIGN = 4096


class RangeSource(Protocol):
    def fetch(self, file_id: str, start: int, end: int) -> bytes | bytearray: ...


class BlockReader:
    def __init__(
        self,
        store: BlockStore,
        source: RangeSource,
        *,
        block_size: int,
        memory_blocks: int = 8,
        prefetch_workers: int = 8,
        prefetch_memory: int = 64 << 20,
    ) -> None:
        return_big_buffers_to_the_system()
        self.block_size = block_size
        self._store = store
        self._source = source
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[Block]] = {}
        self._lru: OrderedDict[str, Block] = OrderedDict()
        self._lru_capacity = max(1, memory_blocks)
        self._pool = ThreadPoolExecutor(max_workers=max(1, prefetch_workers), thread_name_prefix="mmfs-prefetch")
        # The global in-flight budget: every block download, a reader's or a prefetch's, holds a slot while
        # its buffer fills. Readers wait for one; prefetches that find none are dropped.
        self._slots = threading.BoundedSemaphore(max(1, prefetch_memory // block_size))
        self._pieces = PieceCache()
        self._piece_inflight: dict[tuple[str, int, int], Future[Block]] = {}
        # Stored blocks as open files, for reads answered by fd (only a disk store has files).
        self._files = BlockFiles(store) if isinstance(store, DiskBlockStore) else None
        self._writes = WriteBehind(store, stored=self._files.trust if self._files is not None else lambda key: None)

    # -- the read path -------------------------------------------------------------------------------

    def read(self, file_id: str, file_size: int, offset: int, size: int, fetch: int | None = None) -> bytes:
        """Bytes ``[offset, offset + size)`` of the file (fewer at EOF). ``fetch``: how much a cache miss
        should download; less than a block fetches a piece around the read instead of its block."""
        start, end = clamp_read(offset, size, file_size)
        pieces = []
        for index in blocks_for_range(start, end, self.block_size):
            block_start, block_end = block_bounds(index, self.block_size, file_size)
            lo, hi = max(start, block_start), min(end, block_end)
            if fetch is not None and fetch < self.block_size:
                pieces.append(self._part(file_id, file_size, index, lo, hi, fetch))
            else:
                pieces.append(memoryview(self._block(file_id, file_size, index))[lo - block_start : hi - block_start])
        # One copy into the bytes FUSE hands back: never the whole block.
        return pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces)

    def locate(self, file_id: str, file_size: int, offset: int, size: int) -> FileSpan | None:
        """The read as a span of a stored block's file, for a read inside one block that is on disk and
        not in memory (memory is quicker, and a block on its way to disk has no file yet); else None, and
        ``read`` it is."""
        if self._files is None:
            return None
        start, end = clamp_read(offset, size, file_size)
        index = start // self.block_size
        if start >= end or (end - 1) // self.block_size != index:
            return None
        key = block_key(file_id, self.block_size, index)
        with self._lock:
            if key in self._lru or key in self._inflight:
                return None
        if self._writes.holds(key):
            return None
        block_start = index * self.block_size
        return self._files.span(key, start - block_start, end - block_start)

    def _part(self, file_id: str, file_size: int, index: int, lo: int, hi: int, fetch: int) -> memoryview:
        """Bytes ``[lo, hi)`` of block ``index``: from the whole block when it is in memory, on its way or
        on disk, else from a piece of ``fetch`` bytes (at least) downloaded from ``lo`` on."""
        key = block_key(file_id, self.block_size, index)
        block_start, block_end = block_bounds(index, self.block_size, file_size)
        with self._lock:
            whole = self._lru.get(key)
            pending = key in self._inflight
        if whole is None and (pending or self._stored(key)):
            whole = self._block(file_id, file_size, index)
        if whole is not None:
            return memoryview(whole)[lo - block_start : hi - block_start]
        first = lo - lo % _PIECE_ALIGN
        return self._piece(file_id, lo, hi, first, min(max(hi, first + fetch), block_end))

    def _piece(self, file_id: str, lo: int, hi: int, first: int, last: int) -> memoryview:
        """Bytes ``[lo, hi)`` from a cached piece, from one on its way (readers of the same place wait
        for one download), or from a new piece ``[first, last)``."""
        with self._lock:
            cached = self._pieces.get(file_id, lo, hi)
            if cached is not None:
                return cached
            waiting = next(((a, f) for (fid, a, b), f in self._piece_inflight.items()
                            if fid == file_id and a <= lo and hi <= b), None)
            if waiting is None:
                mine: Future[Block] = Future()
                self._piece_inflight[(file_id, first, last)] = mine
        if waiting is not None:
            start, future = waiting
            return memoryview(future.result())[lo - start : hi - start]
        try:
            data = self._source.fetch(file_id, first, last)
            self._pieces.put(file_id, first, data)
            mine.set_result(data)
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._piece_inflight.pop((file_id, first, last), None)
        return memoryview(data)[lo - first : hi - first]

    def _remember_locked(self, key: str, data: Block) -> None:
        self._lru[key] = data
        self._lru.move_to_end(key)
        while len(self._lru) > self._lru_capacity:
            self._lru.popitem(last=False)

    def _block(self, file_id: str, file_size: int, index: int) -> Block:
        key = block_key(file_id, self.block_size, index)
        with self._lock:
            data = self._lru.get(key)
            if data is not None:
                self._lru.move_to_end(key)
                return data
            future = self._inflight.get(key)
        if future is not None:
            return future.result()
        return self._fill(file_id, file_size, index, key)

    def _fill(self, file_id: str, file_size: int, index: int, key: str, slot_held: bool = False) -> Block:
        """Load a block from disk, else download it: once, however many readers ask at the same time.
        ``slot_held``: the caller already holds a slot of the in-flight budget for it."""
        with self._lock:
            future = self._inflight.get(key)
            owner = future is None
            if owner:
                cached = self._lru.get(key)  # finished between our look-up and now
                if cached is not None:
                    return cached
                future = Future()
                self._inflight[key] = future
        assert future is not None
        if not owner:
            return future.result()
        try:
            data = self._writes.get(key)
            if data is None:
                data = self._store.get(key)
            downloaded = data is None
            if downloaded:
                start, end = block_bounds(index, self.block_size, file_size)
                if slot_held:
                    data = self._source.fetch(file_id, start, end)
                else:
                    with self._slots:
                        data = self._source.fetch(file_id, start, end)
        except BaseException as exc:
            future.set_exception(exc)
            with self._lock:
                self._inflight.pop(key, None)
            raise
        assert data is not None
        with self._lock:
            self._remember_locked(key, data)
            self._inflight.pop(key, None)
        future.set_result(data)  # waiters go on now; storing the block is not their business
        if downloaded:
            self._writes.put(key, data, file_id)
        return data

    def _stored(self, key: str) -> bool:
        """On disk, or on its way there."""
        return self._writes.holds(key) or self._store.contains(key)

    # -- prefetch ------------------------------------------------------------------------------------

    def prefetch(self, file_id: str, file_size: int, indices: Iterable[int]) -> None:
        """Start downloading these blocks in the background, as far as the memory budget allows. Blocks
        already on disk are left there: the reader loads them when it gets there (``preload``), and
        loading them now would only push blocks out of the memory cache before they are read."""
        self._schedule(file_id, file_size, indices, stored=False)

    def preload(self, file_id: str, file_size: int, indices: Iterable[int]) -> None:
        """Ready stored blocks ahead of a streaming reader, so that checking each one overlaps with
        serving the block before it: a disk store's block files are opened and checked (``locate`` then
        answers by fd), any other store's blocks are loaded into memory. Blocks not on disk are left to
        ``prefetch``, which decides whether the network should fetch them."""
        self._schedule(file_id, file_size, indices, stored=True)

    def _schedule(self, file_id: str, file_size: int, indices: Iterable[int], *, stored: bool) -> None:
        """Fill, on the pool, those of ``indices`` that are not in memory or in flight and whose being on
        disk matches ``stored``; stop when the budget is spent (the reader asks again as it advances)."""
        for index in indices:
            key = block_key(file_id, self.block_size, index)
            with self._lock:
                if key in self._lru or key in self._inflight:
                    continue
            if self._stored(key) != stored:
                continue
            if not self._slots.acquire(blocking=False):
                return
            try:
                self._pool.submit(self._prefetch_one, file_id, file_size, index, key, stored)
            except RuntimeError:  # the pool is shut down: the mount is going away
                self._slots.release()
                return

    def _prefetch_one(self, file_id: str, file_size: int, index: int, key: str, stored: bool) -> None:
        try:
            with self._lock:
                busy = key in self._inflight or key in self._lru
            if busy:
                pass
            elif stored and self._files is not None:
                self._files.open(key)  # checked ahead of the reader, read by fd: no copy into memory
            else:
                self._fill(file_id, file_size, index, key, slot_held=True)
        except Exception as exc:  # the foreground read will try again and report it
            log.debug("prefetch of %s failed: %s", key, exc)
        finally:
            self._slots.release()

    # -- writes and deletes --------------------------------------------------------------------------

    def seed(self, file_id: str, file_size: int, read_at: Callable[[int, int], bytes],
             done: Callable[[], None] = lambda: None) -> None:
        """Store a file whose bytes we already have (just uploaded) as blocks, in the background: no
        download of our own upload. Readers that arrive first wait for the block instead of fetching it.
        ``read_at(start, end)`` gives the bytes; ``done`` is called when every block is stored."""
        futures: list[tuple[int, str, Future[Block]]] = []
        with self._lock:
            for index in range(block_count(file_size, self.block_size)):
                key = block_key(file_id, self.block_size, index)
                if key not in self._inflight:
                    future: Future[Block] = Future()
                    self._inflight[key] = future
                    futures.append((index, key, future))

        def store_all() -> None:
            try:
                for index, key, future in futures:
                    try:
                        start, end = block_bounds(index, self.block_size, file_size)
                        data = read_at(start, end)
                        if len(data) != end - start:
                            raise OSError(f"spool of {file_id} ended early")
                        self._store.put(key, data, file_id)
                        future.set_result(data)
                    except BaseException as exc:
                        future.set_exception(exc)  # the reader downloads it instead, next time it asks
                    finally:
                        with self._lock:
                            self._inflight.pop(key, None)
            finally:
                done()

        try:
            self._pool.submit(store_all)
        except RuntimeError:  # shutting down: nobody is left to read it
            with self._lock:
                for _, key, _ in futures:
                    self._inflight.pop(key, None)
            done()

    def evict(self, file_id: str) -> None:
        prefix = f"{file_id}/"
        with self._lock:
            for key in [k for k in self._lru if k.startswith(prefix)]:
                del self._lru[key]
        self._pieces.evict(file_id)
        self._writes.drop_file(file_id)
        if self._files is not None:
            self._files.forget(prefix)
        self._store.evict_file(file_id)

    def flush(self) -> None:
        """Wait until every downloaded block is on disk."""
        self._writes.flush()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._writes.close()
        if self._files is not None:
            self._files.close()
        self._store.close()
