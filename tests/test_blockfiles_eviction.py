"""Block files the store evicted are closed, so their space comes back: a deleted file held open keeps its
blocks on disk, and a full cache disk would stay full however much was evicted."""

from __future__ import annotations

import os

import pytest

import mmfs.blocks.blockfiles as blockfiles
from mmfs.blocks.blockfiles import BlockFiles
from mmfs.blocks.store import DiskBlockStore, block_key

BLOCK = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    made = DiskBlockStore(tmp_path / "blocks", 64 * BLOCK)
    yield made
    made.close()


def stored(store: DiskBlockStore, count: int) -> list[str]:
    keys = [block_key("42", BLOCK, i) for i in range(count)]
    for key in keys:
        store.put(key, os.urandom(BLOCK), "42")
    return keys


def test_an_evicted_block_file_is_closed_and_its_space_given_back(store):
    clock = Clock()
    files = BlockFiles(store, clock=clock)
    keys = stored(store, 4)
    spans = [files.span(key, 0, BLOCK) for key in keys]
    assert all(span is not None for span in spans)
    opened = [files.open(key).file for key in keys]
    clock.now += 5  # no read was handed these files lately
    assert store.free_bytes(4 * BLOCK) >= 4 * BLOCK  # the store deletes them...
    assert files.let_go_of_evicted() >= 4 * BLOCK  # ...and their space comes back only now
    assert all(f.closed for f in opened)
    assert files.span(keys[0], 0, BLOCK) is None  # gone, not served from a deleted file
    files.close()


def test_a_block_file_a_read_was_just_handed_is_closed_only_after_that_read_can_be_done(store, monkeypatch):
    clock = Clock()
    files = BlockFiles(store, clock=clock)
    [key] = stored(store, 1)
    assert files.span(key, 0, BLOCK) is not None  # libfuse reads this fd right after the callback returns
    f = files.open(key).file
    store.free_bytes(BLOCK)
    assert files.let_go_of_evicted() == 0
    assert not f.closed  # its fd may still be in use: its number must not be reused yet
    clock.now += 2
    files.let_go_of_evicted()
    assert f.closed
    files.close()


def test_waiting_for_space_waits_out_a_read_in_flight_then_closes(store, monkeypatch):
    clock = Clock()
    slept = []
    monkeypatch.setattr(blockfiles.time, "sleep", lambda s: (slept.append(s), setattr(clock, "now", clock.now + s)))
    files = BlockFiles(store, clock=clock)
    [key] = stored(store, 1)
    assert files.span(key, 0, BLOCK) is not None
    f = files.open(key).file
    store.free_bytes(BLOCK)
    assert files.let_go_of_evicted(wait=True) >= BLOCK
    assert f.closed and slept and max(slept) <= 1.0
    files.close()


def test_a_deleted_file_pushed_out_of_the_lru_is_closed_sooner_than_the_grace(store):
    clock = Clock()
    files = BlockFiles(store, capacity=1, grace=60, clock=clock)
    first, second = stored(store, 2)
    files.span(first, 0, BLOCK)
    old = files.open(first).file
    store.drop(first)  # deleted while open
    clock.now += 2
    files.span(second, 0, BLOCK)  # pushes the first out of the LRU
    assert old.closed
    files.close()
