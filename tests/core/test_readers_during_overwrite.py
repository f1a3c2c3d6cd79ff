"""A reader that opened a file before an overwrite landed reads the old file whole (or fails), never the
old bytes cut at the new file's size: the kernel keeps one size per path and clamps cached reads at it."""

from __future__ import annotations

import errno
import os

import pytest

from core.tools import close, read_all, shell_redirect

OLD = os.urandom(300_000)  # several blocks


def read_rest(core, fh: int, offset: int) -> bytes:
    pieces = []
    while piece := core.fs.read(fh, offset, 128 << 10):
        pieces.append(piece)
        offset += len(piece)
    return b"".join(pieces)


def test_a_reader_of_the_old_file_keeps_its_size_and_bytes_after_a_smaller_overwrite_lands(core):
    core.emu.seed("retrieval", "f.txt", OLD)
    assert read_all(core.fs, "/retrieval/f.txt") == OLD  # in the cache: its blocks outlive the delete
    told: list[str] = []
    core.fs.invalidate = told.append
    old = core.fs.open("/retrieval/f.txt", os.O_RDONLY)
    first = core.fs.read(old.fh, 0, 1000)
    shell_redirect(core.fs, "/retrieval/f.txt", b"new\n")  # lands, and deletes the old file
    assert core.platform("retrieval") == {"f.txt": b"new\n"}
    # The kernel asks again after the landing; it must not learn a size that would end the old reader early.
    assert core.fs.getattr("/retrieval/f.txt").size == len(OLD)
    # A reader opening now gets the new file, with reads the kernel neither clamps nor caches.
    new = core.fs.open("/retrieval/f.txt", os.O_RDONLY)
    assert new.direct_io and not new.keep_cache
    assert read_rest(core, new.fh, 0) == b"new\n"
    close(core.fs, new.fh)
    assert first + read_rest(core, old.fh, len(first)) == OLD
    told.clear()
    close(core.fs, old.fh)
    assert told == ["/retrieval/f.txt"]  # the old size and pages go with the last old reader
    assert core.fs.getattr("/retrieval/f.txt").size == 4
    assert read_all(core.fs, "/retrieval/f.txt") == b"new\n"
    again = core.fs.open("/retrieval/f.txt", os.O_RDONLY)
    assert not again.direct_io  # back to cached reads
    close(core.fs, again.fh)


def test_a_path_nobody_reads_shows_the_new_size_at_once(core):
    core.emu.seed("retrieval", "g.txt", OLD)
    assert read_all(core.fs, "/retrieval/g.txt") == OLD  # opened and closed before the overwrite
    shell_redirect(core.fs, "/retrieval/g.txt", b"new\n")
    assert core.fs.getattr("/retrieval/g.txt").size == 4


def test_a_reader_whose_old_bytes_are_gone_gets_an_error_not_a_shorter_file(core):
    core.emu.seed("retrieval", "h.txt", OLD)
    old = core.fs.open("/retrieval/h.txt", os.O_RDONLY)
    first = core.fs.read(old.fh, 0, 1000)  # the rest is neither cached nor, once deleted, on the platform
    shell_redirect(core.fs, "/retrieval/h.txt", b"new\n")
    assert core.fs.getattr("/retrieval/h.txt").size == len(OLD)
    with pytest.raises(OSError) as failed:
        read_rest(core, old.fh, len(first))
    assert failed.value.errno in (errno.ENOENT, errno.EIO)
    close(core.fs, old.fh)
    assert core.fs.getattr("/retrieval/h.txt").size == 4


def test_after_rm_or_a_rename_over_it_the_path_shows_its_own_size_at_once(core):
    from core.tools import atomic_save

    core.emu.seed("retrieval", "r.txt", OLD)
    core.emu.seed("retrieval", "s.txt", OLD)
    readers = [core.fs.open(f"/retrieval/{n}", os.O_RDONLY) for n in ("r.txt", "s.txt")]
    core.fs.unlink("/retrieval/r.txt")  # the kernel gives a new r.txt a new inode: its size is its own
    shell_redirect(core.fs, "/retrieval/r.txt", b"new\n")
    atomic_save(core.fs, "/retrieval/s.txt", b"saved\n")  # a rename over s.txt: likewise
    assert core.fs.getattr("/retrieval/r.txt").size == 4
    assert core.fs.getattr("/retrieval/s.txt").size == 6
    for opened in readers:
        close(core.fs, opened.fh)
