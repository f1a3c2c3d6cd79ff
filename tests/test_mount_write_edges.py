"""Writes through a real mount where the kernel's sequence matters: what a program reads right after an
overwrite landed, and ``rm`` of a file that is open (being read, or on its way up)."""

from __future__ import annotations

import errno
import os
import subprocess
import threading

import pytest
from mounting import require_fuse, wait_for
from test_mount_write import assert_landed, platform_files, run, sh

pytestmark = pytest.mark.fuse


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def test_a_file_read_at_once_after_its_overwrite_landed_is_the_new_file(emulator, mount_of, tmp_path):
    emulator.seed("t2a_async_input", "p.txt", b"short\n")
    emulator.seed("t2a_async_input", "v.txt", b"original\n")
    emulator.seed("t2a_async_input", "t.txt", b"a\n")
    longer = tmp_path / "p.txt"
    longer.write_bytes(b"a much longer content line\n")
    with mount_of(emulator) as m:
        folder = m.path / "t2a_async_input"
        for name in ("p.txt", "v.txt", "t.txt"):  # the kernel learns each old size
            assert os.stat(folder / name).st_size > 0
        # cp -p and vim write, then set the mode (whose reply carries the size the path shows: the old
        # file's until the new bytes land), then close; truncate -s opens and ftruncates a stored file.
        for command in (f"cp -p {longer} {folder}/p.txt",
                        f"vim -u NONE -i NONE -N -n -c 'normal ihello ' -c wq {folder}/v.txt",
                        f"truncate -s 100 {folder}/t.txt"):
            done = sh(command)
            assert done.returncode == 0, (command, done.stderr)
        assert (folder / "p.txt").read_bytes() == b"a much longer content line\n"
        assert (folder / "v.txt").read_bytes() == b"hello original\n"
        assert os.stat(folder / "t.txt").st_size == 100
        assert (folder / "t.txt").read_bytes() == b"a\n" + bytes(98)
    assert_landed(emulator, m, {("t2a_async_input", "p.txt"): b"a much longer content line\n",
                                ("t2a_async_input", "v.txt"): b"hello original\n",
                                ("t2a_async_input", "t.txt"): b"a\n" + bytes(98)})


def test_rm_of_a_file_being_read_deletes_it_and_the_reader_keeps_what_it_had(emulator, mount_of):
    data = os.urandom(300_000)
    emulator.seed("retrieval", "open.txt", data)
    with mount_of(emulator) as m:
        path = m.path / "retrieval" / "open.txt"
        with open(path, "rb") as reader:
            assert reader.read() == data
            done = run("rm", str(path))
            assert done.returncode == 0, done.stderr
            assert "open.txt" not in os.listdir(m.path / "retrieval")
            reader.seek(0)
            assert reader.read() == data  # cached: as a local disk keeps an unlinked open file
    assert platform_files(emulator) == {}


def test_rm_while_cp_waits_for_its_upload_leaves_nothing_on_the_platform(emulator, mount_of, tmp_path):
    src = tmp_path / "r.txt"
    src.write_bytes(os.urandom(1 << 20))
    with mount_of(emulator) as m:
        target = m.path / "t2a_async_input" / "r.txt"
        os.listdir(target.parent)  # listed before the platform turns slow
        emulator.configure(latency=2)
        copier = subprocess.Popen(["cp", str(src), str(target)], stderr=subprocess.PIPE, text=True)
        wait_for(lambda: "uploading r.txt" in m.log(), 60, "the upload to start")
        removed: list[subprocess.CompletedProcess[str]] = []
        remover = threading.Thread(target=lambda: removed.append(run("rm", str(target))))
        remover.start()
        _, err = copier.communicate(timeout=120)
        remover.join(timeout=120)
        emulator.configure(latency=0)
        assert copier.returncode == 0, err
        assert removed[0].returncode == 0, removed[0].stderr
        assert "r.txt" not in os.listdir(target.parent)
    assert platform_files(emulator) == {}
    assert src.read_bytes()  # the source is untouched



def test_writing_a_name_the_kernel_still_believes_missing_overwrites_the_file_there(emulator, mount_of):
    with mount_of(emulator, "--dir-cache-time", "0") as m:
        target = m.path / "t2a_async_input" / "late.txt"
        assert not target.exists()  # the kernel now keeps a negative entry for a few seconds
        emulator.seed("t2a_async_input", "late.txt", b"uploaded elsewhere\n")
        done = sh(f"echo mine > {target}")  # the kernel sends create, not open
        assert done.returncode == 0, done.stderr
    assert platform_files(emulator) == {("t2a_async_input", "late.txt"): b"mine\n"}


def test_append_and_seek_end_during_an_edit_find_the_files_real_end(emulator, mount_of):
    emulator.seed("t2a_async_input", "ap.txt", b"long old content here\n")
    emulator.seed("t2a_async_input", "tr.txt", b"0123456789")
    with mount_of(emulator) as m:
        folder = m.path / "t2a_async_input"
        # A replacement written on one descriptor and appended to on another (`exec 3> f; ... >> f`).
        first = os.open(folder / "ap.txt", os.O_WRONLY | os.O_TRUNC)
        os.write(first, b"a\n")
        appender = os.open(folder / "ap.txt", os.O_WRONLY | os.O_APPEND)
        os.write(appender, b"b\n")
        os.close(appender)
        os.close(first)
        # An edit in place that shortens the file, then writes at its end.
        with open(folder / "tr.txt", "r+b") as f:
            f.truncate(3)
            f.seek(0, os.SEEK_END)
            assert f.tell() == 3
            f.write(b"XY")
        assert (folder / "ap.txt").read_bytes() == b"a\nb\n"
        assert (folder / "tr.txt").read_bytes() == b"012XY"
    assert_landed(emulator, m, {("t2a_async_input", "ap.txt"): b"a\nb\n",
                                ("t2a_async_input", "tr.txt"): b"012XY"})


def test_a_writer_that_empties_a_stored_file_by_its_descriptor_sees_its_own_size(emulator, mount_of):
    emulator.seed("t2a_async_input", "ft.txt", b"old bytes " * 500)
    with mount_of(emulator) as m:
        path = m.path / "t2a_async_input" / "ft.txt"
        assert path.stat().st_size == 5000  # the kernel holds the stored size before the edit
        fd = os.open(path, os.O_RDWR)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, b"n" * 100)
            assert os.fstat(fd).st_size == 100
            assert path.stat().st_size == 100
            assert os.lseek(fd, 0, os.SEEK_END) == 100
        finally:
            os.close(fd)
        assert path.read_bytes() == b"n" * 100
    assert_landed(emulator, m, {("t2a_async_input", "ft.txt"): b"n" * 100})


def test_install_tee_rsync_inplace_and_partial_and_cp_reflink(emulator, mount_of, tmp_path):
    emulator.seed("retrieval", "inst.txt", b"installed before\n")
    emulator.seed("retrieval", "log.txt", b"first\n")
    emulator.seed("retrieval", "inplace.txt", os.urandom(300_000))
    src = {name: os.urandom(200_000 + i) for i, name in enumerate(["inst.txt", "new.txt", "inplace.txt", "p.txt",
                                                                   "r.txt"])}
    for name, data in src.items():
        (tmp_path / name).write_bytes(data)
    os.utime(tmp_path / "inplace.txt", (1_600_000_000, 1_600_000_000))  # rsync's quick check must not skip it
    with mount_of(emulator) as m:
        folder = m.path / "retrieval"
        for command in (f"install -m 644 {tmp_path}/inst.txt {folder}/inst.txt",
                        f"echo teed | tee {folder}/tee.txt",
                        f"echo second | tee -a {folder}/log.txt",
                        f"rsync --inplace {tmp_path}/new.txt {tmp_path}/inplace.txt {folder}/",
                        f"rsync --partial {tmp_path}/p.txt {folder}/",
                        f"cp --reflink=auto {tmp_path}/r.txt {folder}/r.txt"):
            done = sh(command)
            assert done.returncode == 0, (command, done.stderr)
        for name, data in src.items():
            assert (folder / name).read_bytes() == data, name
    assert_landed(emulator, m, {**{("retrieval", name): data for name, data in src.items()},
                                ("retrieval", "tee.txt"): b"teed\n", ("retrieval", "log.txt"): b"first\nsecond\n"})


def test_a_file_written_after_its_rm_takes_writes_into_nothing_and_uploads_nothing(emulator, mount_of):
    with mount_of(emulator) as m:
        path = m.path / "t2a_async_input" / "gone.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"abc")
            os.unlink(path)
            os.write(fd, b"def")  # as on a local disk: the descriptor still takes bytes
            # With no name left, libfuse cannot ask mmfs about it: fstat and ftruncate are ESTALE, not EIO.
            for call in (lambda: os.fstat(fd), lambda: os.ftruncate(fd, 1)):
                with pytest.raises(OSError) as caught:
                    call()
                assert caught.value.errno == errno.ESTALE
        finally:
            os.close(fd)
        assert "gone.txt" not in os.listdir(path.parent)
    assert platform_files(emulator) == {}
