"""Byte ranges of remote files, served from blocks: memory, then disk, then one download per block.

``BlockReader.read`` splits a read into the fixed-size blocks it covers and finds each one in a small
in-memory LRU (the kernel reads 128 KiB at a time, so a 4 MiB block is asked for 32 times in a row), then
in the ``BlockStore``, and only then downloads it. A read given a ``fetch`` smaller than a block (a reader
that has just seeked) downloads only that much around what it reads, kept in a ``PieceCache``, unless the
whole block is already at hand. Readers wanting the same block (or piece) wait on one download (single
flight). Every download holds a slot of one in-flight budget of ``prefetch_memory`` bytes: readers wait for
a slot, prefetches (on a bounded pool) that find none are dropped, never queued, so neither a slow network
nor many readers can grow memory. Downloaded blocks go to the store behind the reader (``WriteBehind``);
``locate`` answers a read whose blocks are on disk with a span of a file, for libfuse to read by fd: any
such range of a sparse store (``SparseStore.span``, one file per remote file), or a read inside one block
that is only on disk for a store of one file per block (``BlockFiles``).

A read ends by ``deadline`` seconds after it began, whatever it waits on: its own download, another
reader's, or a whole-body stream (``mmfs.api.deadline``); then it fails with EIO.

A download host that ignores Range answers every block with the whole file. Once the source has seen that,
a file is read as **one** whole-body stream that cuts the body into blocks as it passes: each block is stored,
and handed to the readers waiting for it, so what a reader asked for is served as the stream reaches it and
nothing is fetched again per block.

Sizes: a download states the file's true size. When it differs from the size the caller was told (a wrong
listing), a smaller true size is believed at once (the read ends at the true end: the kernel takes a short
read as the end of file), and a larger one fails the read with EIO rather than let the caller stop early
with a short copy; the next open sees the true size (``mmfs.tree.sizes``). No block cut to a wrong size is stored.

Concurrency: ``_lock`` guards ``_inflight``, ``_piece_inflight``, ``_lru``, ``_streams`` and ``_failed`` (and
is taken around a piece look-up, so a piece cannot land between a reader's look-up and its joining the
download). Downloads and store I/O run outside it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Literal, overload

from mmfs.api import deadline
from mmfs.blocks.arithmetic import block_bounds, block_count, blocks_for_range, clamp_read
from mmfs.blocks.blockfiles import BlockFiles, FileSpan
from mmfs.blocks.memory import BlockBuffers, return_big_buffers_to_the_system
from mmfs.blocks.pieces import PieceCache
from mmfs.blocks.ports import BlockStore, RangeSource
from mmfs.blocks.store import block_key
from mmfs.blocks.streams import StreamControl, StreamGate
from mmfs.blocks.writeback import WriteBehind
from mmfs.errors import MmfsError, ProtocolError
from mmfs.threads import start_thread, thread_pool

__all__ = ["BlockReader", "SizeChangedError", "waited_for_network"]

# A block's bytes: a view into what the store or the network produced, sliced without copying.
Block = bytes | bytearray | memoryview

log = logging.getLogger("mmfs.blocks")


class _Waits(threading.local):
    waited = False


_waits = _Waits()


def waited_for_network() -> bool:
    """Whether this thread waited for a download since it last asked (and forget it): how ``mmfs status``
    tells a read served from memory, pieces or disk from one that needed the network. One thread-local
    flag, no lock."""
    waited, _waits.waited = _waits.waited, False
    return waited

# After a read of a file fails on the network having waited most of its deadline, the next read of it through
# the same open file within this long fails at once (once); a new open tries afresh. The kernel answers one
# failed read(2) by asking again for the same page at once (readahead, then a plain read): without this the
# caller would wait for two deadlines.
FAILURE_MEMORY = 1.0

# Background block downloads at once before the rate says whether more help (see ``mmfs.blocks.streams``).
START_STREAMS = 8

# Blocks the write-behind may hold at once: its queue and its writers' (see ``WriteBehind``).
WRITE_BEHIND_HELD = 6

# Sub-block fetches start on this boundary: page-aligned, like the reads the kernel sends.
_PIECE_ALIGN = 4096


class SizeChangedError(MmfsError):
    """The file's true size is not the one the caller was told, and answering would mislead the kernel:
    larger (it would stop early: a silent short copy), or smaller and the read starts past the true end."""


class _Resized(Exception):
    """A block was cut for a size the download contradicts: read again with the true size."""


@dataclass
class _Stream:
    """A whole-body download of one file, passing its blocks in order."""

    pos: int = 0  # bytes passed so far (always a block boundary)
    adopted: set[str] = field(default_factory=set)  # keys of in-flight blocks the stream will resolve


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
        deadline: float | None = None,
    ) -> None:
        return_big_buffers_to_the_system()
        self.block_size = block_size
        self._store = store
        self._source = source
        self._deadline = deadline
        # Until a file's host has answered one Range request, reads of it go one at a time (see _read).
        self._probe = threading.Lock()
        self._range_seen: set[str] = set()  # files whose host has answered a Range request: no need to ask again
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[Block]] = {}
        self._streams: dict[str, _Stream] = {}
        self._failed: dict[tuple[str, object], tuple[float, MmfsError]] = {}  # (file_id, caller) -> (until, error)
        self._lru: OrderedDict[str, Block] = OrderedDict()
        self._lru_capacity = max(1, memory_blocks)
        self._pool = thread_pool(max(1, prefetch_workers), "mmfs-prefetch")
        # The global in-flight budget: every block download, a reader's or a prefetch's, holds a slot while
        # its buffer fills. Readers wait for one; prefetches that find none are dropped.
        self._slots = threading.BoundedSemaphore(max(1, prefetch_memory // block_size))
        self._pieces = PieceCache()
        self._piece_inflight: dict[tuple[str, int, int], Future[Block]] = {}
        # Reads answered by fd: a sparse store answers any present range itself (``span``); a store of one
        # file per block (``keeps_files``) has its files opened and checked here.
        self._files = BlockFiles(store) if store.keeps_files() else None
        self._writes = WriteBehind(store)
        # Downloads land in buffers used again (no fresh memory per block): as many as can be held at once,
        # in flight, in memory, queued for the disk or being written.
        self._buffers = BlockBuffers(block_size, limit=max(1, prefetch_memory // block_size) + self._lru_capacity
                                     + WRITE_BEHIND_HELD)
        # Background downloads at once: from START_STREAMS up to ``prefetch_workers``, while more are faster.
        workers = max(1, prefetch_workers)
        self._gate = StreamGate(StreamControl(workers, start=min(START_STREAMS, workers)))

    # -- the read path -------------------------------------------------------------------------------

    @overload
    def read(self, file_id: str, file_size: int, offset: int, size: int, fetch: int | None = None,
             caller: object = None, *, as_file: Literal[False] = False) -> bytes: ...

    @overload
    def read(self, file_id: str, file_size: int, offset: int, size: int, fetch: int | None = None,
             caller: object = None, *, as_file: bool) -> bytes | FileSpan: ...

    def read(self, file_id: str, file_size: int, offset: int, size: int, fetch: int | None = None,
             caller: object = None, *, as_file: bool = False) -> bytes | FileSpan:
        """Bytes at ``offset`` of a file the caller believes is ``file_size`` long (see the module
        docstring for what happens when the download disagrees). ``fetch``: how much a cache miss should
        download; less than a block fetches a piece around the read instead of its block. ``caller`` names
        the open file asking: the kernel's immediate retry of a failed read comes on the same one, a new
        open does not. With ``as_file``, a read that ``locate`` finds on disk comes back as a span of the
        block's file instead. ``waited_for_network`` then tells whether this read waited for a download."""
        _waits.waited = False  # what an earlier call on this thread waited for is not this read's
        if as_file:
            span = self.locate(file_id, file_size, offset, size)
            if span is not None:
                return span
        with self._lock:
            failed = self._failed.pop((file_id, caller), None)
        if failed is not None and time.monotonic() < failed[0]:
            raise MmfsError(f"{failed[1].message} (a moment ago; not tried again yet)")
        began = time.monotonic()
        try:
            return self._read_sized(file_id, file_size, offset, size, fetch)
        except MmfsError as exc:
            # Only a failure that spent most of the deadline: a quick one costs little to repeat.
            slow = self._deadline is not None and time.monotonic() - began >= self._deadline / 2
            if slow and (exc.retryable or isinstance(exc, deadline.DeadlineError)):
                with self._lock:
                    self._failed[(file_id, caller)] = (time.monotonic() + FAILURE_MEMORY, exc)
            raise

    def _read_sized(self, file_id: str, file_size: int, offset: int, size: int, fetch: int | None) -> bytes:
        with deadline.within(self._deadline):
            for _ in range(3):
                true = self._source.true_size(file_id)
                if true is not None and true > file_size:
                    raise SizeChangedError(
                        f"file {file_id} has {true} bytes, not the {file_size} it was listed with; "
                        "open it again to read it whole")
                if true is not None and true < file_size and offset > true:
                    # The kernel believes the listed, larger size. A read that starts at the true end
                    # answers empty and the kernel sets its size there; one beyond it must not answer
                    # empty too: replies racing each other, one that lands first would set the size
                    # there, and the kernel would serve the zero-filled gap as file content.
                    raise SizeChangedError(f"file {file_id} ends at byte {true}, not at {file_size} as listed; "
                                           f"no bytes at {offset}")
                try:
                    return self._read(file_id, file_size if true is None else true, offset, size, fetch)
                except _Resized:
                    continue
            raise ProtocolError(f"file {file_id}: downloads disagree about its size")

    def _read(self, file_id: str, file_size: int, offset: int, size: int, fetch: int | None) -> bytes:
        if self._knows_range(file_id):
            return self._read_known(file_id, file_size, offset, size, fetch)
        # A host that ignores Range answers every request with the whole body: the kernel's first reads of a
        # file, racing each other, would each start one. One goes first; its answer tells the others whether
        # to fetch ranges or to share one whole-body stream.
        left = deadline.remaining()
        if not self._probe.acquire(timeout=-1 if left is None else max(0.0, left)):
            raise deadline.DeadlineError(f"gave up waiting to read {file_id} at the deadline")
        try:
            return self._read_known(file_id, file_size, offset, size, fetch)
        finally:
            self._probe.release()

    def _knows_range(self, file_id: str) -> bool:
        """Whether the file's host has shown whether it honours Range: asked of the source (a lock and a URL
        parse) only until it has, since a verdict never changes; this runs on every kernel read."""
        if file_id in self._range_seen:
            return True
        if self._source.range_known(file_id):
            self._range_seen.add(file_id)
            return True
        return False

    def _read_known(self, file_id: str, file_size: int, offset: int, size: int, fetch: int | None) -> bytes:
        start, end = clamp_read(offset, size, file_size)
        # A host that ignores Range sends the whole body for any piece: read such a file by whole blocks,
        # which its one whole-body stream serves.
        small = fetch is not None and fetch < self.block_size and not self._source.ignores_range(file_id)
        pieces = []
        for index in blocks_for_range(start, end, self.block_size):
            block_start, block_end = block_bounds(index, self.block_size, file_size)
            lo, hi = max(start, block_start), min(end, block_end)
            if small:
                assert fetch is not None
                pieces.append(self._part(file_id, file_size, index, block_start, block_end, lo, hi, fetch))
            else:
                pieces.append(memoryview(self._block(file_id, file_size, index))[lo - block_start : hi - block_start])
        # One copy into the bytes FUSE hands back: never the whole block.
        return pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces)

    def locate(self, file_id: str, file_size: int, offset: int, size: int) -> FileSpan | None:
        """The read as a span of a file on disk: with a sparse store, any range whose blocks are all on disk
        and checked; with a store of block files, a read inside one block that is on disk and not in memory
        (a block on its way to disk has no file yet). Else None, and ``read`` it is. Never for a file whose
        downloads contradict ``file_size``: ``read`` handles that."""
        true = self._source.true_size(file_id)
        if true is not None and true != file_size:
            return None
        start, end = clamp_read(offset, size, file_size)
        if self._files is None:
            # Any range whose blocks are all on disk, whether or not memory holds them too: libfuse copies
            # from the page cache without Python or the GIL, which beats a copy out of memory.
            return self._store.span(file_id, self.block_size, start, end, file_size) if start < end else None
        index = start // self.block_size
        if start >= end or (end - 1) // self.block_size != index:
            return None
        key = block_key(file_id, self.block_size, index)
        with self._lock:
            if key in self._lru or key in self._inflight:
                return None
        if self._writes.holds(key):
            return None
        block_start, block_end = block_bounds(index, self.block_size, file_size)
        return self._files.span(key, start - block_start, end - block_start, block_end - block_start)

    def _part(self, file_id: str, file_size: int, index: int, block_start: int, block_end: int, lo: int, hi: int,
              fetch: int) -> memoryview:
        """Bytes ``[lo, hi)`` of block ``index`` (``[block_start, block_end)``): from the whole block when it is
        in memory, on its way or on disk, else from a piece of ``fetch`` bytes (at least) downloaded from ``lo``
        on."""
        key = block_key(file_id, self.block_size, index)
        with self._lock:
            whole = self._lru.get(key)
            pending = key in self._inflight
        if whole is None and (pending or self._stored(key)):
            whole = self._block(file_id, file_size, index)
        if whole is not None:
            return memoryview(whole)[lo - block_start : hi - block_start]
        first = lo - lo % _PIECE_ALIGN
        return self._piece(file_id, file_size, lo, hi, first, min(max(hi, first + fetch), block_end))

    def _piece(self, file_id: str, file_size: int, lo: int, hi: int, first: int, last: int) -> memoryview:
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
            return memoryview(_wait(future))[lo - start : hi - start]
        _waits.waited = True
        try:
            try:
                with self._slots:
                    data = self._source.fetch(file_id, first, last)
            finally:
                self._check_size(file_id, file_size)  # a piece cut for a wrong size is never kept
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
            return _wait(future)
        data = self._fill(file_id, file_size, index, key)
        assert data is not None
        return data

    def _fill(self, file_id: str, file_size: int, index: int, key: str, *, wait: bool = True,
              slot_held: bool = False) -> Block | None:
        """Load a block from disk, else download it: once, however many readers ask at the same time.
        Without ``wait``, a block left to a whole-body stream is not waited for (None). ``slot_held``: the
        caller already holds a slot of the in-flight budget for it."""
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
            return _wait(future) if wait else None
        streamed = False
        try:
            start, end = block_bounds(index, self.block_size, file_size)
            data = self._at_hand(key, end - start)
            downloaded = data is None
            if downloaded:
                _waits.waited = True
                streamed = (self._source.ignores_range(file_id)
                            and self._join_stream(file_id, file_size, start, key, future))
                if not streamed and self._source.ignores_range(file_id):
                    # A whole-body stream that ended since the look above has passed the block on.
                    data = self._at_hand(key, end - start)
                    downloaded = data is None
                if not streamed and downloaded:
                    try:
                        with contextlib.nullcontext() if slot_held else self._slot(file_id):
                            data = self._download(file_id, start, end)
                    finally:
                        self._check_size(file_id, file_size)
        except BaseException as exc:
            future.set_exception(exc)
            with self._lock:
                self._inflight.pop(key, None)
            raise
        if streamed:  # the stream resolves the future; this reader only waits for it
            return _wait(future) if wait else None
        assert data is not None
        with self._lock:
            self._remember_locked(key, data)
            self._inflight.pop(key, None)
        future.set_result(data)  # waiters go on now; storing the block is not their business
        if downloaded:
            self._writes.put(key, data, file_id)
        return data

    def _at_hand(self, key: str, length: int) -> Block | None:
        """The block from the write-behind queue or the store; None if neither has it at ``length`` bytes
        (one cut for another size of the file, a listing since corrected, is not this block)."""
        data = self._writes.get(key)
        if data is None:
            data = self._store.get(key)
        return data if data is not None and len(data) == length else None

    @contextlib.contextmanager
    def _slot(self, file_id: str) -> Iterator[None]:
        """A slot of the in-flight budget, waited for no longer than the deadline in force: downloads stuck
        elsewhere must not hold a read of a healthy file past its own."""
        left = deadline.remaining()
        if not self._slots.acquire(timeout=None if left is None else max(0.0, left)):
            raise deadline.DeadlineError(f"read of {file_id}: no download slot free by the deadline "
                                         "(every one is taken by slower downloads)")
        try:
            yield
        finally:
            self._slots.release()

    def _stored(self, key: str) -> bool:
        """On disk, or on its way there."""
        return self._writes.holds(key) or self._store.contains(key)

    def _download(self, file_id: str, start: int, end: int) -> Block:
        """A block's bytes from the network, less what pieces already hold of its start (a reader that began
        with small fetches and went on in sequence has the first few hundred KiB in pieces)."""
        have = self._pieces.prefix(file_id, start, end)
        block = self._buffers.take(end - start)
        block[:len(have)] = have
        if len(have) < end - start:
            self._source.fetch_into(file_id, start + len(have), memoryview(block)[len(have):])
            self._gate.landed(end - start - len(have))
        # Put together here, so the source never saw it whole: one that shares blocks (mmfs.fleet) may now.
        if have:
            self._source.share_block(file_id, start, block)
        return block

    def _check_size(self, file_id: str, file_size: int) -> None:
        """Refuse a block cut for ``file_size`` when a download has said the file is another size."""
        true = self._source.true_size(file_id)
        if true is not None and true != file_size:
            raise _Resized(file_id)

    # -- whole-body streams (download hosts that ignore Range) ------------------------------------------

    def _join_stream(self, file_id: str, file_size: int, start: int, key: str, future: Future[Block]) -> bool:
        """Leave block ``key`` (whose ``future`` we own) to the file's whole-body stream, starting one if
        none runs. False when the running stream has already passed the block: fetch it alone."""
        with self._lock:
            stream = self._streams.get(file_id)
            if stream is not None and stream.pos > start:
                return False
            if stream is None and self._stored(key):  # a stream that just ended passed it on
                return False
            fresh = stream is None
            if stream is None:
                stream = self._streams[file_id] = _Stream()
            stream.adopted.add(key)
        if fresh:
            start_thread(self._run_stream, file_id, file_size, stream, name=f"mmfs-stream-{file_id}")
        return True

    def _run_stream(self, file_id: str, file_size: int, stream: _Stream) -> None:
        """Read the whole body once, storing every block and resolving the blocks readers wait for.

        It runs past any one reader's deadline (readers stop waiting on their own), but a stream that
        makes no block of progress for a deadline's length is abandoned.
        """
        error: BaseException | None = None
        chunks = self._source.stream(file_id, 0, file_size)
        try:
            index, buf = 0, bytearray()
            last_block_at = time.monotonic()
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    block_start, block_end = block_bounds(index, self.block_size, file_size)
                    take = min(len(view), block_end - block_start - len(buf))
                    buf += view[:take]
                    view = view[take:]
                    if len(buf) == block_end - block_start:
                        self._check_size(file_id, file_size)
                        self._stream_block(file_id, index, block_end, buf, stream)
                        index, buf = index + 1, bytearray()
                        last_block_at = time.monotonic()
                if self._deadline is not None and time.monotonic() - last_block_at > self._deadline:
                    raise deadline.DeadlineError(f"whole-body download of {file_id} stalled")
            self._check_size(file_id, file_size)
            if index < block_count(file_size, self.block_size):
                raise ProtocolError(f"whole-body download of {file_id} ended at block {index}")
        except _Resized as exc:
            error = exc
        except Exception as exc:
            log.info("whole-body download of %s failed: %s", file_id, exc)
            error = exc
        finally:
            chunks.close()
            self._end_stream(file_id, stream, error or ProtocolError(f"whole-body download of {file_id} ended"))

    def _stream_block(self, file_id: str, index: int, block_end: int, data: bytearray, stream: _Stream) -> None:
        key = block_key(file_id, self.block_size, index)
        future = None
        with self._lock:
            stream.pos = block_end
            if key in stream.adopted:
                stream.adopted.discard(key)
                future = self._inflight.pop(key, None)
                self._remember_locked(key, data)
        if future is not None and not future.done():
            future.set_result(data)
        if future is not None or not self._stored(key):
            self._writes.put(key, data, file_id)

    def _end_stream(self, file_id: str, stream: _Stream, error: BaseException) -> None:
        """Fail the blocks still waiting for a stream that stopped (they are fetched anew when asked)."""
        with self._lock:
            if self._streams.get(file_id) is stream:
                del self._streams[file_id]
            waiting = [self._inflight.pop(key, None) for key in stream.adopted]
            stream.adopted.clear()
        for future in waiting:
            if future is not None and not future.done():
                future.set_exception(error)

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
        if not stored and not self._knows_range(file_id):
            # Until the host has answered one Range request, a burst of fetches ahead could each get the
            # whole body from a host that ignores Range, and each throw away a prefix: wait for the verdict.
            return
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
                return
            if stored and self._files is None:  # checked ahead of the reader, read by fd
                block_start, block_end = block_bounds(index, self.block_size, file_size)
                self._store.span(file_id, self.block_size, block_start, block_end, file_size)
            elif stored and self._files is not None:
                self._files.open(key)  # checked ahead of the reader, read by fd: no copy into memory
            else:
                with self._gate.stream(timeout=self._deadline) as admitted, deadline.within(self._deadline):
                    if admitted:
                        self._fill(file_id, file_size, index, key, wait=False, slot_held=True)
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
        self._range_seen.discard(file_id)
        with self._lock:
            for key in [k for k in self._lru if k.startswith(prefix)]:
                del self._lru[key]
        self._pieces.evict(file_id)
        self._writes.drop_file(file_id)
        if self._files is not None:
            self._files.forget(prefix)
        self._store.evict_file(file_id)

    def free_disk(self, free_bytes: Callable[[int], int], wanted: int) -> int:
        """Evict blocks for ``wanted`` bytes of disk (``free_bytes``, the store's eviction) and close the
        files of those this reader holds open, so the space is really freed; the bytes evicted."""
        freed = free_bytes(wanted)
        if self._files is not None:
            self._files.let_go_of_evicted(wait=True)
        self._store.let_go_of_evicted(wait=True)
        return freed

    def flush(self) -> None:
        """Wait until every downloaded block is on disk."""
        self._writes.flush()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._writes.close()
        if self._files is not None:
            self._files.close()
        self._store.close()


def _wait(future: Future[Block]) -> Block:
    """The future's block, waiting no longer than the deadline in force."""
    if not future.done():
        _waits.waited = True  # on a download (or, rarely, another reader's look-up on disk)
    try:
        return future.result(timeout=deadline.remaining())
    except FutureTimeout:
        raise deadline.DeadlineError("gave up waiting for a block at the deadline") from None
