"""Bytes on disk that are not what the mount stored: never served.

The block cache's check covers a block's identity (its key: file id, block size, index; and its length) as
well as its bytes, and is made wherever a cached block reaches a reader: on every load into Python, and for
blocks answered by file descriptor when the file is opened and again whenever the file changed since.
Each test damages the cache the way the threat model says (doc/SEMANTICS.md, "Integrity") and checks that
the reader gets the platform's bytes and that the damaged block was fetched again.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from mounting import require_fuse
from test_blocks import CountingSource

from mmfs.blocks.reader import BlockReader
from mmfs.blocks.store import DiskBlockStore, block_key

MiB = 1 << 20
BLOCK = 64 * 1024
SIZE = 5 * BLOCK + 777


def _flip(path: str, at: int) -> None:
    """Change one byte of a file in place (the inode stays the same, as an editor's in-place write)."""
    with open(path, "r+b") as raw:
        raw.seek(at)
        byte = raw.read(1)
        raw.seek(at)
        raw.write(bytes([byte[0] ^ 0xFF]))


def _block_file(store: DiskBlockStore, key: str) -> str:
    f = store.open_file(key)
    assert f is not None, key
    name = f.name
    f.close()
    return name


def test_a_block_this_process_stored_is_checked_when_its_file_is_opened(tmp_path):
    data, source, store, reader = _stored_by_a_reader(tmp_path)  # every block on disk, written by this reader
    _flip(_block_file(store, block_key("f", BLOCK, 2)), 100)
    source.calls.clear()
    assert reader.locate("f", SIZE, 2 * BLOCK, 4096) is None  # failed its check: never handed to libfuse
    assert reader.read("f", SIZE, 2 * BLOCK, 4096) == data[2 * BLOCK : 2 * BLOCK + 4096]
    assert source.calls == [(2 * BLOCK, 3 * BLOCK)]  # fetched again
    reader.close()


def test_a_block_file_changed_after_its_check_is_checked_again_before_the_next_read(tmp_path):
    data, source, store, reader = _stored_by_a_reader(tmp_path)
    span = reader.locate("f", SIZE, 3 * BLOCK, 4096)
    assert span is not None  # opened, checked, kept open
    assert os.pread(span.fd, span.length, span.offset) == data[3 * BLOCK : 3 * BLOCK + 4096]
    _flip(_block_file(store, block_key("f", BLOCK, 3)), 200)
    assert reader.locate("f", SIZE, 3 * BLOCK, 4096) is None
    source.calls.clear()
    assert reader.read("f", SIZE, 3 * BLOCK, 4096) == data[3 * BLOCK : 3 * BLOCK + 4096]
    assert source.calls == [(3 * BLOCK, 4 * BLOCK)]
    reader.close()


def test_a_block_loaded_into_memory_is_checked_on_every_load(tmp_path):
    data, source, store, reader = _stored_by_a_reader(tmp_path)
    _flip(_block_file(store, block_key("f", BLOCK, 1)), 300)
    source.calls.clear()
    assert reader.read("f", SIZE, BLOCK, BLOCK) == data[BLOCK : 2 * BLOCK]
    assert source.calls == [(BLOCK, 2 * BLOCK)]
    reader.close()


def test_a_block_stored_under_another_key_never_reads_as_it(tmp_path):
    # Two blocks of the same length whose index rows point at each other's file: both bytes are intact,
    # only their identity is wrong.
    data = os.urandom(SIZE)
    store = DiskBlockStore(tmp_path / "blocks", 1 << 30)
    reader = BlockReader(store, CountingSource(data), block_size=BLOCK)
    assert reader.read("f", SIZE, 0, SIZE) == data
    reader.close()
    _swap_rows(tmp_path / "blocks", block_key("f", BLOCK, 0), block_key("f", BLOCK, 1))
    source = CountingSource(data)
    reader = BlockReader(DiskBlockStore(tmp_path / "blocks", 1 << 30), source, block_size=BLOCK)
    assert reader.locate("f", SIZE, 0, 4096) is None
    assert reader.read("f", SIZE, 0, 2 * BLOCK) == data[: 2 * BLOCK]
    assert sorted(source.calls) == [(0, BLOCK), (BLOCK, 2 * BLOCK)]
    reader.close()


def _stored_by_a_reader(tmp_path: Path) -> tuple[bytes, CountingSource, DiskBlockStore, BlockReader]:
    """A file read whole by a reader that keeps one block in memory, every block then on disk: written and
    checked by this reader itself."""
    data = os.urandom(SIZE)
    source = CountingSource(data)
    store = DiskBlockStore(tmp_path / "blocks", 1 << 30)
    reader = BlockReader(store, source, block_size=BLOCK, memory_blocks=1)
    assert reader.read("f", SIZE, 0, SIZE) == data
    reader.flush()
    return data, source, store, reader


def _swap_rows(blocks: Path, key_a: str, key_b: str) -> None:
    with sqlite3.connect(blocks / "cache.db") as db:
        (a,) = db.execute("SELECT filename FROM Cache WHERE key = ?", (key_a,)).fetchone()
        (b,) = db.execute("SELECT filename FROM Cache WHERE key = ?", (key_b,)).fetchone()
        db.execute("UPDATE Cache SET filename = ? WHERE key = ?", (b, key_a))
        db.execute("UPDATE Cache SET filename = ? WHERE key = ?", (a, key_b))


@pytest.mark.fuse
def test_two_index_rows_swapped_while_unmounted_never_serve_one_block_as_the_other(emulator, mount_of):
    require_fuse()
    data = os.urandom(8 * MiB + 4321)
    record = emulator.seed("retrieval", "swapped.bin", data)
    file_id = str(record["file_id"])
    with mount_of(emulator) as m:
        assert (m.path / "retrieval" / "swapped.bin").read_bytes() == data
    # The mount's store keeps a file's blocks in one sparse file: its first two blocks trade places there,
    # each intact, its map untouched.
    (sparse_file,) = list(m.cache_dir.glob(f"*/blocks/files/{file_id}.*.data"))
    raw = bytearray(sparse_file.read_bytes())
    raw[: 4 * MiB], raw[4 * MiB : 8 * MiB] = raw[4 * MiB : 8 * MiB], raw[: 4 * MiB]
    sparse_file.write_bytes(bytes(raw))
    emulator.reset_counters()
    with mount_of(emulator) as m:
        assert (m.path / "retrieval" / "swapped.bin").read_bytes() == data
        assert "failed its check" in m.log()
    fetched = sum(d["end"] - d["start"] for d in emulator.counters()["downloads"] if d["file_id"] == file_id)
    assert fetched >= 8 * MiB  # both swapped blocks came from the platform again
