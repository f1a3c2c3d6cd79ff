"""Hostile names through a real mount, written by real programs (sh, cp, tar, rsync) as raw bytes: each
lands as one platform file, lists back as exactly the bytes written, and writing it again replaces that
file instead of adding one. The platform's final state is read through the emulator's own store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from mounting import require_fuse

from mmfs.emulator import Emulator
from mmfs.tree.platform_names import to_platform

pytestmark = pytest.mark.fuse

NAMES = [
    b"r\xe9sum\xe9.txt",  # Latin-1
    b'x"y.txt',
    b"x%22y.txt",
    b"new\nline.txt",
    b"tab\there.txt",
    b"\xe2\x80\xaegnp.txt",  # RIGHT-TO-LEFT OVERRIDE
    b"back\\slash.txt",
    b"\xe2\x80\x9bquoted.txt",  # the encoding's own quote character
    b"\xef\xbc\x82fullwidth.txt",  # the look-alike of '"'
]


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def run(*cmd: str | bytes, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, capture_output=True, timeout=300, cwd=cwd)


def platform(emu: Emulator, purpose: str) -> dict[bytes, bytes]:
    """mount name (as bytes) -> content of every platform file in ``purpose``; one file per filename."""
    files = [f for f in emu.store.all() if f.purpose == purpose]
    filenames = [f.filename for f in files]
    assert len(filenames) == len(set(filenames)), f"one file per name expected: {sorted(filenames)}"
    shown = {}
    for f in files:
        raw = next(_candidates(f.filename))
        shown[raw] = emu.store.blob_path(f.file_id).read_bytes()
    return shown


def _candidates(filename: str):
    for raw in (*NAMES, *LATIN1, *(b"tree-" + n for n in LATIN1)):
        if to_platform(raw.decode("utf-8", "surrogateescape")) == filename:
            yield raw
    raise AssertionError(f"a platform file under a name nobody wrote: {filename!r}")


def listdir(folder: Path) -> set[bytes]:
    return set(os.listdir(os.fsencode(folder)))


def test_sh_redirection_into_hostile_names_lands_each_as_itself(emulator, mount_of, tmp_path):
    with mount_of(emulator) as m:
        folder = os.fsencode(m.path / "retrieval")
        for i, raw in enumerate(NAMES):
            done = run("sh", "-c", b'printf %s "$1" > "$2"', "sh", b"content %d" % i, folder + b"/" + raw)
            assert done.returncode == 0, (raw, done.stderr)
        assert listdir(m.path / "retrieval") == set(NAMES)
        for i, raw in enumerate(NAMES):
            with open(folder + b"/" + raw, "rb") as f:
                assert f.read() == b"content %d" % i
    assert platform(emulator, "retrieval") == {raw: b"content %d" % i for i, raw in enumerate(NAMES)}
    with mount_of(emulator, cache_dir=tmp_path / "cache2", state_dir=tmp_path / "state2") as fresh:
        assert listdir(fresh.path / "retrieval") == set(NAMES)  # from the platform's listing alone


def test_cp_of_a_quote_and_of_its_percent_escape_makes_two_files(emulator, mount_of, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / 'x"y.txt').write_bytes(b"quote")
    (src / "x%22y.txt").write_bytes(b"escape")
    with mount_of(emulator) as m:
        for name in ('x"y.txt', "x%22y.txt"):
            done = run("cp", str(src / name), str(m.path / "retrieval" / name))
            assert done.returncode == 0, done.stderr
        assert (m.path / "retrieval" / 'x"y.txt').read_bytes() == b"quote"
        assert (m.path / "retrieval" / "x%22y.txt").read_bytes() == b"escape"
    assert platform(emulator, "retrieval") == {b'x"y.txt': b"quote", b"x%22y.txt": b"escape"}
    emulator.configure(whatwg_filenames=True)  # a platform that decodes percent escapes: still two files
    with mount_of(emulator, cache_dir=tmp_path / "cache2", state_dir=tmp_path / "state2") as m:
        run("cp", str(src / 'x"y.txt'), str(m.path / "retrieval" / 'x"y.txt'))
        assert listdir(m.path / "retrieval") == {b'x"y.txt', b"x%22y.txt"}
    assert platform(emulator, "retrieval") == {b'x"y.txt': b"quote", b"x%22y.txt": b"escape"}


LATIN1 = [b"caf\xe9.txt", b"na\xefve \xe0 la carte.txt", b"\xc6sop.txt"]


def test_tar_x_of_latin1_names_then_rsync_twice_uploads_each_file_once(emulator, mount_of, tmp_path):
    src = os.fsencode(tmp_path / "src")
    os.mkdir(src)
    contents = {raw: os.urandom(1000 + i) for i, raw in enumerate(LATIN1)}
    for raw, data in contents.items():
        with open(src + b"/" + raw, "wb") as f:
            f.write(data)
    archive = tmp_path / "latin1.tar"
    assert run("tar", "-cf", str(archive), *LATIN1, cwd=tmp_path / "src").returncode == 0
    with mount_of(emulator) as m:
        folder = os.fsencode(m.path / "retrieval")
        done = run("tar", "-xf", str(archive), "-C", folder)
        assert done.returncode == 0, done.stderr
        assert listdir(m.path / "retrieval") == set(LATIN1)
        # rsync the same files under other names, twice; then once more comparing contents.
        for raw in LATIN1:
            os.rename(src + b"/" + raw, src + b"/tree-" + raw)
        sources = [src + b"/tree-" + raw for raw in LATIN1]
        emulator.reset_counters()
        done = run("rsync", "-a", *sources, folder + b"/")
        assert done.returncode == 0, done.stderr
        assert emulator.counters()["requests"]["upload"] == len(LATIN1)
        # rsync -a sends a file again when its time differs (the platform keeps none, so it does unless
        # both fell in one second): the second copy replaces the first, it never adds one.
        done = run("rsync", "-a", *sources, folder + b"/")
        assert done.returncode == 0, done.stderr
        assert emulator.counters()["requests"]["upload"] <= 2 * len(LATIN1)
        emulator.reset_counters()
        done = run("rsync", "-a", "--checksum", *sources, folder + b"/")
        assert done.returncode == 0, done.stderr
        assert emulator.counters()["requests"]["upload"] == 0  # the names match: nothing is sent again
        assert listdir(m.path / "retrieval") == set(LATIN1) | {b"tree-" + raw for raw in LATIN1}
    expected = {raw: data for raw, data in contents.items()}
    expected |= {b"tree-" + raw: data for raw, data in contents.items()}
    assert platform(emulator, "retrieval") == expected


def test_sed_i_and_mv_keep_hostile_names_exact(emulator, mount_of):
    edited = [b'x"y.txt', b"r\xe9sum\xe9.txt", b"tab\there.txt"]
    with mount_of(emulator) as m:
        folder = os.fsencode(m.path / "retrieval")
        for raw in edited:
            assert run("sh", "-c", b'echo "old words" > "$1"', "sh", folder + b"/" + raw).returncode == 0
            done = run("sed", "-i", "s/old/new/", folder + b"/" + raw)  # a scratch file renamed over it
            assert done.returncode == 0, done.stderr
        # mv within the mount: the platform cannot rename, so mv copies and deletes.
        done = run("mv", folder + b"/" + edited[0], folder + b"/" + b"new\nline.txt")
        assert done.returncode == 0, done.stderr
        assert listdir(m.path / "retrieval") == {b"new\nline.txt", *edited[1:]}
    assert platform(emulator, "retrieval") == {raw: b"new words\n" for raw in [b"new\nline.txt", *edited[1:]]}
