"""Cached reads answered by file descriptor: the same bytes as the plain path, at block edges and at EOF."""

from __future__ import annotations

import ctypes
import os
import subprocess

from test_blocks import CountingSource

from mmfs.blocks.reader import BlockReader
from mmfs.blocks.store import DiskBlockStore, block_key, check_framed_file
from mmfs.doors.fusebuf import FUSE_BUF_FD_SEEK, FUSE_BUF_IS_FD, FuseBufvec, free_bufvec, new_bufvec

MiB = 1 << 20
BLOCK = 64 * 1024
SIZE = 5 * BLOCK + 777  # the last block is short

# (offset, size): inside a block, at its first and last byte, at the short last block, past EOF.
EDGES = [(0, 1), (0, BLOCK), (BLOCK - 1, 1), (BLOCK, 4096), (3 * BLOCK + 5, 60_000), (4 * BLOCK, BLOCK),
         (5 * BLOCK, 777), (5 * BLOCK, BLOCK), (SIZE - 10, 10), (SIZE - 10, 4096), (SIZE - 1, 1)]
ACROSS = [(BLOCK - 100, 200), (0, 2 * BLOCK), (4 * BLOCK + 1, BLOCK)]  # two blocks: the plain path
PAST_EOF = [(SIZE, 10), (SIZE + 5000, 4096)]


def _stored(tmp_path, data: bytes) -> None:
    """Every block of ``data`` in a disk store under ``tmp_path``, then the store closed (a remount)."""
    store = DiskBlockStore(tmp_path / "blocks", 1 << 30)
    first = BlockReader(store, CountingSource(data), block_size=BLOCK)
    assert first.read("f", len(data), 0, len(data)) == data
    first.close()


def test_fd_spans_hold_the_same_bytes_as_plain_reads(tmp_path):
    data = os.urandom(SIZE)
    _stored(tmp_path, data)
    source = CountingSource(data)
    by_fd = BlockReader(DiskBlockStore(tmp_path / "blocks", 1 << 30), source, block_size=BLOCK)
    plain = BlockReader(DiskBlockStore(tmp_path / "blocks", 1 << 30), source, block_size=BLOCK)
    for offset, size in EDGES:
        span = by_fd.locate("f", SIZE, offset, size)
        assert span is not None, (offset, size)
        assert os.pread(span.fd, span.length, span.offset) == plain.read("f", SIZE, offset, size)
        assert os.pread(span.fd, span.length, span.offset) == data[offset : offset + size]
    for offset, size in ACROSS + PAST_EOF:
        assert by_fd.locate("f", SIZE, offset, size) is None  # read() answers these
        assert plain.read("f", SIZE, offset, size) == data[offset : offset + size]
    assert source.calls == []  # all from the disk cache
    by_fd.close()
    plain.close()


def test_a_damaged_block_file_is_never_served_by_fd(tmp_path):
    data = os.urandom(SIZE)
    _stored(tmp_path, data)
    store = DiskBlockStore(tmp_path / "blocks", 1 << 30)
    f = store.open_file(block_key("f", BLOCK, 2))
    assert f is not None
    with open(f.name, "r+b") as raw:  # flip one byte of the block's data
        raw.seek(1000)
        byte = raw.read(1)
        raw.seek(1000)
        raw.write(bytes([byte[0] ^ 0xFF]))
    f.close()
    source = CountingSource(data)
    reader = BlockReader(store, source, block_size=BLOCK)
    assert reader.locate("f", SIZE, 2 * BLOCK, 100) is None
    assert not store.contains(block_key("f", BLOCK, 2))  # dropped: the next read downloads it again
    assert reader.read("f", SIZE, 2 * BLOCK, 100) == data[2 * BLOCK : 2 * BLOCK + 100]
    assert source.calls == [(2 * BLOCK, 3 * BLOCK)]
    assert reader.locate("f", SIZE, 0, 100) is not None  # the others are fine
    reader.close()


def test_the_check_of_a_block_file_covers_its_key(tmp_path):
    # The same file, checked as the block it is and as another one: only the first passes.
    data = os.urandom(SIZE)
    _stored(tmp_path, data)
    store = DiskBlockStore(tmp_path / "blocks", 1 << 30)
    f = store.open_file(block_key("f", BLOCK, 1))
    assert f is not None
    assert check_framed_file(f, block_key("f", BLOCK, 1)) == (os.fstat(f.fileno()).st_size - BLOCK, BLOCK)
    assert check_framed_file(f, block_key("f", BLOCK, 2)) is None
    assert check_framed_file(f, block_key("g", BLOCK, 1)) is None
    f.close()
    store.close()


def test_bufvecs_carry_an_fd_span_or_malloced_bytes(tmp_path):
    data = os.urandom(SIZE)
    _stored(tmp_path, data)
    reader = BlockReader(DiskBlockStore(tmp_path / "blocks", 1 << 30), CountingSource(data), block_size=BLOCK)
    span = reader.locate("f", SIZE, BLOCK + 10, 500)
    assert span is not None
    address = new_bufvec(span)
    vec = FuseBufvec.from_address(address)
    assert (vec.count, vec.idx, vec.off) == (1, 0, 0)
    buf = vec.buf[0]
    assert buf.flags & FUSE_BUF_IS_FD and buf.flags & FUSE_BUF_FD_SEEK
    assert os.pread(buf.fd, buf.size, buf.pos) == data[BLOCK + 10 : BLOCK + 510]
    free_bufvec(address)
    for payload in (b"", b"x", data[:70_000]):
        address = new_bufvec(payload)
        buf = FuseBufvec.from_address(address).buf[0]
        assert buf.flags == 0 and buf.size == len(payload)
        assert ctypes.string_at(buf.mem, buf.size) == payload if payload else not buf.mem
        free_bufvec(address)
    reader.close()


def test_reads_after_a_remount_go_by_fd_and_match_at_block_edges_and_eof(emulator, mount_of):
    block = 4 * MiB
    size = 2 * block + 12345
    data = os.urandom(size)
    emulator.seed("retrieval", "edges.bin", data)
    with mount_of(emulator) as m:
        assert (m.path / "retrieval" / "edges.bin").read_bytes() == data
    emulator.reset_counters()
    with mount_of(emulator) as m:
        path = m.path / "retrieval" / "edges.bin"
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset, length in [(block - 4096, 4096), (block, 4096), (block - 10, 20), (size - 345, 4096),
                                   (size, 100), (0, 1)]:
                assert os.pread(fd, length, offset) == data[offset : offset + length], (offset, length)
        finally:
            os.close(fd)
        whole = subprocess.run(["cat", str(path)], capture_output=True, check=True).stdout
        assert whole == data
        assert emulator.counters()["download_bytes"] == 0
        assert "Traceback" not in m.log_path.read_text()
