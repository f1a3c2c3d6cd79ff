"""Block buffers used again: never while anything refers to one, never carrying one block's bytes into
another (a block shorter than a buffer, a body resumed after a break, a 200 answer that ignores Range), and
never more of them than the pool's bound, however many readers hold blocks."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator

import pytest
import urllib3

from mmfs.api import ApiClient, Downloader, RetryPolicy
from mmfs.blocks.memory import BlockBuffers
from mmfs.blocks.reader import BlockReader
from mmfs.blocks.source import RemoteSource
from mmfs.blocks.store import MemoryBlockStore
from mmfs.emulator import Emulator

KiB = 1 << 10
FAST = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05, deadline=20.0)
JUNK = 0xA5


# -- the pool alone -------------------------------------------------------------------------------------

def test_an_idle_buffer_is_handed_out_again_and_a_held_one_never():
    pool = BlockBuffers(64, limit=8)
    first = pool.take(64)
    second = pool.take(64)
    assert second is not first  # the first is still held (by this test)
    held_in_a_list = [second]
    view = memoryview(first)[10:20]  # a reader's slice of it
    del first, second
    third = pool.take(64)
    assert all(third is not b for b in held_in_a_list) and third is not view.obj
    assert pool.counts().reused == 0
    del view
    fourth = pool.take(64)  # the viewed buffer, free at last
    assert pool.counts().reused == 1
    assert fourth is not third and fourth is not held_in_a_list[0]


def test_a_block_shorter_than_a_buffer_gets_one_of_its_own_size():
    pool = BlockBuffers(64, limit=8)
    pool.take(64)  # made, then dropped: idle in the pool
    short = pool.take(40)
    assert len(short) == 40
    assert pool.counts().unpooled == 1 and pool.counts().reused == 0


def test_the_pool_never_holds_more_than_its_limit_and_lets_idle_ones_go():
    pool = BlockBuffers(32, limit=5, spare=2)
    holders: list[bytearray] = []
    # Sixteen readers, each holding a block at once: five come from the pool, the rest are their own.
    barrier = threading.Barrier(16)
    lock = threading.Lock()

    def reader() -> None:
        buf = pool.take(32)
        with lock:
            holders.append(buf)
        barrier.wait(timeout=10)

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    counts = pool.counts()
    assert len({id(b) for b in holders}) == 16  # no buffer handed to two readers
    assert counts.pooled == 5 and counts.made == 5 and counts.unpooled == 11
    holders.clear()  # every reader is done with its block
    pool.take(32)
    assert pool.counts().pooled == 1 + 2  # the one handed out and two spare; the rest went back


# -- received into a used buffer, over HTTP ----------------------------------------------------------------

@pytest.fixture
def source(emulator: Emulator) -> Iterator[RemoteSource]:
    with ApiClient(emulator.base_url, emulator.api_key, retry=FAST) as client, Downloader(retry=FAST) as dl:
        yield RemoteSource(client, dl)


def _dirty(size: int) -> bytearray:
    return bytearray([JUNK]) * size


@pytest.mark.parametrize("ignore_range", [False, True], ids=["ranged", "range-ignored"])
def test_a_used_buffer_holds_only_the_range_asked_for(emulator, source, ignore_range):
    data = os.urandom(3 * 256 * KiB + 1234)
    file_id = str(emulator.seed("retrieval", "r.bin", data)["file_id"])
    emulator.configure(ignore_range=ignore_range)
    buf = _dirty(256 * KiB)
    for start in (0, 256 * KiB, 2 * 256 * KiB + 17):
        source.fetch_into(file_id, start, buf)
        assert buf == data[start:start + len(buf)]
    if ignore_range:
        assert emulator.counters()["requests"]["download"] >= 3  # each answered with the whole body


def test_a_body_that_breaks_is_resumed_into_the_same_buffer(emulator, source):
    data = os.urandom(900 * KiB)
    file_id = str(emulator.seed("retrieval", "b.bin", data)["file_id"])
    emulator.configure(drop_every=2)  # every other answer sends about half its body, then hangs up
    for _ in range(2):  # the second answer breaks
        buf = _dirty(len(data))
        source.fetch_into(file_id, 0, buf)
        assert buf == data
    assert emulator.counters()["faults"]["drop"] >= 1  # it did break


def test_a_range_past_the_end_fails_and_never_looks_filled(emulator, source):
    data = os.urandom(100 * KiB)
    file_id = str(emulator.seed("retrieval", "s.bin", data)["file_id"])
    buf = _dirty(64 * KiB)
    with pytest.raises(Exception, match="short download"):
        source.fetch_into(file_id, 60 * KiB, buf)
    assert buf[:40 * KiB] == data[60 * KiB:]  # what was there was placed; the caller was told it is short


def test_blocks_read_through_reused_buffers_are_each_their_own(emulator, source):
    block = 128 * KiB
    first = os.urandom(6 * block)
    second = os.urandom(2 * block + 999)  # its last block is shorter than a buffer
    a = str(emulator.seed("retrieval", "a.bin", first)["file_id"])
    b = str(emulator.seed("retrieval", "b.bin", second)["file_id"])
    store = MemoryBlockStore()
    reader = BlockReader(store, source, block_size=block, memory_blocks=2, prefetch_workers=1,
                         prefetch_memory=block)
    try:
        for i in range(6):
            assert reader.read(a, len(first), i * block, block) == first[i * block:(i + 1) * block]
            reader.flush()  # the write-behind lets go of its blocks
        for i in range(3):
            size = min(block, len(second) - i * block)
            assert reader.read(b, len(second), i * block, block) == second[i * block:i * block + size]
            reader.flush()
        counts = reader._buffers.counts()
        assert counts.reused >= 4  # buffers did go round
        assert counts.unpooled == 1  # only the short last block had its own
        # What the memory cache and the store still hold is intact: no later block was received over them.
        for i in range(6):
            assert reader.read(a, len(first), i * block, block) == first[i * block:(i + 1) * block]
        for i in range(3):
            got = reader.read(b, len(second), i * block, block)
            assert got == second[i * block:i * block + len(got)] and got
    finally:
        reader.close()


def test_a_block_queued_for_the_disk_keeps_its_bytes_while_others_download(emulator, source):
    block = 64 * KiB
    data = os.urandom(12 * block)
    file_id = str(emulator.seed("retrieval", "q.bin", data)["file_id"])
    gate = threading.Event()
    written: queue.Queue[tuple[str, bytes]] = queue.Queue()

    class SlowStore(MemoryBlockStore):
        def put(self, key, value, file_id):
            gate.wait(timeout=20)  # the disk is slow: blocks wait in the write-behind queue
            written.put((key, bytes(value)))
            super().put(key, value, file_id)

    reader = BlockReader(SlowStore(), source, block_size=block, memory_blocks=1, prefetch_workers=1,
                         prefetch_memory=block)
    try:
        results: list[bytes] = []
        worker = threading.Thread(target=lambda: results.extend(
            reader.read(file_id, len(data), i * block, block) for i in range(5)))
        worker.start()
        worker.join(timeout=5)  # reads go on until the write-behind queue is full
        gate.set()
        worker.join(timeout=20)
        for i in range(5, 12):
            results.append(reader.read(file_id, len(data), i * block, block))
        reader.flush()
        assert results == [data[i * block:(i + 1) * block] for i in range(12)]
        stored = dict(written.queue)
        assert stored and all(value == data[int(key.rsplit("/", 1)[1]) * block:][:block]
                              for key, value in stored.items())
    finally:
        gate.set()
        reader.close()


def test_a_body_received_into_a_buffer_hands_its_connection_back(emulator, source, monkeypatch):
    data = os.urandom(2 << 20)
    file_id = str(emulator.seed("retrieval", "c.bin", data)["file_id"])
    buf = _dirty(256 * KiB)
    source.fetch_into(file_id, 0, buf)  # the URL is fetched, the connection made
    connects = []
    create = urllib3.util.connection.create_connection
    monkeypatch.setattr(urllib3.util.connection, "create_connection",
                        lambda *a, **k: connects.append(a) or create(*a, **k))
    for i in range(1, 6):
        source.fetch_into(file_id, i * len(buf), buf)
        assert buf == data[i * len(buf):(i + 1) * len(buf)]
    assert connects == []  # each range read to its end, its connection used again for the next
