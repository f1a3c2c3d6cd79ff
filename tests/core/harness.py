"""``FileSystem`` driven directly, no kernel, against the real emulator over loopback HTTP.

``core`` is a filesystem wired as a mount wires it (``build_filesystem``), with small blocks so a few
hundred KiB span several of them. Its helpers read the platform's final state through the emulator's own
store, and check that every block the cache holds is the platform's bytes for that id.
"""

from __future__ import annotations

import time
from pathlib import Path

from mmfs.blocks.arithmetic import block_bounds, block_count
from mmfs.blocks.sparse import SparseStore
from mmfs.blocks.store import block_key
from mmfs.core.fs import FileSystem
from mmfs.emulator import Emulator
from mmfs.runtime.mount import build_filesystem
from mmfs.settings.config import MountConfig

BLOCK = 64 << 10


class Core:
    def __init__(self, emu: Emulator, root: Path, **settings) -> None:
        self.emu = emu
        self.root = root
        self.config = MountConfig(mountpoint=root / "mnt", api_key=emu.api_key, base_url=emu.base_url,
                                  cache_dir=root / "cache", state_dir=root / "state", block_size=BLOCK,
                                  retry_deadline=3.0, **settings)
        self.fs: FileSystem = build_filesystem(self.config)

    def die(self) -> None:
        """Stop as a killed mount stops: nothing is cleaned up or written; spools and journal stay as they are
        (their descriptors close, as the kernel closes a dead process's)."""
        self.fs.write_back.close(wait=30.0)  # a dead process runs nothing more: let a running try end first
        for pending in self.fs._pending.all():
            pending.release_spool()

    def settle(self, timeout: float = 30.0) -> None:
        """Let the background write-back try everything waiting now, and wait until it has."""
        self.fs.write_back.now()
        assert self.fs.write_back.idle(timeout), "the write-back did not settle"

    def reopen(self, **settings) -> Core:
        """A new mount on the same cache and state folders (after this one stopped or died)."""
        return Core(self.emu, self.root, **settings)

    # -- the platform, as the emulator stores it ---------------------------------------------------------

    def platform(self, purpose: str) -> dict[str, bytes]:
        """name -> bytes of every file the platform holds in ``purpose`` (names must be unique)."""
        files = [f for f in self.emu.store.all() if f.purpose == purpose]
        names = [f.filename for f in files]
        assert len(names) == len(set(names)), f"one file per name expected, got {sorted(names)}"
        return {f.filename: self.emu.store.blob_path(f.file_id).read_bytes() for f in files}

    def uploads(self) -> int:
        return self.emu.counters()["requests"]["upload"]

    def failed_uploads(self) -> list[Path]:
        folder = self.config.failed_uploads_dir
        return sorted(p for p in folder.glob("*") if p.suffix != ".json") if folder.exists() else []

    def spool_files(self) -> list[Path]:
        folder = self.config.spool_dir
        return sorted(folder.glob("*")) if folder.exists() else []

    def assert_cache_matches_platform(self) -> int:
        """Every cached block of every id equals the platform's bytes; returns how many blocks were checked.
        Seeding runs in the background: wait (with a deadline) until it stored what it is storing."""
        deadline = time.monotonic() + 10
        while self.fs.seeding() and time.monotonic() < deadline:
            time.sleep(0.01)
        store = SparseStore(self.config.blocks_dir, self.config.cache_size)
        checked = 0
        try:
            for stored in self.emu.store.all():
                data = self.emu.store.blob_path(stored.file_id).read_bytes()
                for index in range(block_count(len(data), BLOCK)):
                    block = store.get(block_key(str(stored.file_id), BLOCK, index))
                    if block is None:
                        continue
                    start, end = block_bounds(index, BLOCK, len(data))
                    assert bytes(block) == data[start:end], f"block {index} of {stored.file_id} is not its bytes"
                    checked += 1
        finally:
            store.close()
        return checked
