"""The landed/local model, driven as programs drive it: a file the platform has not taken stays in the tree,
readable and with its state, and lands by itself once it can; overwrites finish (the old id goes, even when
its delete fails at first); nothing deleted elsewhere is served from the cache; renames of stored files,
local-only folders, links, and the times of new files."""

from __future__ import annotations

import errno
import os
import time

import pytest

from core.tools import atomic_save, close, copy_in, exists, read_all, shell_redirect, write_all
from mmfs.blocks.sparse import SparseStore
from mmfs.blocks.store import block_key
from mmfs.errors import TransportError

# What libfuse hands over for utimensat's UTIME_NOW (the seconds 0, the nanoseconds UTIME_NOW).
UTIME_NOW = (1 << 30) - 1


def ids(core, purpose: str) -> dict[str, str]:
    return {f.filename: str(f.file_id) for f in core.emu.store.all() if f.purpose == purpose}


def cached_blocks_of(core, file_id: str) -> int:
    store = SparseStore(core.config.blocks_dir, core.config.cache_size)
    try:
        return sum(store.get(block_key(file_id, 64 << 10, i)) is not None for i in range(64))
    finally:
        store.close()


# -- write-back that never gives up -------------------------------------------------------------------------



def lose_the_next_answer(core, monkeypatch) -> None:
    """The next upload is stored, but its answer never comes (a timeout after the body went out)."""
    real_upload = core.fs.client.upload

    def answer_lost(*args):
        real_upload(*args)
        monkeypatch.setattr(core.fs.client, "upload", real_upload)
        error = TransportError("read timed out")
        error.maybe_landed = True
        raise error

    monkeypatch.setattr(core.fs.client, "upload", answer_lost)

def test_an_upload_that_fails_for_a_while_stays_visible_then_lands_by_itself(core):
    data = os.urandom(200_000)
    core.emu.configure(fail_uploads=1_000_000, upload_fail_mode="error")  # down until switched off
    with pytest.raises(OSError) as caught:
        copy_in(core.fs, "/retrieval/r.txt", data)
    assert caught.value.errno == errno.EIO  # close() tells what the first try learned
    assert read_all(core.fs, "/retrieval/r.txt") == data and "r.txt" in core.fs.readdir("/retrieval")
    [info] = core.fs.local_files()
    assert info["state"] == "retrying" and "unknown error" in info["reason"]
    assert core.fs.xattrs("/retrieval/r.txt")["user.mmfs.state"].startswith(b"retrying: ")
    core.settle()  # tried again in the background: still down
    assert core.platform("retrieval") == {}
    core.emu.configure(fail_uploads=0)
    core.settle()
    assert core.platform("retrieval") == {"r.txt": data}
    assert core.fs.local_files() == [] and core.spool_files() == [] and core.failed_uploads() == []
    assert read_all(core.fs, "/retrieval/r.txt") == data
    assert core.assert_cache_matches_platform() > 0


def test_an_overwrite_that_fails_shows_the_new_bytes_until_it_lands_over_the_old(core):
    core.emu.seed("retrieval", "o.txt", b"old bytes")
    core.emu.configure(fail_uploads=1_000_000, upload_fail_mode="error")
    with pytest.raises(OSError):
        shell_redirect(core.fs, "/retrieval/o.txt", b"new bytes")
    assert read_all(core.fs, "/retrieval/o.txt") == b"new bytes"  # the name is the new file, not the old
    assert core.fs.getattr("/retrieval/o.txt").size == len(b"new bytes")
    core.emu.configure(fail_uploads=0)
    core.settle()
    assert core.platform("retrieval") == {"o.txt": b"new bytes"}


def test_an_answer_that_never_came_lands_exactly_once_after_background_tries(core, monkeypatch):
    # The first upload is stored but its answer is lost after the client's own tries (a timeout after the
    # body went out): the background try finds it in the listing instead of sending it again.
    lose_the_next_answer(core, monkeypatch)
    with pytest.raises(OSError):
        copy_in(core.fs, "/retrieval/a.txt", b"ambiguous")
    assert core.fs.local_files()[0]["state"] == "retrying"
    core.settle()
    assert core.platform("retrieval") == {"a.txt": b"ambiguous"} and core.uploads() == 1  # one file, once
    assert core.fs.local_files() == [] and core.spool_files() == []


@pytest.mark.parametrize("then", ["rm", "mv"])
def test_a_file_whose_answer_never_came_leaves_no_copy_when_deleted_or_renamed(core, monkeypatch, then):
    lose_the_next_answer(core, monkeypatch)
    with pytest.raises(OSError):
        copy_in(core.fs, "/retrieval/x.txt", b"stored unanswered")
    if then == "rm":
        core.fs.unlink("/retrieval/x.txt")
        expected = {}
    else:
        core.fs.rename("/retrieval/x.txt", "/retrieval/y.txt")
        expected = {"y.txt": b"stored unanswered"}
    core.settle()
    assert core.platform("retrieval") == expected  # the unanswered landing under the old name is gone too


def test_a_refusal_keeps_the_file_local_with_the_reason_until_changed_or_retried(core):
    core.emu.configure(upload_status=2056)  # usage limit
    with pytest.raises(OSError) as caught:
        copy_in(core.fs, "/t2a_async_input/q.txt", b"quota")
    assert caught.value.errno == errno.EDQUOT
    core.settle()
    assert core.uploads() == 1  # a refusal is not retried by itself
    [info] = core.fs.local_files()
    assert info["state"] == "refused" and "usage limit" in info["reason"]
    core.emu.configure(upload_status=0)
    shell_redirect(core.fs, "/t2a_async_input/q.txt", b" more", append=True)  # changed: it lands
    assert core.platform("t2a_async_input") == {"q.txt": b"quota more"}


def test_a_short_landing_is_deleted_and_sent_again(core):
    core.emu.configure(short_uploads=1)  # a lenient server keeps a cut body as if whole
    data = os.urandom(300_000)
    copy_in(core.fs, "/retrieval/whole.txt", data)
    assert core.platform("retrieval") == {"whole.txt": data}
    assert core.uploads() == 2 and core.emu.counters()["requests"]["delete"] == 1
    assert core.assert_cache_matches_platform() > 0


# -- overwrites finish --------------------------------------------------------------------------------------


def test_an_old_id_whose_delete_fails_is_hidden_and_deleted_in_the_background(core):
    core.emu.seed("retrieval", "d.txt", b"old")
    old_id = ids(core, "retrieval")["d.txt"]
    core.emu.configure(fail_deletes=1_000_000)
    shell_redirect(core.fs, "/retrieval/d.txt", b"new")  # the landing succeeded: close is fine
    assert read_all(core.fs, "/retrieval/d.txt") == b"new"  # the plain name shows the new bytes
    assert core.fs.readdir("/retrieval") == ["d.txt"]  # and the old one is not shown beside it
    assert len(core.emu.store.all()) == 2
    core.emu.configure(fail_deletes=0)
    core.settle()
    assert core.platform("retrieval") == {"d.txt": b"new"} and core.emu.store.get(int(old_id)) is None
    assert core.spool_files() == []  # the journal of the delete is gone with it


def test_a_file_deleted_elsewhere_goes_with_the_next_listing_and_its_blocks_with_it(core):
    # This mount uploaded it a moment ago; another client deletes it.
    data = os.urandom(200_000)
    copy_in(core.fs, "/retrieval/g.txt", data)
    file_id = ids(core, "retrieval")["g.txt"]
    assert read_all(core.fs, "/retrieval/g.txt") == data and cached_blocks_of(core, file_id) > 0
    core.emu.store.delete(int(file_id))
    core.fs.namespace.refresh(["retrieval"])
    assert not exists(core.fs, "/retrieval/g.txt")
    assert cached_blocks_of(core, file_id) == 0  # no block of a gone id is served
    shell_redirect(core.fs, "/retrieval/g.txt", b"more\n", append=True)  # `echo more >> g.txt`
    assert core.platform("retrieval") == {"g.txt": b"more\n"}  # not the old bytes plus the edit


# -- renames, folders, links, times ------------------------------------------------------------------------


def test_a_temporary_file_with_a_real_extension_replaced_onto_a_stored_file(core):
    # mkstemp(suffix=".txt") + os.replace, NamedTemporaryFile(suffix=".txt"): the temporary name lands
    # at its close, then the rename copies it under the real name and deletes it.
    core.emu.seed("retrieval", "cfg.txt", b"old config")
    atomic_save(core.fs, "/retrieval/cfg.txt", b"new config", suffix=".k3j2l1x9.txt")
    assert core.platform("retrieval") == {"cfg.txt": b"new config"}
    assert sorted(core.fs.readdir("/retrieval")) == ["cfg.txt"]
    assert core.fs.local_files() == []


def test_a_local_hidden_folder_holds_files_until_they_are_renamed_out(core):
    # rsync --delay-updates: mkdir .~tmp~, write the files there, rename each into place, rmdir.
    core.fs.mkdir("/retrieval/.~tmp~")
    for name in ("a.txt", "b.txt"):
        fh = core.fs.create(f"/retrieval/.~tmp~/{name}").fh
        write_all(core.fs, fh, name.encode())
        close(core.fs, fh)
    assert core.uploads() == 0 and sorted(core.fs.readdir("/retrieval/.~tmp~")) == ["a.txt", "b.txt"]
    for name in ("a.txt", "b.txt"):
        core.fs.rename(f"/retrieval/.~tmp~/{name}", f"/retrieval/{name}")
    core.fs.rmdir("/retrieval/.~tmp~")
    assert core.platform("retrieval") == {"a.txt": b"a.txt", "b.txt": b"b.txt"}
    assert sorted(core.fs.readdir("/retrieval")) == ["a.txt", "b.txt"]
    core.fs.mkdir("/retrieval/.git")  # and folders inside one, as git makes them
    core.fs.mkdir("/retrieval/.git/objects")
    fh = core.fs.create("/retrieval/.git/objects/pack.idx").fh
    write_all(core.fs, fh, b"idx")
    close(core.fs, fh)
    assert core.fs.readdir("/retrieval/.git") == ["objects"] and core.uploads() == 2
    with pytest.raises(OSError) as caught:
        core.fs.rmdir("/retrieval/.git")
    assert caught.value.errno == errno.ENOTEMPTY
    for refused in ("/retrieval/visible", "/.hidden", "/retrieval/.a/.b", "/retrieval/a.txt/.b"):
        with pytest.raises(OSError) as caught:
            core.fs.mkdir(refused)
        assert caught.value.errno == errno.EPERM


def test_a_hard_link_is_a_copy_that_keeps_the_old_bytes_when_the_name_is_replaced(core):
    # gawk -i inplace with INPLACE_SUFFIX: link(f, f.bak), write a temporary, rename it over f.
    core.emu.seed("retrieval", "f.txt", b"one")
    core.fs.link("/retrieval/f.txt", "/retrieval/f.txt.bak")
    atomic_save(core.fs, "/retrieval/f.txt", b"two")
    assert read_all(core.fs, "/retrieval/f.txt.bak") == b"one"
    assert core.platform("retrieval") == {"f.txt": b"two"}


def test_touch_of_a_new_file_dates_it_now_and_rm_under_by_id_is_read_only(core):
    fh = core.fs.create("/retrieval/new.txt").fh
    core.fs.utimens("/retrieval/new.txt", UTIME_NOW)  # touch: utimensat(UTIME_NOW) through libfuse
    close(core.fs, fh)
    assert abs(core.fs.getattr("/retrieval/new.txt").mtime_ns / 1e9 - time.time()) < 60
    stored = core.emu.seed("retrieval", "s.txt", b"stored")
    with pytest.raises(OSError) as caught:
        core.fs.unlink(f"/.by-id/{stored['file_id']}")
    assert caught.value.errno == errno.EROFS
    assert core.platform("retrieval") == {"s.txt": b"stored"}
