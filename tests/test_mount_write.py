"""Writing and deleting through a real mount: cp, mv, rm and Python file I/O against the emulator, with
what landed on the platform checked over its own API."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest
import requests
from mounting import require_fuse, wait_for

from mmfs.emulator import Emulator

pytestmark = pytest.mark.fuse

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def api_list(emu: Emulator, purpose: str) -> list[dict]:
    resp = requests.get(f"{emu.base_url}/v1/files/list", params={"purpose": purpose},
                        headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=30)
    return resp.json()["files"] or []


def api_content(emu: Emulator, file_id) -> bytes:
    resp = requests.get(f"{emu.base_url}/v1/files/retrieve_content", params={"file_id": str(file_id)},
                        headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=60)
    resp.raise_for_status()
    return resp.content


def make_file(path: Path, size: int) -> str:
    with open(path, "wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, MiB))
            out.write(piece)
            left -= len(piece)
    return sha256(path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def test_cp_in_then_back_from_the_platform_after_a_remount_with_an_empty_cache(emulator, mount_of, tmp_path):
    src = tmp_path / "talk.txt"
    digest = make_file(src, 50 * MiB)
    with mount_of(emulator) as m:
        done = run("cp", str(src), str(m.path / "retrieval" / "talk.txt"))
        assert done.returncode == 0, done.stderr
        emulator.reset_counters()
        run("cmp", str(src), str(m.path / "retrieval" / "talk.txt"))
        assert emulator.counters()["download_bytes"] == 0  # served from the spool-seeded cache
        st = os.stat(m.path / "retrieval" / "talk.txt")
        assert st.st_size == 50 * MiB
    files = api_list(emulator, "retrieval")
    assert [f["filename"] for f in files] == ["talk.txt"]  # exactly one new file
    assert files[0]["bytes"] == 50 * MiB
    fresh = mount_of(emulator, cache_dir=tmp_path / "empty-cache", state_dir=tmp_path / "empty-state",
                     root=tmp_path / "second")
    with fresh as m:
        done = run("cmp", str(src), str(m.path / "retrieval" / "talk.txt"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert emulator.counters()["download_bytes"] >= 50 * MiB  # these bytes came from the platform
    assert sha256(src) == digest


@pytest.mark.parametrize(
    ("purpose", "name", "size", "expected_errno", "message"),
    [
        ("voice_clone", "notes.exe", 1000, errno.EINVAL, "Invalid argument"),
        ("voice_clone", "long.wav", 21_000_000, errno.EFBIG, "File too large"),
        ("t2a_async", "speech.tar", 1000, errno.EACCES, "Permission denied"),
    ],
)
def test_refused_uploads_fail_where_the_user_sees_them(emulator, mount_of, tmp_path, purpose, name, size,
                                                       expected_errno, message):
    src = tmp_path / name
    digest = make_file(src, size)
    with mount_of(emulator) as m:
        emulator.reset_counters()
        done = run("cp", str(src), str(m.path / purpose / name))
        assert done.returncode != 0
        assert message in done.stderr
        with pytest.raises(OSError) as caught, open(m.path / purpose / name, "wb") as f:
            f.write(src.read_bytes())
        assert caught.value.errno == expected_errno
        assert emulator.counters()["requests"]["upload"] == 0  # refused before a byte was sent
        assert emulator.counters()["upload_bytes"] == 0
        assert name not in os.listdir(m.path / purpose)
    assert sha256(src) == digest


def test_a_refusal_at_upload_time_fails_close_with_the_mapped_errno(emulator, mount_of, tmp_path):
    src = tmp_path / "a.txt"
    digest = make_file(src, 10_000)
    with mount_of(emulator, "--retry-deadline", "5") as m:
        emulator.configure(upload_status=1008)  # insufficient balance
        done = run("cp", str(src), str(m.path / "retrieval" / "a.txt"))
        assert done.returncode != 0
        assert "Disk quota exceeded" in done.stderr
    assert sha256(src) == digest
    assert api_list(emulator, "retrieval") == []


@pytest.mark.parametrize("mode", ["error", "ambiguous"])
def test_an_upload_failing_twice_lands_exactly_once(emulator, mount_of, tmp_path, mode):
    src = tmp_path / "voice.wav"
    make_file(src, 3 * MiB)
    with mount_of(emulator) as m:
        emulator.configure(fail_uploads=2, upload_fail_mode=mode)
        done = run("cp", str(src), str(m.path / "voice_clone" / "voice.wav"))
        assert done.returncode == 0, done.stderr
        # An ambiguous failure stored the file: the client finds it in the listing and stops there.
        assert emulator.counters()["faults"]["upload_fail"] == (2 if mode == "error" else 1)
    files = api_list(emulator, "voice_clone")
    assert [f["filename"] for f in files] == ["voice.wav"]
    assert api_content(emulator, files[0]["file_id"]) == src.read_bytes()


def test_overwrite_shows_the_old_or_the_new_bytes_at_every_moment(emulator, mount_of, tmp_path):
    old = os.urandom(6 * MiB)
    emulator.seed("retrieval", "doc.txt", old)
    new_src = tmp_path / "doc.txt"
    make_file(new_src, 5 * MiB + 123)
    new = new_src.read_bytes()
    with mount_of(emulator) as m:
        target = m.path / "retrieval" / "doc.txt"
        assert target.read_bytes() == old
        emulator.configure(latency=0.3)  # a slow platform: the overwrite takes a while
        seen: list[str] = []
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                try:
                    data = target.read_bytes()
                except FileNotFoundError:
                    seen.append("missing")
                    continue
                except OSError as exc:  # recorded, not raised: a reader thread that died would see no more
                    seen.append(f"error {errno.errorcode.get(exc.errno, exc.errno)}")
                    continue
                seen.append("old" if data == old else "new" if data == new else f"mix of {len(data)} bytes")

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            done = run("cp", str(new_src), str(target))
        finally:
            stop.set()
            thread.join(timeout=60)
        emulator.configure(latency=0)
        assert done.returncode == 0, done.stderr
        assert set(seen) <= {"old", "new"}, sorted(set(seen))
        assert "old" in seen
        assert target.read_bytes() == new
    files = api_list(emulator, "retrieval")
    assert len(files) == 1 and files[0]["bytes"] == len(new)  # the old file_id was deleted after


def test_rm_deletes_on_the_platform_and_a_vanished_file_is_enoent(emulator, mount_of):
    record = emulator.seed("prompt_audio", "hi.wav", os.urandom(5000))
    other = emulator.seed("prompt_audio", "bye.wav", os.urandom(5000))
    with mount_of(emulator) as m:
        done = run("rm", str(m.path / "prompt_audio" / "hi.wav"))
        assert done.returncode == 0, done.stderr
        assert [f["file_id"] for f in api_list(emulator, "prompt_audio")] == [other["file_id"]]
        assert "hi.wav" not in os.listdir(m.path / "prompt_audio")
        # Deleted behind the mount's back: rm says it is not there, and nothing crashes.
        requests.post(f"{emulator.base_url}/v1/files/delete", json={"file_id": other["file_id"],
                      "purpose": "prompt_audio"}, headers={"Authorization": f"Bearer {emulator.api_key}"}, timeout=30)
        with pytest.raises(FileNotFoundError):
            os.unlink(m.path / "prompt_audio" / "bye.wav")
    assert record["file_id"] != other["file_id"]


def test_mv_into_out_of_and_within_the_mount(emulator, mount_of, tmp_path):
    src = tmp_path / "in.txt"
    data = os.urandom(200_000)
    src.write_bytes(data)
    with mount_of(emulator) as m:
        done = run("mv", str(src), str(m.path / "t2a_async_input" / "in.txt"))
        assert done.returncode == 0, done.stderr
        assert not src.exists()
        # Between purposes too, a rename is a copy under the new name, then a delete of the old file.
        os.rename(m.path / "t2a_async_input" / "in.txt", m.path / "retrieval" / "in.txt")
        assert api_list(emulator, "t2a_async_input") == []
        done = run("mv", str(m.path / "retrieval" / "in.txt"), str(m.path / "retrieval" / "moved.txt"))
        assert done.returncode == 0, done.stderr
        done = run("mv", str(m.path / "retrieval" / "moved.txt"), str(m.path / "retrieval" / "in.txt"))
        assert done.returncode == 0, done.stderr
        assert (m.path / "retrieval" / "in.txt").read_bytes() == data
        done = run("mv", str(m.path / "retrieval" / "in.txt"), str(tmp_path / "out.txt"))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out.txt").read_bytes() == data
    assert api_list(emulator, "t2a_async_input") == [] and api_list(emulator, "retrieval") == []


def test_operations_the_platform_cannot_do_fail_clearly(emulator, mount_of):
    emulator.seed("retrieval", "x.txt", b"hello")
    with mount_of(emulator) as m:
        f = m.path / "retrieval" / "x.txt"
        cases = {
            "mkdir": lambda: os.mkdir(m.path / "retrieval" / "sub"),
            "rmdir": lambda: os.rmdir(m.path / "retrieval"),
            "symlink": lambda: os.symlink("x.txt", m.path / "retrieval" / "y.txt"),
        }
        for what, call in cases.items():
            with pytest.raises(OSError) as caught:
                call()
            assert caught.value.errno in (errno.EPERM, errno.ENOTSUP, errno.ENOTEMPTY), what
        # A hard link is a copy: a stored file's bytes never change under its id, so it behaves as one.
        os.link(f, m.path / "retrieval" / "z.txt")
        assert (m.path / "retrieval" / "z.txt").read_bytes() == b"hello"
        assert sorted(r["filename"] for r in api_list(emulator, "retrieval")) == ["x.txt", "z.txt"]


def test_truncate_and_utimens_on_a_file_being_written(emulator, mount_of):
    with mount_of(emulator) as m:
        path = m.path / "t2a_async_input" / "draft.txt"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.write(fd, b"0123456789" * 1000)
            os.ftruncate(fd, 25)
            os.utime(fd, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
            assert os.fstat(fd).st_size == 25
            assert os.stat(path).st_mtime == 1_700_000_000
        finally:
            os.close(fd)
        assert path.read_bytes() == (b"0123456789" * 3)[:25]
    [record] = api_list(emulator, "t2a_async_input")
    assert api_content(emulator, record["file_id"]) == (b"0123456789" * 3)[:25]


def test_read_only_mount_refuses_every_change(emulator, mount_of, tmp_path):
    emulator.seed("retrieval", "keep.txt", b"keep me")
    src = tmp_path / "new.txt"
    src.write_bytes(b"new")
    with mount_of(emulator, "--read-only") as m:
        for call in (lambda: (m.path / "retrieval" / "new.txt").write_bytes(b"x"),
                     lambda: os.unlink(m.path / "retrieval" / "keep.txt")):
            with pytest.raises(OSError) as caught:
                call()
            assert caught.value.errno == errno.EROFS
        assert os.stat(m.path / "retrieval" / "keep.txt").st_mode & 0o222 == 0
    assert [f["filename"] for f in api_list(emulator, "retrieval")] == ["keep.txt"]


# -- everyday tools, checked on the platform -------------------------------------------------------------

def sh(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **env))


def platform_files(emu: Emulator) -> dict[tuple[str, str], bytes]:
    """(purpose, name) -> bytes of every file on the platform, checking no name is there twice."""
    files = emu.store.all()
    keys = [(f.purpose, f.filename) for f in files]
    assert len(keys) == len(set(keys)), f"a name landed twice: {sorted(keys)}"
    return {(f.purpose, f.filename): emu.store.blob_path(f.file_id).read_bytes() for f in files}


def assert_cache_is_the_platforms(emu: Emulator, m) -> None:
    """After unmount: every cached block of every id is that id's bytes on the platform."""
    from mmfs.blocks.sparse import SparseStore
    from mmfs.blocks.store import block_key
    from mmfs.settings.config import MountConfig

    config = MountConfig(mountpoint=m.path, api_key=emu.api_key, base_url=emu.base_url, cache_dir=m.cache_dir)
    store = SparseStore(config.blocks_dir, config.cache_size)
    try:
        for stored in emu.store.all():
            data = emu.store.blob_path(stored.file_id).read_bytes()
            for index in range(0, max(1, -(-len(data) // config.block_size))):
                block = store.get(block_key(str(stored.file_id), config.block_size, index))
                if block is not None:
                    start = index * config.block_size
                    assert bytes(block) == data[start:start + config.block_size], (stored.filename, index)
    finally:
        store.close()


def assert_landed(emu: Emulator, m, expected: dict[tuple[str, str], bytes]) -> None:
    """The platform holds exactly ``expected``: one file per name, these bytes, nothing empty, no temp name;
    and the mount's cache holds only the platform's bytes."""
    assert platform_files(emu) == expected
    assert all(expected.values()), "an empty file reached the platform"
    assert_cache_is_the_platforms(emu, m)
    assert list((m.cache_dir).rglob("spool/*")) == []


def test_shell_redirection_append_and_cat(emulator, mount_of, tmp_path):
    emulator.seed("t2a_async_input", "existing.txt", b"old content\n")
    emulator.seed("t2a_async_input", "log.txt", b"line 1\n")
    take = tmp_path / "take.wav"
    take_bytes = os.urandom(3 * MiB)
    take.write_bytes(take_bytes)
    with mount_of(emulator) as m:
        folder = m.path / "t2a_async_input"
        for command in (f"echo hello > {folder}/a.txt", f"echo new > {folder}/existing.txt",
                        f"echo 'line 2' >> {folder}/log.txt", f"cat {take} > {m.path}/voice_clone/b.wav"):
            done = sh(command)
            assert done.returncode == 0, (command, done.stderr)
        assert (folder / "a.txt").read_bytes() == b"hello\n"
        assert (folder / "log.txt").read_bytes() == b"line 1\nline 2\n"
        assert emulator.counters()["requests"]["upload"] == 4
    assert_landed(emulator, m, {("t2a_async_input", "a.txt"): b"hello\n",
                                ("t2a_async_input", "existing.txt"): b"new\n",
                                ("t2a_async_input", "log.txt"): b"line 1\nline 2\n",
                                ("voice_clone", "b.wav"): take_bytes})


def test_dd_sed_vim_and_python_atomic_saves(emulator, mount_of, tmp_path):
    emulator.seed("retrieval", "f.txt", b"a cat and a hat\n")
    emulator.seed("retrieval", "v.txt", b"a vim file\n")
    src = tmp_path / "src.wav"
    data = os.urandom(5 * MiB + 17)
    src.write_bytes(data)
    with mount_of(emulator) as m:
        folder = m.path / "retrieval"
        for command in (f"dd if={src} of={m.path}/voice_clone/d.wav bs=1M status=none",
                        f"sed -i s/a/b/g {folder}/f.txt",
                        f"vim -u NONE -i NONE -Es -c '%s/a/A/g' -c wq {folder}/v.txt"):
            done = sh(command)
            assert done.returncode == 0, (command, done.stderr)
        # Python's atomic save: a temporary file beside the target (tempfile's name has no extension)
        script = ("import os, sys, tempfile\n"
                  "fd, tmp = tempfile.mkstemp(dir=sys.argv[1])\n"
                  "os.write(fd, b'saved atomically'); os.fsync(fd); os.close(fd)\n"
                  "os.replace(tmp, os.path.join(sys.argv[1], 'py.txt'))\n")
        done = run(sys_executable(), "-c", script, str(folder))
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(folder)) == ["f.txt", "py.txt", "v.txt"]
    assert_landed(emulator, m, {("voice_clone", "d.wav"): data,
                                ("retrieval", "f.txt"): b"b cbt bnd b hbt\n",
                                ("retrieval", "v.txt"): b"A vim file\n",
                                ("retrieval", "py.txt"): b"saved atomically"})


def sys_executable() -> str:
    import sys

    return sys.executable


@pytest.mark.parametrize("flags", [[], ["-a"]])
def test_rsync_default_and_archive(emulator, mount_of, tmp_path, flags):
    emulator.seed("t2a_async_input", "one.txt", b"older")
    src = tmp_path / "src"
    src.mkdir()
    (src / "one.txt").write_bytes(b"one, newer")
    (src / "two.txt").write_bytes(os.urandom(2 * MiB))
    with mount_of(emulator) as m:
        done = run("rsync", *flags, f"{src}/one.txt", f"{src}/two.txt", f"{m.path}/t2a_async_input/")
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(m.path / "t2a_async_input")) == ["one.txt", "two.txt"]
    assert_landed(emulator, m, {("t2a_async_input", "one.txt"): b"one, newer",
                                ("t2a_async_input", "two.txt"): (src / "two.txt").read_bytes()})


def test_cp_a_cp_p_mv_and_tar_x_exit_zero(emulator, mount_of, tmp_path):
    files = {name: os.urandom(100_000 + i) for i, name in enumerate(["a.txt", "p.txt", "m.txt", "t1.txt", "t2.txt"])}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    run("tar", "-cf", str(tmp_path / "in.tar"), "-C", str(tmp_path), "t1.txt", "t2.txt")
    with mount_of(emulator) as m:
        folder = m.path / "retrieval"
        for cmd in (["cp", "-a", str(tmp_path / "a.txt"), str(folder)],
                    ["cp", "-p", str(tmp_path / "p.txt"), str(folder)],
                    ["mv", str(tmp_path / "m.txt"), str(folder)],
                    ["tar", "-xf", str(tmp_path / "in.tar"), "-C", str(folder)],
                    ["touch", str(folder / "a.txt")],
                    ["chmod", "600", str(folder / "a.txt")]):
            done = run(*cmd)
            assert done.returncode == 0, (cmd, done.stderr)
        assert not (tmp_path / "m.txt").exists()
    assert_landed(emulator, m, {("retrieval", name): data for name, data in files.items()})


def test_two_descriptors_and_a_reader_of_a_file_being_written(emulator, mount_of):
    a, b = os.urandom(4 * MiB), os.urandom(6 * MiB)
    with mount_of(emulator) as m:
        path = m.path / "retrieval" / "two.txt"
        first = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        second = os.open(path, os.O_WRONLY)
        os.write(first, a)
        with open(path, "rb") as reader:  # a read-only open and close of a file being written
            assert reader.read() == a
        os.close(first)
        assert emulator.counters()["requests"]["upload"] == 0
        os.pwrite(second, b, 0)
        os.close(second)
        assert emulator.counters()["requests"]["upload"] == 1
        assert path.read_bytes() == b
    assert_landed(emulator, m, {("retrieval", "two.txt"): b})


def test_a_failed_copy_in_uploads_nothing(emulator, mount_of):
    old = os.urandom(12 * MiB)
    emulator.seed("retrieval", "big.txt", old)
    with mount_of(emulator, "--retry-deadline", "2") as m:
        emulator.configure(fail_download_every=1)
        with pytest.raises(OSError) as caught, open(m.path / "retrieval" / "big.txt", "r+b") as f:
            with contextlib.suppress(OSError):
                f.read(10)  # the copy-in fails: the read is EIO
            f.seek(0, os.SEEK_END)
            f.write(b"X")
        assert caught.value.errno == errno.EIO
        emulator.configure(fail_download_every=0)
    assert emulator.counters()["requests"]["upload"] == 0
    assert platform_files(emulator) == {("retrieval", "big.txt"): old}


def test_a_killed_mount_leaves_nothing_unaccounted(emulator, mount_of, tmp_path):
    with mount_of(emulator) as m:
        f = open(m.path / "voice_clone" / "cut.wav", "wb")  # noqa: SIM115 - left open on purpose
        f.write(os.urandom(3 * MiB))
        f.flush()
        m.proc.send_signal(9)
        m.proc.wait(timeout=30)
        with pytest.raises(OSError):
            f.close()
    again = mount_of(emulator, root=tmp_path)
    with again:
        wait_for(lambda: "cut.wav" in again.log() and "was cut" in again.log(), 30, "the recovery log line")
    kept = [p for p in again.cache_dir.rglob("failed-uploads/*") if p.suffix != ".json"]
    assert len(kept) == 1 and kept[0].stat().st_size == 3 * MiB and str(kept[0]) in again.log()
    assert list(again.cache_dir.rglob("spool/*")) == []
    assert platform_files(emulator) == {}
