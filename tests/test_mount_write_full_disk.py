"""A real full disk (a small tmpfs holding the cache and state folders) under a real mount: evicting cached
blocks gives their space back even when the mount had their files open, and a write the disk refused
(the program was told ENOSPC) leaves no partial copy behind to keep the disk full for the next write."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mounting import require_fuse, wait_for

pytestmark = pytest.mark.fuse

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


@pytest.fixture
def small_disk(tmp_path: Path):
    def make(size_mib: int) -> Path:
        folder = tmp_path / "small-disk"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        made.append(folder)
        return folder

    made: list[Path] = []
    yield make
    for folder in made:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def used(folder: Path) -> int:
    return shutil.disk_usage(folder).used


def landed(emulator, purpose: str) -> dict[str, bytes]:
    return {f.filename: emulator.store.blob_path(f.file_id).read_bytes()
            for f in emulator.store.all() if f.purpose == purpose}


def test_evicted_blocks_give_their_space_back_to_a_write_even_while_their_files_were_open(
        emulator, mount_of, tmp_path, small_disk):
    disk = small_disk(64)
    old = os.urandom(36 * MiB)
    emulator.seed("retrieval", "old.txt", old)
    args = ("--cache-size", "1G", "--min-free-space", "1M")
    where = {"cache_dir": disk / "cache", "state_dir": disk / "state"}
    with mount_of(emulator, *args, **where) as m:
        assert (m.path / "retrieval" / "old.txt").read_bytes() == old
    assert used(disk) > 34 * MiB  # the blocks are on the small disk
    new = os.urandom(40 * MiB)
    (tmp_path / "new.txt").write_bytes(new)
    with mount_of(emulator, *args, **where) as m:
        # Read from the disk this time: the mount holds the block files open to hand libfuse their fds.
        assert (m.path / "retrieval" / "old.txt").read_bytes() == old
        done = subprocess.run(["cp", str(tmp_path / "new.txt"), str(m.path / "retrieval" / "new.txt")],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr + m.log()[-3000:]
    assert landed(emulator, "retrieval") == {"old.txt": old, "new.txt": new}


def test_a_write_the_full_disk_refused_keeps_no_partial_copy_and_the_next_write_fits(
        emulator, mount_of, tmp_path, small_disk):
    disk = small_disk(32)
    (tmp_path / "huge.txt").write_bytes(os.urandom(48 * MiB))
    (tmp_path / "small.txt").write_bytes(b"fits\n" * 1000)
    with mount_of(emulator, "--min-free-space", "1M", cache_dir=disk / "cache", state_dir=disk / "state") as m:
        before = used(disk)
        done = subprocess.run(["cp", str(tmp_path / "huge.txt"), str(m.path / "retrieval" / "huge.txt")],
                              capture_output=True, text=True)
        assert done.returncode != 0 and "No space left on device" in done.stderr
        wait_for(lambda: not (m.path / "retrieval" / "huge.txt").exists(), 10, "the refused file to go")
        failed = list((m.cache_dir).rglob("failed-uploads/*"))
        assert failed == []  # cp was told; a partial copy would only keep the disk full
        assert used(disk) < before + 2 * MiB
        done = subprocess.run(["cp", str(tmp_path / "small.txt"), str(m.path / "retrieval" / "small.txt")],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert landed(emulator, "retrieval") == {"small.txt": b"fits\n" * 1000}
