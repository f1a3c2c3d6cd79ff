"""What the kernel is told and what a delete means while a file is on its way up: a landed overwrite makes
the kernel drop the attributes it cached of the path (its size was the old file's while the new bytes were
written), and ``rm`` during an upload deletes what landed."""

from __future__ import annotations

import threading

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
