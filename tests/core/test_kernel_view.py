"""What the kernel is told and what a delete means while a file is on its way up: a landed overwrite makes
the kernel drop the attributes it cached of the path (its size was the old file's while the new bytes were
written), ``rm`` during an upload deletes what landed, and a create the kernel sends for a name that
exists after all opens that file."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from core.tools import close, copy_in, exists, open_for_writing, rsync, write_all


def test_a_landed_overwrite_tells_the_kernel_to_drop_the_paths_attributes(core):
    core.emu.seed("retrieval", "p.txt", b"short")
    told: list[str] = []
    core.fs.invalidate = told.append
    # cp -p onto a stored file: writes, then fchmod/futimens (whose replies carry the old file's size,
    # which the kernel then keeps for its attribute timeout), then close.
    copy_in(core.fs, "/retrieval/p.txt", b"a much longer new content", preserve=True)
    assert told == ["/retrieval/p.txt"]
    assert core.fs.getattr("/retrieval/p.txt").size == len(b"a much longer new content")
    rsync(core.fs, "/retrieval/p.txt", b"rsynced")  # a rename over it lands too
    assert told[-1] == "/retrieval/p.txt"
    assert core.platform("retrieval") == {"p.txt": b"rsynced"}


def test_rm_while_the_upload_is_under_way_deletes_what_landed(core, monkeypatch):
    upload, started, unlinked = core.fs.client.upload, threading.Event(), []

    def slow_upload(*args, **kwargs):
        started.set()
        # rm arrives now, while the platform has not answered; give it the time to get as far as it can.
        remover = threading.Thread(target=lambda: unlinked.append(core.fs.unlink("/retrieval/r.txt")))
        remover.start()
        remover.join(timeout=0.3)
        record = upload(*args, **kwargs)
        threads.append(remover)
        return record

    threads: list[threading.Thread] = []
    monkeypatch.setattr(core.fs.client, "upload", slow_upload)
    fh = open_for_writing(core.fs, "/retrieval/r.txt", truncate=True)
    write_all(core.fs, fh, b"uploading while removed")
    close(core.fs, fh)  # the cp's close: it waits for the platform's answer
    assert started.is_set()
    threads[0].join(timeout=30)
    assert unlinked == [None]  # rm returned without error
    assert core.platform("retrieval") == {}  # what landed was deleted: rm means gone
    assert not exists(core.fs, "/retrieval/r.txt")
    assert "r.txt" not in core.fs.readdir("/retrieval")


def test_a_create_for_a_name_being_written_opens_it_unless_exclusive(core):
    # A create for a name that exists (the kernel's view was older than the file): without O_EXCL that is
    # an open, as on a local disk (with O_TRUNC, truncating); with O_EXCL, EEXIST.
    first = core.fs.create("/retrieval/race.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC).fh
    write_all(core.fs, first, b"first writer's bytes")
    second = core.fs.create("/retrieval/race.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC).fh
    assert core.fs.getattr("/retrieval/race.txt").size == 0
    with pytest.raises(OSError) as caught:
        core.fs.create("/retrieval/race.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert caught.value.errno == errno.EEXIST
    close(core.fs, first)
    write_all(core.fs, second, b"second")
    close(core.fs, second)
    assert core.platform("retrieval") == {"race.txt": b"second"}
    assert core.uploads() == 1


def test_a_create_the_kernel_sends_for_a_stored_name_overwrites_it(core):
    # The kernel sends create for a name it believes missing (a negative entry it cached before the file
    # appeared): the stored file is overwritten, not joined by a second file of the same name.
    core.emu.seed("retrieval", "seen.txt", b"stored")
    assert core.fs.readdir("/retrieval") == ["seen.txt"]
    fh = core.fs.create("/retrieval/seen.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC).fh
    write_all(core.fs, fh, b"new")
    close(core.fs, fh)
    assert core.platform("retrieval") == {"seen.txt": b"new"}
