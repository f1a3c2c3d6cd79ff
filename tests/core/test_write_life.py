"""A file's write life: several descriptors, readers of a file being written, empty files, a failed
copy-in, scratch names and renames."""

from __future__ import annotations

import errno
import os

import pytest

from core.tools import atomic_save, close, copy_in, exists, open_for_writing, read_all, write_all


def test_two_descriptors_the_last_writers_close_lands_the_final_bytes_once(core):
    a, b = os.urandom(300_000), os.urandom(500_000)
    first = core.fs.create("/retrieval/two.txt").fh
    second = core.fs.open("/retrieval/two.txt", os.O_WRONLY).fh
    write_all(core.fs, first, a)
    close(core.fs, first)  # the other descriptor still writes: nothing uploads yet
    assert core.uploads() == 0
    write_all(core.fs, second, b)
    close(core.fs, second)
    assert core.uploads() == 1
    assert core.platform("retrieval") == {"two.txt": b}
    assert core.assert_cache_matches_platform() == 8


def test_written_again_at_once_after_landing_the_cache_keeps_what_each_id_had(core):
    a, b = os.urandom(400_000), os.urandom(400_000)
    writer = core.fs.create("/retrieval/v.txt").fh
    reader = core.fs.open("/retrieval/v.txt", os.O_RDONLY).fh
    write_all(core.fs, writer, a)
    close(core.fs, writer)  # lands version a; the reader keeps the file in the table
    first_id = {f.filename: f.file_id for f in core.emu.store.all()}["v.txt"]
    writer = core.fs.open("/retrieval/v.txt", os.O_WRONLY).fh
    write_all(core.fs, writer, b)  # a new spool: the sealed one, being seeded, is never written
    assert core.assert_cache_matches_platform() >= 0
    close(core.fs, writer)
    close(core.fs, reader)
    assert core.platform("retrieval") == {"v.txt": b}
    assert core.emu.store.get(first_id) is None  # the first version was replaced
    assert core.assert_cache_matches_platform() == 7


def test_a_read_only_open_of_a_file_being_written_never_uploads(core):
    writer = core.fs.create("/retrieval/half.txt").fh
    write_all(core.fs, writer, b"first half ")
    assert read_all(core.fs, "/retrieval/half.txt") == b"first half "
    assert core.uploads() == 0
    write_all(core.fs, writer, b"second half", offset=11)
    close(core.fs, writer)
    assert core.uploads() == 1
    assert core.platform("retrieval") == {"half.txt": b"first half second half"}


def test_touch_makes_an_empty_local_file_that_uploads_once_it_has_bytes(core):
    fh = core.fs.create("/t2a_async_input/new.txt").fh
    core.fs.utimens("/t2a_async_input/new.txt", None)
    close(core.fs, fh)
    assert core.uploads() == 0
    assert core.fs.getattr("/t2a_async_input/new.txt").size == 0
    assert "new.txt" in core.fs.readdir("/t2a_async_input")
    fh = open_for_writing(core.fs, "/t2a_async_input/new.txt", truncate=False, append=True)
    core.fs.write(fh, b"now\n", 0)
    close(core.fs, fh)
    assert core.platform("t2a_async_input") == {"new.txt": b"now\n"}


def test_truncating_a_stored_file_to_nothing_leaves_it_as_it_was(core):
    core.emu.seed("retrieval", "keep.txt", b"precious")
    fh = open_for_writing(core.fs, "/retrieval/keep.txt", truncate=True)
    close(core.fs, fh)
    assert core.uploads() == 0
    assert core.platform("retrieval") == {"keep.txt": b"precious"}
    assert read_all(core.fs, "/retrieval/keep.txt") == b"precious"


def test_a_failed_copy_in_fails_the_write_and_uploads_nothing(core):
    old = os.urandom(12 << 20)
    core.emu.seed("retrieval", "big.txt", old)
    core.emu.configure(fail_download_every=1)  # every download fails: the old bytes cannot be had
    fh = core.fs.open("/retrieval/big.txt", os.O_RDWR).fh
    with pytest.raises(OSError) as caught:
        core.fs.read(fh, 0, 4096)
    assert caught.value.errno == errno.EIO
    with pytest.raises(OSError) as caught:
        core.fs.write(fh, b"X", 12 << 20)
    assert caught.value.errno == errno.EIO
    with pytest.raises(OSError) as caught:
        close(core.fs, fh)
    assert caught.value.errno == errno.EIO
    core.emu.configure(fail_download_every=0)
    assert core.uploads() == 0
    assert core.platform("retrieval") == {"big.txt": old}
    assert core.failed_uploads() == []  # nothing the program wrote was accepted: nothing to keep


def test_a_write_past_the_size_limit_poisons_the_file(core):
    fh = core.fs.create("/voice_clone/long.wav").fh
    with pytest.raises(OSError) as caught:
        core.fs.write(fh, b"x", 20_000_000)
    assert caught.value.errno == errno.EFBIG
    with pytest.raises(OSError) as caught:
        close(core.fs, fh)
    assert caught.value.errno == errno.EFBIG
    assert core.uploads() == 0 and not exists(core.fs, "/voice_clone/long.wav")


def test_a_refused_write_is_out_of_the_folder_when_its_close_returns(core):
    # The kernel answers close(2) after FLUSH and sends RELEASE later: an ``ls`` right after a failed
    # ``cp`` comes between the two.
    old = os.urandom(1000)
    core.emu.seed("voice_clone", "kept.wav", old)
    for name in ("long.wav", "kept.wav"):
        fh = open_for_writing(core.fs, f"/voice_clone/{name}", truncate=True)
        with pytest.raises(OSError) as caught:
            core.fs.write(fh, b"x", 20_000_000)
        assert caught.value.errno == errno.EFBIG
        with pytest.raises(OSError):
            core.fs.flush(fh)
        assert core.fs.readdir("/voice_clone") == ["kept.wav"]
        assert core.fs.getattr("/voice_clone/kept.wav").size == 1000  # the stored file shows again
        core.fs.release(fh)
    assert core.uploads() == 0 and core.platform("voice_clone") == {"kept.wav": old}


# -- scratch names and renames ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [".f.txt.Ab12Cd", "sedAb12Cd", ".f.txt.swp", "f.txt~", "lu1234.tmp", "f.part",
                                  "4913", "#f.txt#"])
def test_a_scratch_file_is_local_readable_and_never_uploaded(core, name):
    path = f"/voice_clone/{name}"
    fh = core.fs.create(path).fh
    write_all(core.fs, fh, b"scratch bytes")
    close(core.fs, fh)
    assert name in core.fs.readdir("/voice_clone")
    assert read_all(core.fs, path) == b"scratch bytes"
    core.fs.unlink(path)
    assert not exists(core.fs, path)
    assert core.uploads() == 0 and core.spool_files() == []


def test_a_name_the_purpose_refuses_fails_at_create_and_stays_local_at_rename(core):
    for name in ("x.exe", "notes.txt"):
        with pytest.raises(OSError) as caught:
            core.fs.create(f"/voice_clone/{name}")
        assert caught.value.errno == errno.EINVAL
    fh = core.fs.create("/voice_clone/.take.tmp").fh
    write_all(core.fs, fh, b"RIFF")
    close(core.fs, fh)
    core.fs.rename("/voice_clone/.take.tmp", "/voice_clone/take.txt")  # a rename is local: it succeeds
    assert not exists(core.fs, "/voice_clone/.take.tmp") and read_all(core.fs, "/voice_clone/take.txt") == b"RIFF"
    assert core.fs.xattrs("/voice_clone/take.txt")["user.mmfs.state"].startswith(
        b"refused: the platform takes only .m4a, .mp3, .wav files in voice_clone")
    assert core.uploads() == 0
    core.fs.rename("/voice_clone/take.txt", "/voice_clone/take.wav")  # an uploadable name: it lands
    assert core.platform("voice_clone") == {"take.wav": b"RIFF"} and core.fs.local_files() == []

def test_renaming_a_stored_file_copies_it_under_the_new_name_then_deletes_the_old(core):
    old = os.urandom(300_000)
    core.emu.seed("retrieval", "s.txt", old)
    core.fs.rename("/retrieval/s.txt", "/retrieval/t.txt")
    assert core.platform("retrieval") == {"t.txt": old}
    assert not exists(core.fs, "/retrieval/s.txt") and read_all(core.fs, "/retrieval/t.txt") == old
    with pytest.raises(OSError) as caught:
        core.fs.rename("/retrieval/missing.txt", "/retrieval/u.txt")
    assert caught.value.errno == errno.ENOENT


def test_renaming_a_stored_file_to_a_backup_name_keeps_it_local_and_deletes_the_old_id(core):
    # sed -i.bak, cp -b, mv -b: the old file moves to a name that never uploads; the new bytes land.
    core.emu.seed("retrieval", "doc.txt", b"version 1")
    core.fs.rename("/retrieval/doc.txt", "/retrieval/doc.txt.bak")
    atomic_save(core.fs, "/retrieval/doc.txt", b"version 2")
    assert core.platform("retrieval") == {"doc.txt": b"version 2"}
    assert read_all(core.fs, "/retrieval/doc.txt.bak") == b"version 1"
    assert sorted(core.fs.readdir("/retrieval")) == ["doc.txt", "doc.txt.bak"]

def test_a_rename_whose_upload_is_refused_stays_local_under_the_new_name(core):
    core.emu.seed("retrieval", "doc.txt", b"old")
    fh = core.fs.create("/retrieval/doc.txt.tmp").fh
    write_all(core.fs, fh, b"new bytes")
    close(core.fs, fh)
    core.emu.configure(upload_status=1008)
    core.fs.rename("/retrieval/doc.txt.tmp", "/retrieval/doc.txt")  # local, as on a disk
    core.emu.configure(upload_status=0)
    assert read_all(core.fs, "/retrieval/doc.txt") == b"new bytes"  # the name shows the new bytes
    assert not exists(core.fs, "/retrieval/doc.txt.tmp")
    assert core.platform("retrieval") == {"doc.txt": b"old"}
    [local] = core.fs.retry("/retrieval/doc.txt")  # `mmfs retry`: it lands, and replaces the old file
    assert local["state"] == "landed" and core.fs.local_files() == []
    assert core.platform("retrieval") == {"doc.txt": b"new bytes"}

def test_a_file_renamed_while_still_open_uploads_at_its_last_close(core):
    fh = core.fs.create("/retrieval/.draft").fh
    write_all(core.fs, fh, b"part one, ")
    core.fs.rename("/retrieval/.draft", "/retrieval/final.txt")
    assert core.uploads() == 0
    core.fs.write(fh, b"part two", 10)
    close(core.fs, fh)
    assert core.platform("retrieval") == {"final.txt": b"part one, part two"}


def test_deleting_an_empty_or_scratch_file_touches_nothing_on_the_platform(core):
    copy_in(core.fs, "/retrieval/kept.txt", b"kept")
    fh = core.fs.create("/retrieval/empty.txt").fh
    close(core.fs, fh)
    core.fs.unlink("/retrieval/empty.txt")
    assert core.emu.counters()["requests"]["delete"] == 0
    assert core.platform("retrieval") == {"kept.txt": b"kept"}


def test_a_write_refused_by_a_full_disk_keeps_no_partial_copy(core, monkeypatch):
    import mmfs.core.spool

    fh = core.fs.create("/retrieval/big.txt").fh
    write_all(core.fs, fh, b"a" * 100_000)
    real_pwrite = os.pwrite

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mmfs.core.spool.os, "pwrite", full)
    with pytest.raises(OSError) as caught:
        core.fs.write(fh, b"b" * 1000, 100_000)
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.setattr(mmfs.core.spool.os, "pwrite", real_pwrite)
    with pytest.raises(OSError) as caught:
        close(core.fs, fh)
    assert caught.value.errno == errno.ENOSPC
    assert core.uploads() == 0
    # The program was told: a copy of what it wrote before would only keep the full disk full.
    assert core.failed_uploads() == []
    assert core.spool_files() == []


def test_a_full_disk_evicts_cached_blocks_before_failing_a_spool_write(core, monkeypatch):
    import mmfs.core.spool

    copy_in(core.fs, "/retrieval/cached.txt", os.urandom(500_000))
    assert core.assert_cache_matches_platform() == 8
    real_pwrite = os.pwrite
    calls = []

    def full_once(fd, data, offset):
        calls.append(len(data))
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(mmfs.core.spool.os, "pwrite", full_once)
    copy_in(core.fs, "/retrieval/next.txt", b"fits after eviction")
    monkeypatch.setattr(mmfs.core.spool.os, "pwrite", real_pwrite)
    assert core.platform("retrieval")["next.txt"] == b"fits after eviction"
    assert core.assert_cache_matches_platform() < 8  # blocks went to make room


def test_below_the_free_space_margin_a_spool_write_evicts_blocks_first(emu, tmp_path):
    from core.harness import Core

    for stored in emu.store.all():
        emu.store.delete(stored.file_id)
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    core = Core(emu, tmp_path, min_free_space=free + (1 << 30))  # always short of the margin
    try:
        copy_in(core.fs, "/retrieval/one.txt", os.urandom(300_000))
        assert core.assert_cache_matches_platform() == 5
        copy_in(core.fs, "/retrieval/two.txt", b"x")
        assert core.assert_cache_matches_platform() <= 1  # the margin pushed out the first file's blocks
        assert set(core.platform("retrieval")) == {"one.txt", "two.txt"}
    finally:
        core.fs.destroy()


def test_unmount_keeps_open_files_as_cut_and_local_files_for_the_next_mount(core):
    open_fh = core.fs.create("/retrieval/open.txt").fh
    write_all(core.fs, open_fh, b"half of it")
    scratch = core.fs.create("/retrieval/.left.tmp").fh
    write_all(core.fs, scratch, b"temporary")
    close(core.fs, scratch)
    empty = core.fs.create("/retrieval/empty.txt").fh
    close(core.fs, empty)
    core.fs.destroy()
    kept = {p.name.split("-", 3)[-1]: p for p in core.failed_uploads()}
    assert sorted(kept) == ["open.txt"]
    assert kept["open.txt"].read_bytes() == b"half of it"
    assert '"complete": false' in kept["open.txt"].with_name(kept["open.txt"].name + ".json").read_text()
    assert core.uploads() == 0
    core.fs = core.reopen().fs  # the fixture destroys this one
    core.fs.recover()
    assert read_all(core.fs, "/retrieval/.left.tmp") == b"temporary"
    assert core.fs.getattr("/retrieval/empty.txt").size == 0
    assert sorted(core.fs.readdir("/retrieval")) == [".left.tmp", "empty.txt"]
    assert core.uploads() == 0

def test_deleting_a_file_while_its_overwrite_is_written_deletes_it_and_drops_the_overwrite(core):
    core.emu.seed("retrieval", "gone.txt", b"stored")
    fh = open_for_writing(core.fs, "/retrieval/gone.txt", truncate=True)
    write_all(core.fs, fh, b"never to land")
    core.fs.unlink("/retrieval/gone.txt")
    close(core.fs, fh)
    assert core.platform("retrieval") == {} and core.uploads() == 0
    assert not exists(core.fs, "/retrieval/gone.txt")


def test_truncating_a_stored_file_without_opening_it_is_eperm(core):
    core.emu.seed("retrieval", "t.txt", b"stored")
    with pytest.raises(OSError) as caught:
        core.fs.truncate("/retrieval/t.txt", 2)
    assert caught.value.errno == errno.EPERM
