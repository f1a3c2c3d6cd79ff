"""The block cache under faults, over a real mount: deleted or corrupted while mounted, it is rebuilt and
reads go on (from the network meanwhile); its folder never grows past --cache-size; a failed store leaves
no file behind. What each read fetched is counted at the emulator."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mounting import Mounted, require_fuse, wait_for

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def folder_size(path: Path) -> int:
    """Bytes on disk under ``path``, as du counts them (files and folders); 0 while it is being removed."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def blocks_dirs(cache_dir: Path) -> list[Path]:
    return list(cache_dir.glob("*/blocks"))


def downloaded(emulator, file_id) -> int:
    return sum(d["end"] - d["start"] for d in emulator.counters()["downloads"] if d["file_id"] == str(file_id))


def seed(emulator, count: int, size: int) -> list[tuple[str, bytes]]:
    files = []
    for i in range(count):
        data = os.urandom(size)
        record = emulator.seed("retrieval", f"f{i}.bin", data)
        files.append((str(record["file_id"]), data))
    return files


def healthy_db(blocks: Path) -> bool:
    try:
        with sqlite3.connect(blocks / "cache.db") as db:
            return db.execute("SELECT count(*) FROM Cache").fetchone()[0] >= 0
    except sqlite3.Error:
        return False


def _check_heal(emulator, mount_of, break_cache) -> None:
    files = seed(emulator, 3, 6 * MiB)
    with mount_of(emulator) as m:
        folder = m.path / "retrieval"
        assert (folder / "f0.bin").read_bytes() == files[0][1]
        (blocks,) = blocks_dirs(m.cache_dir)
        assert healthy_db(blocks)
        break_cache(m.cache_dir, blocks)
        # Reads after the breakage: right bytes, never EIO.
        assert (folder / "f1.bin").read_bytes() == files[1][1]
        assert (folder / "f2.bin").read_bytes() == files[2][1]
        wait_for(lambda: healthy_db(blocks), 10, "the cache to be rebuilt")
        assert (folder / "f2.bin").read_bytes() == files[2][1]
        assert "rebuilding" in m.log()
    emulator.reset_counters()
    with mount_of(emulator) as m:  # a fresh process and page cache: what the healed cache holds is served
        assert (m.path / "retrieval" / "f2.bin").read_bytes() == files[2][1]
        assert downloaded(emulator, files[2][0]) < len(files[2][1])


def test_cache_folder_deleted_under_a_live_mount_is_rebuilt(emulator, mount_of):
    require_fuse()
    _check_heal(emulator, mount_of, lambda cache_dir, blocks: shutil.rmtree(cache_dir))


def test_corrupt_cache_database_is_rebuilt(emulator, mount_of):
    require_fuse()

    def corrupt(cache_dir: Path, blocks: Path) -> None:
        with open(blocks / "cache.db", "r+b") as db:  # in place: open connections see it too
            db.write(os.urandom(8192))
        for journal in ("cache.db-wal", "cache.db-shm"):
            (blocks / journal).unlink(missing_ok=True)

    _check_heal(emulator, mount_of, corrupt)


def test_cache_folder_never_exceeds_cache_size(emulator, mount_of):
    require_fuse()
    limit = 16 * MiB
    files = seed(emulator, 5, 10 * MiB)
    with mount_of(emulator, "--cache-size", "16M") as m:
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, folder_size(m.cache_dir))
                time.sleep(0.001)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for round_ in range(2):
                for i, (_, data) in enumerate(files):
                    with open(m.path / "retrieval" / f"f{i}.bin", "rb") as f:
                        assert f.read() == data, round_
        finally:
            done.set()
            sampler.join()
        peak = max(peak, folder_size(m.cache_dir))
        print(f"cache folder peak {peak / MiB:.2f} MiB with --cache-size 16M")
        assert peak <= limit
        # It did cache: the bound is not met by storing nothing. The peak, not the end: stores running in
        # parallel each make room for the others first, so how much stays at the end depends on timing.
        assert peak > limit // 2
        [blocks] = m.cache_dir.glob("*/blocks")
        assert folder_size(blocks) > 4 * MiB  # and at least the last block read stays


class _FileSizeLimited(Mounted):
    """A mount whose process may not write a file past 2 MiB: every 4 MiB block store fails midway."""

    def argv(self) -> list[str]:
        return ["prlimit", f"--fsize={2 * MiB}", "--", *super().argv()]


def test_failed_block_stores_leave_no_files(emulator, tmp_path):
    require_fuse()
    ((file_id, data),) = seed(emulator, 1, 10 * MiB)
    with _FileSizeLimited(emulator.base_url, emulator.api_key, tmp_path) as m:
        assert (m.path / "retrieval" / "f0.bin").read_bytes() == data
        assert downloaded(emulator, file_id) >= len(data)
        (blocks,) = blocks_dirs(m.cache_dir)
        # A store may still be failing when the read returns (blocks are served from memory first). What a
        # failed store wrote of a block is punched out of the file's sparse file again: no disk held.
        wait_for(lambda: "could not store block" in m.log() and not list(blocks.rglob("*.val"))
                 and sum(p.stat().st_blocks for p in blocks.rglob("*.data")) == 0, 15, "no partial block left")


def _mmfs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmfs", *args], capture_output=True, text=True, timeout=120)


def test_cache_folder_deleted_with_pinned_files_keeps_status_pin_and_cache_working(emulator, mount_of):
    """``rm -rf`` of the cache under a mount with pins: the control commands that count and clear the cache
    heal it like a read does, instead of answering "internal error"."""
    require_fuse()
    files = seed(emulator, 3, 3 * MiB)
    with mount_of(emulator) as m:
        folder = m.path / "retrieval"
        assert _mmfs("pin", "-q", str(folder / "f0.bin")).returncode == 0
        assert (folder / "f1.bin").read_bytes() == files[1][1]
        shutil.rmtree(m.cache_dir)
        for args in (["pin", "-q", str(folder / "f2.bin")], ["unpin", "-q", str(folder / "f0.bin")],
                     ["status", str(m.path)], ["status", str(m.path), "--json"], ["cache", "info", str(m.path)],
                     ["pin", "-q", str(folder / "f0.bin")], ["cache", "clear", str(m.path)],
                     ["status", str(m.path), "--prometheus"]):
            done = _mmfs(*args)
            assert done.returncode == 0 and "internal error" not in done.stderr, (args, done.stderr)
        assert (folder / "f0.bin").read_bytes() == files[0][1]
        assert (folder / "f2.bin").read_bytes() == files[2][1]
        done = _mmfs("unpin", "-q", str(folder / "f1.bin"))  # never pinned: not counted as unpinned
        assert done.returncode == 0 and "unpinned 0 files" in done.stdout and "1 was not pinned" in done.stdout
        assert "Traceback" not in m.log()
