"""Names that round-trip: whatever name a program writes under is the name it lands, lists and reads back
as, on both forms a server may take multipart filenames in (escapes kept or decoded); two names never
become one platform file, and writing a name again replaces its file instead of adding one."""

from __future__ import annotations

import os

import pytest

from core.tools import copy_in, read_all, rsync, shell_redirect
from mmfs.tree.platform_names import to_platform

# Each is a name a Linux program can create, and each was lost, merged or changed on the way before.
HOSTILE = [
    b"r\xe9sum\xe9.txt",  # Latin-1, not UTF-8
    b"\xff\xfe raw bytes.txt",
    b'x"y.txt',
    b"x%22y.txt",  # what a server keeping urllib3's escape stores for the name above
    b"x%0Ay.txt",
    b"new\nline.txt",
    b"car\rriage.txt",
    b"tab\there.txt",
    b"bell\x07 and del\x7f.txt",
    b"\xe2\x80\xaegnp.txt",  # U+202E RIGHT-TO-LEFT OVERRIDE
    b"back\\slash.txt",
    b"C:\\dir\\c.txt",  # a multipart parser keeps only "c.txt" of a Windows path
    b"two\\\\slashes.txt",
    b"\xe2\x80\x9bquoted.txt",  # a literal U+201B, the encoding's quote character
    b"\xef\xbc\x82fullwidth.txt",  # a literal U+FF02, the look-alike of '"'
    b"\xe2\x90\x89picture.txt",  # a literal U+2409, the look-alike of TAB
    b"50%.txt",
    b"100\xef\xbc\x8525.txt",  # a literal U+FF05 before two hex digits
    b" spaced .txt",
]


def mount_name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")  # what mfusepy hands the filesystem


@pytest.fixture(params=[False, True], ids=["escapes-kept", "escapes-decoded"])
def platform_form(request, core):
    core.emu.configure(whatwg_filenames=request.param)
    return request.param


def platform_names(core, purpose: str) -> list[str]:
    return sorted(f.filename for f in core.emu.store.all() if f.purpose == purpose)


def test_every_name_a_program_can_write_lands_and_lists_back_as_exactly_that_name(core, platform_form):
    contents = {mount_name(raw): os.urandom(100 + i) for i, raw in enumerate(HOSTILE)}
    for name, data in contents.items():
        shell_redirect(core.fs, f"/retrieval/{name}", data)
    assert core.failed_uploads() == []
    # One platform file per name, none lost or merged, each under the name's encoding.
    assert platform_names(core, "retrieval") == sorted(to_platform(n) for n in contents)
    stored = {f.filename: core.emu.store.blob_path(f.file_id).read_bytes() for f in core.emu.store.all()}
    assert stored == {to_platform(n): data for n, data in contents.items()}
    # Listed back as the very names written, by this mount and by a fresh one that only has the listing.
    assert set(core.fs.readdir("/retrieval")) >= set(contents)
    again = core.reopen()
    try:
        listed = set(again.fs.readdir("/retrieval")) - {".", ".."}
        assert listed == set(contents)
        for name, data in contents.items():
            assert read_all(again.fs, f"/retrieval/{name}") == data
    finally:
        again.fs.destroy()


def test_a_quote_and_its_percent_escape_are_two_files(core, platform_form):
    copy_in(core.fs, '/retrieval/x"y.txt', b"quote")
    copy_in(core.fs, "/retrieval/x%22y.txt", b"escape")
    assert len(platform_names(core, "retrieval")) == 2
    again = core.reopen()
    try:
        assert read_all(again.fs, '/retrieval/x"y.txt') == b"quote"
        assert read_all(again.fs, "/retrieval/x%22y.txt") == b"escape"
    finally:
        again.fs.destroy()


@pytest.mark.parametrize("raw", [b'x"y.txt', b"r\xe9sum\xe9.txt", b"tab\there.txt", b"\xe2\x80\xaegnp.txt"])
def test_writing_a_name_again_replaces_its_file_instead_of_adding_one(core, raw):
    name = mount_name(raw)
    copy_in(core.fs, f"/retrieval/{name}", b"first")
    fresh = core.reopen()  # the second copy meets the name only through the platform's listing
    try:
        copy_in(fresh.fs, f"/retrieval/{name}", b"second")
        rsync(fresh.fs, f"/retrieval/{name}", b"third", archive=True)
        assert platform_names(core, "retrieval") == [to_platform(name)]
        assert read_all(fresh.fs, f"/retrieval/{name}") == b"third"
    finally:
        fresh.fs.destroy()


def test_a_name_another_client_gave_keeps_showing_as_before_and_an_overwrite_keeps_that_name(core):
    core.emu.seed("retrieval", "tab\there.txt", b"theirs")  # a raw TAB: shown as its control picture
    core.emu.seed("retrieval", 'say "hi".txt', b"quoted")  # a raw quote, as a client that does not escape sent it
    core.emu.seed("retrieval", "a/b.txt", b"slash")
    listed = set(core.fs.readdir("/retrieval")) - {".", ".."}
    assert listed == {"tab\u2409here.txt", 'say "hi".txt', "a\uff0fb.txt"}
    shell_redirect(core.fs, "/retrieval/tab\u2409here.txt", b"ours")
    shell_redirect(core.fs, '/retrieval/say "hi".txt', b"ours too")
    again = core.reopen()
    try:
        assert set(again.fs.readdir("/retrieval")) - {".", ".."} == listed
        assert read_all(again.fs, "/retrieval/tab\u2409here.txt") == b"ours"
        assert read_all(again.fs, '/retrieval/say "hi".txt') == b"ours too"
        assert len(platform_names(core, "retrieval")) == 3
    finally:
        again.fs.destroy()


def test_overwriting_one_of_two_same_named_files_keeps_the_name_it_was_written_under(core):
    core.emu.seed("retrieval", "same.txt", b"older", created_at=1_700_000_000)
    newer = core.emu.seed("retrieval", "same.txt", b"newer", created_at=1_700_000_100)
    shown = f"same~{newer['file_id']}.txt"
    assert set(core.fs.readdir("/retrieval")) - {".", ".."} == {"same.txt", shown}
    shell_redirect(core.fs, f"/retrieval/{shown}", b"rewritten")
    again = core.reopen()
    try:
        assert set(again.fs.readdir("/retrieval")) - {".", ".."} == {"same.txt", shown}
        assert read_all(again.fs, f"/retrieval/{shown}") == b"rewritten"
        assert read_all(again.fs, "/retrieval/same.txt") == b"older"
    finally:
        again.fs.destroy()
