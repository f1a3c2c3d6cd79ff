"""The write sequences of everyday tools, on new and existing files: the platform ends with exactly one
file per name holding exactly the bytes written, no temporary names, no empty files, and a cache holding
only the platform's bytes."""

from __future__ import annotations

import errno
import os

import pytest

from core.tools import atomic_save, copy_in, exists, read_all, rsync, sed_in_place, shell_redirect
from mmfs.errors import MmfsError


def landed_alone(core, purpose: str, name: str, data: bytes) -> None:
    assert core.platform(purpose) == {name: data}
    assert read_all(core.fs, f"/{purpose}/{name}") == data
    assert core.assert_cache_matches_platform() >= 0
    assert core.spool_files() == []
    assert core.failed_uploads() == []


def test_shell_redirect_into_a_new_file_uploads_once_after_the_write(core):
    shell_redirect(core.fs, "/t2a_async_input/a.txt", b"hello\n")
    landed_alone(core, "t2a_async_input", "a.txt", b"hello\n")
    assert core.uploads() == 1  # the dup2/close flush of the empty file uploaded nothing


def test_shell_redirect_over_an_existing_file_replaces_it(core):
    core.emu.seed("t2a_async_input", "old.txt", b"old content\n")
    shell_redirect(core.fs, "/t2a_async_input/old.txt", b"new\n")
    landed_alone(core, "t2a_async_input", "old.txt", b"new\n")


def test_shell_append_copies_the_old_bytes_in_then_adds(core):
    core.emu.seed("t2a_async_input", "log.txt", b"line 1\n")
    shell_redirect(core.fs, "/t2a_async_input/log.txt", b"line 2\n", append=True)
    shell_redirect(core.fs, "/t2a_async_input/log.txt", b"line 3\n", append=True)
    landed_alone(core, "t2a_async_input", "log.txt", b"line 1\nline 2\nline 3\n")


@pytest.mark.parametrize("existing", [False, True])
def test_cat_and_dd_into_voice_clone(core, existing):
    data = os.urandom(700_000)
    if existing:
        core.emu.seed("voice_clone", "b.wav", os.urandom(300_000))
    copy_in(core.fs, "/voice_clone/b.wav", data)
    landed_alone(core, "voice_clone", "b.wav", data)
    assert core.assert_cache_matches_platform() == 11  # every block seeded from the upload, none stale


def test_sed_in_place_goes_through_a_scratch_file_and_a_rename(core):
    core.emu.seed("retrieval", "f.txt", b"a cat and a hat\n")
    sed_in_place(core.fs, "/retrieval/f.txt", b"a", b"b")
    landed_alone(core, "retrieval", "f.txt", b"b cbt bnd b hbt\n")
    assert "sedAb12Cd" not in core.fs.readdir("/retrieval")


@pytest.mark.parametrize("archive", [False, True])
@pytest.mark.parametrize("existing", [False, True])
def test_rsync_temp_then_rename(core, archive, existing):
    data = os.urandom(200_000)
    if existing:
        core.emu.seed("t2a_async_input", "f.txt", b"older")
    rsync(core.fs, "/t2a_async_input/f.txt", data, archive=archive)
    landed_alone(core, "t2a_async_input", "f.txt", data)
    assert core.uploads() == 1


@pytest.mark.parametrize("suffix", [".tmp", ".part", "~", ".swp"])
def test_an_atomic_save_lands_under_the_real_name_only(core, suffix):
    core.emu.seed("retrieval", "notes.txt", b"v1")
    atomic_save(core.fs, "/retrieval/notes.txt", b"v2 is longer", suffix=suffix)
    landed_alone(core, "retrieval", "notes.txt", b"v2 is longer")


def test_cp_a_sets_owner_times_and_mode_without_error(core):
    data = os.urandom(150_000)
    copy_in(core.fs, "/prompt_audio/x.mp3", data, preserve=True)
    landed_alone(core, "prompt_audio", "x.mp3", data)
    core.fs.accept_metadata("/prompt_audio/x.mp3")  # chmod/chown of the stored file: accepted, no effect
    core.fs.utimens("/prompt_audio/x.mp3", 1_600_000_000 * 10**9)
    assert core.platform("prompt_audio") == {"x.mp3": data}


def test_metadata_calls_on_a_missing_path_are_enoent(core):
    with pytest.raises(OSError) as caught:
        core.fs.accept_metadata("/retrieval/nothing.txt")
    assert caught.value.errno == errno.ENOENT


def test_a_refused_upload_fails_the_close_with_the_platforms_errno_and_stays_local(core):
    core.emu.configure(upload_status=1008)  # insufficient balance
    with pytest.raises(MmfsError) as caught:
        copy_in(core.fs, "/retrieval/r.txt", b"some bytes")
    assert caught.value.errno == errno.EDQUOT
    core.emu.configure(upload_status=0)
    assert core.platform("retrieval") == {}
    assert read_all(core.fs, "/retrieval/r.txt") == b"some bytes"  # local, under its name, with the reason
    [local] = core.fs.local_files()
    assert local["path"] == "/retrieval/r.txt" and local["state"] == "refused"
    assert "insufficient balance" in local["reason"]
    assert core.failed_uploads() == []
    assert not exists(core.fs, "/retrieval/nothing.txt")
