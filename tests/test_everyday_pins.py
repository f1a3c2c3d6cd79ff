"""Pins that hold: every block of a pinned file is in the pinned store whatever the caches held, checked,
readable with the platform stalled after a remount; pins reported when incomplete or gone, and dropped
offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mounting import require_fuse

pytestmark = pytest.mark.fuse

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _fuse():
    require_fuse()


def mmfs_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "mmfs", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, f"mmfs {' '.join(args)} failed: {done.stdout}{done.stderr}"
    return done


def cache_info(m) -> dict:
    return json.loads(mmfs_cli("cache", "info", str(m.path), "--json").stdout)


def test_a_pin_after_cache_clear_stores_every_block_and_reads_with_the_platform_stalled(emulator, mount_of):
    data = os.urandom(9 * MiB)  # three blocks, the last one short
    emulator.seed("retrieval", "keep.bin", data)
    with mount_of(emulator, "--retry-deadline", "2") as m:
        path = m.path / "retrieval" / "keep.bin"
        assert path.read_bytes() == data  # every block now in the reader's memory and the bounded cache
        mmfs_cli("cache", "clear", str(m.path))
        assert cache_info(m)["cached_blocks"] == 0
        out = mmfs_cli("pin", str(path))
        assert out.stdout.startswith("pinned 1 file (9.0 MiB)")
        info = cache_info(m)
        assert info["pinned_blocks"] == 3 and info["pinned_bytes"] >= len(data)
        assert [(p["path"], p["state"]) for p in info["pins"]] == [("/retrieval/keep.bin", "complete")]

    with mount_of(emulator, "--retry-deadline", "2") as m:
        path = m.path / "retrieval" / "keep.bin"
        os.stat(path)  # the listing, fetched while online
        emulator.reset_counters()
        emulator.configure(stall=True)
        try:
            assert path.read_bytes() == data
            # Dropping a pin needs neither the platform nor a listing.
            out = mmfs_cli("unpin", str(m.path / "retrieval"))
            assert out.stdout.startswith("unpinned 1 file (9.0 MiB)")
            assert cache_info(m)["pinned"] == {}
        finally:
            emulator.configure(stall=False)
        assert emulator.counters()["downloads"] == []


def test_pins_incomplete_or_gone_from_the_platform_are_reported_and_unpinned(emulator, mount_of):
    data = os.urandom(5 * MiB)
    record = emulator.seed("retrieval", "doomed.bin", data)
    with mount_of(emulator, "--retry-deadline", "2") as m:
        mmfs_cli("pin", str(m.path / "retrieval" / "doomed.bin"))
        # A block lost from the pinned folder (a disk error, a hand in the folder): status says so.
        (pinned_file,) = [p for p in m.cache_dir.rglob("*.data") if "pinned" in p.parts]
        assert pinned_file.stat().st_size == len(data)  # both blocks, in the file's one sparse file
        os.truncate(pinned_file, 4 * MiB)  # the second block lost
        status = mmfs_cli("status", str(m.path)).stdout
        assert "/retrieval/doomed.bin: incomplete: 1 of 2 blocks (pin it again)" in status, status
        # Pinned again, it is whole again.
        mmfs_cli("pin", str(m.path / "retrieval" / "doomed.bin"))
        assert [p["state"] for p in cache_info(m)["pins"]] == ["complete"]

        # Deleted elsewhere: the pin is shown as gone, and can still be dropped by its path.
        emulator_api_delete(emulator, record)
        mmfs_cli("refresh", str(m.path), "retrieval")
        assert not (m.path / "retrieval" / "doomed.bin").exists()
        text = mmfs_cli("cache", "info", str(m.path)).stdout
        assert "/retrieval/doomed.bin  (file_id" in text and "gone from the platform" in text, text
        assert "gone from the platform" in mmfs_cli("status", str(m.path)).stdout
        out = mmfs_cli("unpin", str(m.path / "retrieval" / "doomed.bin"))
        assert out.stdout.startswith("unpinned 1 file")
        assert cache_info(m)["pinned"] == {}
        again = mmfs_cli("unpin", str(m.path / "retrieval" / "doomed.bin"))
        assert again.stdout.startswith("unpinned 0 files (0 B); 1 was not pinned")


def emulator_api_delete(emu, record: dict) -> None:
    import requests

    resp = requests.post(f"{emu.base_url}/v1/files/delete", json={"file_id": int(record["file_id"]),
                         "purpose": "retrieval"}, headers={"Authorization": f"Bearer {emu.api_key}"}, timeout=30)
    resp.raise_for_status()
    assert resp.json()["base_resp"]["status_code"] == 0


def test_cache_max_age_drops_old_blocks_and_keeps_pinned_ones(emulator, mount_of):
    from mounting import wait_for

    old, kept = os.urandom(5 * MiB), os.urandom(MiB)
    emulator.seed("retrieval", "old.bin", old)
    emulator.seed("retrieval", "kept.bin", kept)
    with mount_of(emulator, "--cache-max-age", "1s") as m:
        mmfs_cli("pin", str(m.path / "retrieval" / "kept.bin"))
        assert (m.path / "retrieval" / "old.bin").read_bytes() == old
        wait_for(lambda: cache_info(m)["cached_blocks"] >= 1, 10, "the blocks to reach the disk cache")
        wait_for(lambda: cache_info(m)["cached_blocks"] == 0, 15, "the old blocks to expire")
        assert "blocks older than 1 s dropped" in m.log()
        info = cache_info(m)
        assert info["pinned_blocks"] == 1 and [p["state"] for p in info["pins"]] == ["complete"]
