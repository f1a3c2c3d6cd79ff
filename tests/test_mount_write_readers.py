"""A program reading a file while another overwrites it with fewer bytes, through a real mount: the reader
that opened the old file reads it whole (or gets an error), never the old bytes cut at the new size; a
reader that opens after the landing reads exactly the new file."""

from __future__ import annotations

import os
import subprocess

import pytest
from mounting import require_fuse, wait_for

pytestmark = pytest.mark.fuse

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def landed(emulator, purpose: str, data: bytes) -> bool:
    return any(f.purpose == purpose and emulator.store.blob_path(f.file_id).read_bytes() == data
               for f in emulator.store.all())


@pytest.mark.parametrize("cached", [True, False], ids=["old-bytes-cached", "old-bytes-not-cached"])
def test_a_reader_during_a_smaller_overwrite_gets_the_old_file_whole_or_an_error(emulator, mount_of, cached):
    old = os.urandom(24 * MiB)
    emulator.seed("retrieval", "f.txt", old)
    with mount_of(emulator) as m:
        path = m.path / "retrieval" / "f.txt"
        if cached:
            assert path.read_bytes() == old
        with open(path, "rb", buffering=0) as reader:
            got = reader.read(MiB)
            done = subprocess.run(["sh", "-c", 'echo small > "$1"', "sh", str(path)], capture_output=True)
            assert done.returncode == 0, done.stderr
            wait_for(lambda: landed(emulator, "retrieval", b"small\n") and len(emulator.store.all()) == 1, 30,
                     "the overwrite to land and the old file to be deleted")
            assert subprocess.run(["cat", str(path)], capture_output=True).stdout == b"small\n"
            try:
                while piece := reader.read(MiB):
                    got += piece
            except OSError:
                assert not cached  # only bytes that are gone can fail
            else:
                assert got == old  # never a prefix that ends without an error
        wait_for(lambda: os.stat(path).st_size == 6, 10, "the new size once the old reader closed")
        assert path.read_bytes() == b"small\n"
