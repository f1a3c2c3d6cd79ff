"""What the kernel is told and what a delete means while a file is on its way up: a landed overwrite makes
the kernel drop the attributes it cached of the path (its size was the old file's while the new bytes were
written), ``rm`` during an upload deletes what landed, and a create the kernel sends for a name that
exists after all opens that file."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from core.tools import close, copy_in, exists, open_for_writing, read_all, rsync, shell_redirect, write_all


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


def test_an_append_descriptor_writes_at_the_end_whatever_offset_the_kernel_sends(core):
    # `exec 3> f; echo a >&3; echo b >> f` on a stored file: the kernel computes the O_APPEND offset from
    # the size it holds, the stored file's (22) while the replacement is written; POSIX says the end.
    core.emu.seed("t2a_async_input", "ap.txt", b"long old content here\n")
    first = open_for_writing(core.fs, "/t2a_async_input/ap.txt", truncate=True)
    core.fs.write(first, b"a\n", 0)
    appender = core.fs.open("/t2a_async_input/ap.txt", os.O_WRONLY | os.O_APPEND).fh
    kernel_size = core.fs.getattr("/t2a_async_input/ap.txt").size
    assert core.fs.write(appender, b"b\n", kernel_size) == 2
    close(core.fs, appender)
    close(core.fs, first)
    assert core.platform("t2a_async_input") == {"ap.txt": b"a\nb\n"}


def test_an_edit_in_place_shows_its_new_size_so_seek_end_finds_the_end(core):
    # Python: open(f, 'r+b'); f.truncate(3); f.seek(0, SEEK_END); f.write(b'XY'): the kernel takes SEEK_END
    # from the size the truncate's reply carried.
    core.emu.seed("t2a_async_input", "tr.txt", b"0123456789")
    fh = core.fs.open("/t2a_async_input/tr.txt", os.O_RDWR).fh
    core.fs.truncate("/t2a_async_input/tr.txt", 3)
    end = core.fs.getattr("/t2a_async_input/tr.txt").size
    assert end == 3
    core.fs.write(fh, b"XY", end)
    close(core.fs, fh)
    assert core.platform("t2a_async_input") == {"tr.txt": b"012XY"}


def test_a_stored_file_emptied_by_its_descriptor_shows_the_writers_own_size(core):
    # open(f, O_RDWR); ftruncate(fd, 0); write 100 bytes; fstat(fd): an ftruncate carries its descriptor
    # (an O_TRUNC open's truncate does not), and is an edit in place: the size is the writer's at once.
    core.emu.seed("t2a_async_input", "ft.txt", b"old bytes " * 50)
    fh = core.fs.open("/t2a_async_input/ft.txt", os.O_RDWR).fh
    core.fs.truncate("/t2a_async_input/ft.txt", 0, fh=fh)
    assert core.fs.getattr("/t2a_async_input/ft.txt").size == 0
    write_all(core.fs, fh, b"n" * 100)
    assert core.fs.getattr("/t2a_async_input/ft.txt").size == 100
    close(core.fs, fh)
    assert core.platform("t2a_async_input") == {"ft.txt": b"n" * 100}


def test_a_refused_edit_stays_local_and_the_path_shows_it(core):
    # The platform refuses the edited bytes for good: they stay in the mount, under the name, with the
    # reason; the stored file stays on the platform until an edit lands.
    core.emu.seed("t2a_async_input", "keep.txt", b"precious")
    fh = core.fs.open("/t2a_async_input/keep.txt", os.O_RDWR).fh
    core.fs.write(fh, b"more", 8)  # an edit in place: the path shows its size, 12
    assert core.fs.getattr("/t2a_async_input/keep.txt").size == 12
    core.emu.configure(upload_status=1008)  # and the platform refuses it
    with pytest.raises(OSError) as caught:
        close(core.fs, fh)
    assert caught.value.errno == errno.EDQUOT
    core.emu.configure(upload_status=0)
    assert core.fs.getattr("/t2a_async_input/keep.txt").size == 12
    assert read_all(core.fs, "/t2a_async_input/keep.txt") == b"preciousmore"
    assert core.fs.xattrs("/t2a_async_input/keep.txt")["user.mmfs.state"].startswith(b"refused: insufficient")
    assert core.platform("t2a_async_input") == {"keep.txt": b"precious"}


def test_a_stored_file_emptied_then_appended_to_holds_only_the_appended_bytes(core):
    # A script's `: > log` then `echo x >> log`: the empty file cannot be uploaded, but the next write
    # starts from it, not from the stored bytes.
    core.emu.seed("t2a_async_input", "log.txt", b"old content\n")
    shell_redirect(core.fs, "/t2a_async_input/log.txt", b"")
    assert core.uploads() == 0 and core.platform("t2a_async_input") == {"log.txt": b"old content\n"}
    shell_redirect(core.fs, "/t2a_async_input/log.txt", b"x\n", append=True)
    assert core.platform("t2a_async_input") == {"log.txt": b"x\n"}


def test_truncate_by_path_of_a_file_nobody_has_open_uploads_it_at_once(core):
    # `touch new.txt` then Python's os.truncate('new.txt', 5): a setattr with no descriptor, so no close
    # will ever come to upload it.
    close(core.fs, core.fs.create("/t2a_async_input/tt.txt").fh)
    core.fs.truncate("/t2a_async_input/tt.txt", 5)
    assert core.platform("t2a_async_input") == {"tt.txt": bytes(5)}
    assert core.fs.getattr("/t2a_async_input/tt.txt").size == 5
    assert core.fs.readdir("/t2a_async_input") == ["tt.txt"]


def test_a_file_opened_for_writing_by_its_id_is_refused(core):
    # /.by-id is read-only: writing there would replace the named file under a new id, and the path
    # written to would vanish at once.
    stored = core.emu.seed("t2a_async_input", "v.txt", b"stored")
    path = f"/.by-id/{stored['file_id']}"
    with pytest.raises(OSError) as caught:
        core.fs.open(path, os.O_WRONLY)
    assert caught.value.errno == errno.EACCES
    assert core.fs.getattr(path).mode & 0o222 == 0
    assert core.platform("t2a_async_input") == {"v.txt": b"stored"}
