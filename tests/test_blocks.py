"""Block arithmetic, readahead policy, the block store and the reader, without FUSE or HTTP."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from range_hosts import HonoursRange

from mmfs.blocks.arithmetic import block_bounds, block_count, blocks_for_range, clamp_read
from mmfs.blocks.prefetch import SequentialPrefetch
from mmfs.blocks.reader import BlockReader
from mmfs.blocks.store import DiskBlockStore, MemoryBlockStore, block_key
from mmfs.errors import ServerError

MiB = 1 << 20


@given(st.integers(0, 10**9), st.integers(0, 10**7), st.integers(1, 10**9), st.integers(1, 16 * MiB))
def test_blocks_cover_exactly_the_clamped_range(offset, size, file_size, block_size):
    start, end = clamp_read(offset, size, file_size)
    blocks = blocks_for_range(start, end, block_size)
    if start == end:
        assert len(blocks) == 0
        return
    first_start, _ = block_bounds(blocks[0], block_size, file_size)
    _, last_end = block_bounds(blocks[-1], block_size, file_size)
    assert first_start <= start < end <= last_end
    assert blocks[-1] < block_count(file_size, block_size)


def test_block_bounds_last_block_is_short():
    assert block_bounds(2, 10, 25) == (20, 25)
    with pytest.raises(ValueError):
        block_bounds(3, 10, 25)


class TestSequentialPrefetch:
    def test_window_grows_and_stops_at_the_limit(self):
        p = SequentialPrefetch(block_size=MiB, file_size=1000 * MiB, max_window=8)
        assert p.advise(0, 128 << 10) == []  # one read is not a stream yet
        leads, scheduled = [], []
        offset = 128 << 10
        while offset < 40 * MiB:
            ahead = p.advise(offset, 128 << 10)
            scheduled += ahead
            if ahead:
                leads.append(max(ahead) - offset // MiB)
            offset += 128 << 10
        assert max(leads) == 8  # never more than the window ahead of the reader
        assert p.window == 8
        assert leads[:3] == sorted(leads[:3]) and leads[0] < 8  # it grows before it saturates
        assert len(scheduled) == len(set(scheduled))  # each block asked for once
        assert scheduled == list(range(1, max(scheduled) + 1))  # in order, none skipped

    def test_seek_resets_the_window(self):
        p = SequentialPrefetch(block_size=MiB, file_size=1000 * MiB, max_window=8)
        offset = 0
        for _ in range(200):
            p.advise(offset, 128 << 10)
            offset += 128 << 10
        assert p.window > 1
        assert p.advise(500 * MiB, 4096) == []  # a random read fetches only what it reads
        assert p.window == 0
        offset, ahead = 500 * MiB + 4096, []
        for _ in range(8):  # streaming again from the new place starts small, right after it
            ahead += p.advise(offset, 128 << 10)
            offset += 128 << 10
        assert ahead and min(ahead) == 501

    def test_neighbouring_small_reads_are_not_a_stream(self):
        p = SequentialPrefetch(block_size=MiB, file_size=1000 * MiB)
        assert p.advise(5 * MiB, 4096) == []
        assert p.advise(5 * MiB + 4096, 4096) == []
        assert p.advise(5 * MiB + 8192, 128 << 10) == []

    def test_never_past_eof(self):
        p = SequentialPrefetch(block_size=MiB, file_size=5 * MiB + 3, max_window=16)
        offset, seen = 0, set()
        while offset < 5 * MiB + 3:
            seen.update(p.advise(offset, 128 << 10))
            offset += 128 << 10
        assert max(seen) == 5  # the last (short) block, never index 6
        assert p.advise(offset, 128 << 10) == []


class TestFetchSize:
    """The download size of a cache miss: small after a seek, growing in sequence, reset by a seek."""

    def test_grows_while_reads_stay_in_sequence_then_whole_blocks(self):
        p = SequentialPrefetch(block_size=4 * MiB, file_size=1000 * MiB, first_fetch=64 << 10)
        sizes, offset = [], 100 * MiB
        for _ in range(6):
            p.advise(offset, 4096)
            sizes.append(p.fetch_size)
            offset += 4096
        assert sizes == [64 << 10, 64 << 10, 64 << 10, 64 << 10, 64 << 10, 64 << 10]
        for _ in range(26):
            p.advise(offset, 4096)
            offset += 4096
        assert p.fetch_size == 2 * 32 * 4096  # twice the bytes read in sequence
        while not p.streaming:
            p.advise(offset, 128 << 10)
            offset += 128 << 10
        assert p.fetch_size == 4 * MiB  # a stream reads whole blocks

    def test_a_seek_resets_it(self):
        p = SequentialPrefetch(block_size=4 * MiB, file_size=1000 * MiB, first_fetch=64 << 10)
        offset = 0
        for _ in range(10):
            p.advise(offset, 128 << 10)
            offset += 128 << 10
        assert p.fetch_size == 4 * MiB
        p.advise(700 * MiB, 4096)
        assert p.fetch_size == 64 << 10
        p.advise(700 * MiB + 4096, 4096)
        assert p.fetch_size == 64 << 10
        p.advise(700 * MiB + 8192, 128 << 10)
        assert p.fetch_size == 2 * (8192 + (128 << 10))  # grows with the bytes read in sequence
        p.advise(3 * MiB, 4096)  # backwards, far
        assert p.fetch_size == 64 << 10

    def test_never_more_than_a_block(self):
        p = SequentialPrefetch(block_size=256 << 10, file_size=1000 * MiB, first_fetch=64 << 10,
                               min_streak=100 * MiB)
        offset = 0
        for _ in range(200):
            p.advise(offset, 4096)
            offset += 4096
        assert p.fetch_size == 256 << 10

    def test_a_stream_reaches_full_window_within_a_few_mib(self):
        p = SequentialPrefetch(block_size=4 * MiB, file_size=1000 * MiB, max_window=16)
        offset = 0
        while p.window < 8:
            p.advise(offset, 128 << 10)
            offset += 128 << 10
        assert offset <= 4 * MiB


class CountingSource(HonoursRange):
    def __init__(self, data: bytes, delay: float = 0.0, fail: bool = False):
        self.data = data
        self.calls: list[tuple[int, int]] = []
        self.delay = delay
        self.fail = fail
        self.lock = threading.Lock()

    def fetch(self, file_id: str, start: int, end: int) -> bytes:
        with self.lock:
            self.calls.append((start, end))
        time.sleep(self.delay)
        if self.fail:
            raise ServerError("injected")
        return self.data[start:end]



def test_reader_returns_exact_bytes_and_downloads_each_block_once():
    data = os.urandom(10 * 1000 + 7)
    source = CountingSource(data)
    reader = BlockReader(MemoryBlockStore(), source, block_size=1000, memory_blocks=2)
    for offset, size in [(0, 1), (999, 2), (500, 3000), (10_000, 100), (10_007, 5), (0, 20_000)]:
        assert reader.read("f", len(data), offset, size) == data[offset : offset + size]
    assert sorted(set(source.calls)) == sorted(source.calls)  # no block twice: LRU or store served repeats
    reader.close()


def test_a_small_fetch_downloads_a_piece_and_serves_repeats_from_it():
    data = os.urandom(3 * 65536 + 123)
    source = CountingSource(data)
    reader = BlockReader(MemoryBlockStore(), source, block_size=65536)
    fetch = 8192
    for offset, size in [(5000, 100), (5000, 100), (4096, 4096), (65536 - 10, 20), (3 * 65536 + 100, 50)]:
        assert reader.read("f", len(data), offset, size, fetch) == data[offset : offset + size]
    assert source.calls == [(4096, 12288),  # aligned down to a page, fetch bytes long; the repeats hit it
                            (61440, 65536), (65536, 73728),  # a read across a block edge: one piece each side
                            (3 * 65536, 3 * 65536 + 123)]  # cut at EOF
    assert reader.read("f", len(data), 0, 65536) == data[:65536]  # a whole-block read still works
    calls = len(source.calls)
    assert reader.read("f", len(data), 30000, 10, fetch) == data[30000:30010]  # served by the block now
    assert len(source.calls) == calls
    reader.evict("f")
    reader.close()


def test_a_block_fetched_after_pieces_downloads_only_what_the_pieces_lack():
    # A reader that starts with small fetches and goes on in sequence: the whole block then fetched asks the
    # network only for the bytes after the pieces it already has, and the block is still exact.
    data = os.urandom(2 * 65536)
    source = CountingSource(data)
    reader = BlockReader(MemoryBlockStore(), source, block_size=65536)
    assert reader.read("f", len(data), 0, 4096, 4096) == data[:4096]
    assert reader.read("f", len(data), 4096, 8192, 8192) == data[4096:12288]
    assert reader.read("f", len(data), 12288, 65536 - 12288) == data[12288:65536]  # a whole-block read now
    assert source.calls == [(0, 4096), (4096, 12288), (12288, 65536)]
    assert sum(end - start for start, end in source.calls) == 65536  # no byte of the block twice
    assert reader.read("f", len(data), 0, 65536) == data[:65536]
    reader.close()


def test_concurrent_readers_of_one_block_cause_one_download():
    data = os.urandom(4096)
    source = CountingSource(data, delay=0.2)
    reader = BlockReader(MemoryBlockStore(), source, block_size=4096)
    results = []
    threads = [threading.Thread(target=lambda: results.append(reader.read("f", 4096, 100, 10))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [data[100:110]] * 8
    assert source.calls == [(0, 4096)]
    reader.close()


def test_a_failed_download_is_reported_to_every_waiter_and_retried_later():
    data = os.urandom(4096)
    source = CountingSource(data, delay=0.1, fail=True)
    reader = BlockReader(MemoryBlockStore(), source, block_size=4096)
    errors = []

    def read():
        try:
            reader.read("f", 4096, 0, 10)
        except ServerError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4
    source.fail = False
    assert reader.read("f", 4096, 0, 10) == data[:10]
    reader.close()


def test_prefetch_holds_no_more_than_its_memory_budget():
    data = os.urandom(64 * 1000)
    source = CountingSource(data, delay=0.2)
    reader = BlockReader(MemoryBlockStore(), source, block_size=1000, prefetch_workers=8, prefetch_memory=3000)
    reader.prefetch("f", len(data), range(1, 20))
    time.sleep(0.05)
    assert len(source.calls) == 3  # three slots of 1000 bytes; the rest were dropped, not queued
    reader.close()


def test_seeded_file_needs_no_download():
    data = os.urandom(2500)
    source = CountingSource(data)
    reader = BlockReader(MemoryBlockStore(), source, block_size=1000)
    done = threading.Event()
    reader.seed("f", len(data), lambda start, end: data[start:end], done.set)
    assert reader.read("f", len(data), 0, 2500) == data  # waits for the seeding if it is still going
    assert done.wait(5)
    assert source.calls == []
    reader.close()


class TestDiskBlockStore:
    def test_round_trip_and_private_folder(self, tmp_path: Path):
        store = DiskBlockStore(tmp_path / "blocks", 100 * MiB)
        payload = os.urandom(MiB)
        store.put(block_key("42", MiB, 0), payload, "42")
        assert store.get(block_key("42", MiB, 0)) == payload
        assert store.get(block_key("42", MiB, 1)) is None
        assert (tmp_path / "blocks").stat().st_mode & 0o777 == 0o700
        store.close()

    def test_survives_reopen(self, tmp_path: Path):
        store = DiskBlockStore(tmp_path / "blocks", 100 * MiB)
        store.put("1/4/0", b"abcd", "1")
        store.close()
        again = DiskBlockStore(tmp_path / "blocks", 100 * MiB)
        assert again.get("1/4/0") == b"abcd"
        again.close()

    def test_size_limit_is_a_ceiling(self, tmp_path: Path):
        store = DiskBlockStore(tmp_path / "blocks", 8 * MiB)
        for i in range(40):
            store.put(block_key("9", MiB, i), os.urandom(MiB), "9")
            assert store.volume() <= 8 * MiB  # after every put, not just at the end
        assert store.get(block_key("9", MiB, 39)) is not None  # the newest survive
        assert store.get(block_key("9", MiB, 0)) is None
        kept = sum(store.get(block_key("9", MiB, i)) is not None for i in range(40))
        assert kept >= 6  # evicts what it must, not everything
        store.close()

    def test_evict_file_removes_only_its_blocks(self, tmp_path: Path):
        store = DiskBlockStore(tmp_path / "blocks", 100 * MiB)
        store.put("1/4/0", b"aaaa", "1")
        store.put("1/4/1", b"bbbb", "1")
        store.put("2/4/0", b"cccc", "2")
        assert store.evict_file("1") == 2
        assert store.get("1/4/0") is None and store.get("2/4/0") == b"cccc"
        store.close()

    def test_a_corrupted_block_reads_as_a_miss(self, tmp_path: Path):
        store = DiskBlockStore(tmp_path / "blocks", 100 * MiB)
        store.put("1/1048576/0", os.urandom(MiB), "1")
        store.close()
        [blob] = [p for p in (tmp_path / "blocks").rglob("*.val")]
        raw = bytearray(blob.read_bytes())
        raw[100] ^= 0xFF
        blob.write_bytes(bytes(raw))
        again = DiskBlockStore(tmp_path / "blocks", 100 * MiB)
        assert again.get("1/1048576/0") is None
        again.close()

    def test_pickled_values_are_refused(self, tmp_path: Path):
        import diskcache

        plain = diskcache.Cache(str(tmp_path / "blocks"))
        plain.set("1/4/0", {"not": "bytes"})  # what an attacker with write access could plant
        plain.close()
        store = DiskBlockStore(tmp_path / "blocks", 100 * MiB)
        assert store.get("1/4/0") is None
        with pytest.raises(TypeError):
            store._cache.set("x", {"a": 1})
        store.close()
