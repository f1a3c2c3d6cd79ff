"""Pinned files: their blocks live in a second store that nothing evicts, so they stay readable offline.

``PinningStore`` is a ``BlockStore`` over two stores: the bounded cache and an unbounded ``pinned`` one.
Reads look in both; writes of a pinned file's blocks go to the pinned store. Pinning moves a file's blocks
already cached across, and the pin command stores the rest there itself (``store_pinned``), whatever the
reader's memory holds, then checks every block (``missing``); unpinning moves them back (where the bounded
cache may then evict them). The set of pinned ids is a small JSON file beside the pinned blocks, so pins
survive remounts; a second one (``pin-sizes.json``) keeps each pinned file's size and purpose, so a pin can
be checked for completeness, reported and dropped with no listing and no network.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from mmfs.blocks.blockfiles import FileSpan
from mmfs.blocks.sparse import SparseStore
from mmfs.blocks.store import BlockStore, DiskBlockStore, check_framed_file
from mmfs.private_dir import make_private_dir
from mmfs.threads import start_thread

__all__ = ["PinningStore"]

log = logging.getLogger("mmfs.blocks")


class PinningStore:
    def __init__(self, cache: DiskBlockStore, pinned_dir: Path) -> None:
        self.cache = cache
        # No byte ceiling: a pin is a promise to keep the file. size_limit is what diskcache culls to.
        self.pinned = _pinned_store(cache, pinned_dir)
        self._ids_path = pinned_dir / "pins.json"
        self._meta_path = pinned_dir / "pin-sizes.json"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids: dict[str, str] = {}
        self._gone: set[str] = set()  # ids deleted by another client: their pins stay, reported as gone
        self._meta: dict[str, dict[str, Any]] = {}  # file_id -> {"size", "block_size", "purpose"}
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
            self._ids = dict(json.loads(self._ids_path.read_text()))
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
            self._meta = {k: dict(v) for k, v in json.loads(self._meta_path.read_text()).items()}

    def _save_locked(self) -> None:
        # The folder may have been removed under the mount (the cache heals); the pins in memory still hold.
        make_private_dir(self._ids_path.parent)
        self._meta = {k: v for k, v in self._meta.items() if k in self._ids}
        for path, value in ((self._ids_path, self._ids), (self._meta_path, self._meta)):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
            os.replace(tmp, path)

    def pinned_ids(self) -> dict[str, str]:
        """file_id -> the path it was pinned by."""
        with self._lock:
            return dict(self._ids)

    def is_pinned(self, file_id: str) -> bool:
        with self._lock:
            return file_id in self._ids

    def _move(self, source: BlockStore, target: BlockStore, file_id: str, keys: list[str]) -> None:
        for key in keys:
            data = source.get(key)
            if data is not None:
                target.put(key, data, file_id)
        source.evict_file(file_id)

    def pin(self, file_id: str, label: str, keys: list[str], *, size: int | None = None,
            block_size: int | None = None, purpose: str | None = None) -> None:
        """From now on ``file_id``'s blocks are kept; ``keys`` are its blocks, moved across if cached.
        ``size``, ``block_size`` and ``purpose`` are remembered, for ``report`` and an offline ``unpin``."""
        with self._lock:
            self._ids[file_id] = label
            if size is not None and block_size is not None:
                self._meta[file_id] = {"size": size, "block_size": block_size, "purpose": purpose}
            self._save_locked()
        self._move(self.cache, self.pinned, file_id, keys)

    def store_pinned(self, key: str, data: bytes | bytearray | memoryview, file_id: str) -> None:
        """Put one block of a pinned file in the pinned store (over an entry whose file was lost)."""
        self.pinned.put(key, data, file_id)  # type: ignore[arg-type]  # a view is written as is

    def holds(self, key: str) -> bool:
        """Whether the pinned store has the block's file, whole by its header and size (its checksum is not
        read: this answers ``status``; ``missing`` reads every byte)."""
        if isinstance(self.pinned, SparseStore):
            return self.pinned.holds(key)
        f = self.pinned.open_file(key)
        if f is None:
            return False
        with f:
            return check_framed_file(f, key, crc=False) is not None

    def missing(self, keys: list[str], lengths: list[int]) -> list[str]:
        """The keys whose block is not in the pinned store whole and intact (each read back and checked)."""
        bad = []
        for key, length in zip(keys, lengths, strict=True):
            data = self.pinned.get(key)
            if data is None or len(data) != length:
                bad.append(key)
        return bad

    def keys_of(self, file_id: str) -> list[str] | None:
        """A pinned file's block keys, from what was remembered when it was pinned; None if nothing was."""
        with self._lock:
            meta = self._meta.get(file_id)
        if not meta:
            return None
        size, bs = int(meta["size"]), int(meta["block_size"])
        return [f"{file_id}/{bs}/{i}" for i in range(max(0, -(-size // bs)))]

    def remember_size(self, file_id: str, size: int, block_size: int, purpose: str | None) -> None:
        """Size and purpose of a pin made without them (carried over an overwrite, or by an older mmfs)."""
        with self._lock:
            if file_id in self._ids and file_id not in self._meta:
                self._meta[file_id] = {"size": size, "block_size": block_size, "purpose": purpose}
                self._save_locked()

    def meta(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._meta.get(file_id) or {})

    def report(self) -> list[dict[str, Any]]:
        """Each pin: its path, id, size, and how many of its blocks the pinned store holds (no network)."""
        out = []
        for file_id, label in sorted(self.pinned_ids().items(), key=lambda kv: kv[1]):
            keys = self.keys_of(file_id)
            meta = self.meta(file_id)
            held = None if keys is None else sum(1 for k in keys if self.holds(k))
            out.append({"file_id": file_id, "path": label, "size": meta.get("size"), "purpose": meta.get("purpose"),
                        "blocks": None if keys is None else len(keys), "blocks_held": held,
                        "complete": None if keys is None else held == len(keys)})
        return out

    def follow(self, old_id: str, new_id: str, label: str) -> None:
        """``new_id`` replaced ``old_id`` under ``label`` (an overwrite): a pin on the old one carries over, so
        the blocks the new bytes are seeded as go to the pinned store. The old id's pin goes with its delete."""
        with self._lock:
            if old_id not in self._ids or new_id in self._ids:
                return
            self._ids[new_id] = label
            self._save_locked()
        log.info("pin of %s carried over to %s (%s)", old_id, new_id, label)

    def unpin(self, file_id: str, keys: list[str] | None = None) -> bool:
        """Let the file's blocks be evicted again: moved back to the bounded cache (by ``keys``, or the ones
        remembered at pin time); with neither, its pinned blocks are dropped. Needs no network."""
        keys = keys if keys is not None else self.keys_of(file_id)
        with self._lock:
            if self._ids.pop(file_id, None) is None:
                return False
            self._save_locked()
        if keys is None:
            self.pinned.evict_file(file_id)
        else:
            self._move(self.pinned, self.cache, file_id, keys)
        return True

    # -- BlockStore ----------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        data = self.cache.get(key)
        return data if data is not None else self.pinned.get(key)

    def contains(self, key: str) -> bool:
        return self.cache.contains(key) or self.pinned.contains(key)

    def put(self, key: str, data: bytes, file_id: str) -> None:
        (self.pinned if self.is_pinned(file_id) else self.cache).put(key, data, file_id)

    def gone_elsewhere(self, file_id: str) -> None:
        """Another client deleted the file: its blocks go when it is evicted, but a pin of it stays, so status
        can say the pinned file is gone from the platform until the user unpins it."""
        with self._lock:
            if file_id in self._ids:
                self._gone.add(file_id)

    def evict_file(self, file_id: str) -> int:
        """The file is gone from the platform: drop its blocks from both stores, and its pin unless another
        client deleted it (then the pin is the user's to drop)."""
        with self._lock:
            if file_id in self._gone:
                self._gone.discard(file_id)
            elif self._ids.pop(file_id, None) is not None:
                self._save_locked()
        return self.cache.evict_file(file_id) + self.pinned.evict_file(file_id)

    def keeps_files(self) -> bool:
        return self.cache.keeps_files()

    def open_file(self, key: str) -> BinaryIO | None:
        """The block's own file (for reads by fd), from whichever store holds it."""
        return self.cache.open_file(key) or self.pinned.open_file(key)

    def span(self, file_id: str, block_size: int, start: int, end: int, file_size: int) -> FileSpan | None:
        """A range on disk as a file span (for reads by fd), from whichever store holds all of it."""
        for store in (self.cache, self.pinned):
            found = store.span(file_id, block_size, start, end, file_size)
            if found is not None:
                return found
        return None

    def let_go_of_evicted(self, wait: bool = False) -> int:
        return self.cache.let_go_of_evicted(wait=wait) + self.pinned.let_go_of_evicted(wait=wait)

    def drop(self, key: str) -> None:
        for store in (self.cache, self.pinned):
            if store.contains(key):
                store.drop(key)

    def free_bytes(self, wanted: int) -> int:
        """Room for spools comes from the bounded cache only: a pin is a promise to keep the file."""
        return self.cache.free_bytes(wanted)

    def clear(self) -> int:
        """Empty the bounded cache; pinned blocks stay. Returns the bytes freed."""
        before = self.cache.volume()
        self.cache.clear()
        return before - self.cache.volume()

    def counts(self) -> dict[str, int]:
        return {
            "cached_blocks": self.cache.count(),
            "cached_bytes": self.cache.volume(),
            "pinned_blocks": self.pinned.count(),
            "pinned_bytes": self.pinned.volume(),
        }

    def expire_every(self, max_age: float) -> None:
        """--cache-max-age: blocks of the bounded cache stored more than ``max_age`` seconds ago read as
        misses, and their space is freed in the background (pinned blocks never expire)."""
        self.cache.max_age = max_age
        interval = min(max(max_age / 4, 1.0), 60.0)

        def sweep() -> None:
            while not self._stop.wait(interval):
                gone = self.cache.expire()
                if gone:
                    log.info("cache: %d blocks older than %.0f s dropped", gone, max_age)

        start_thread(sweep, name="mmfs-cache-expiry")

    def close(self) -> None:
        self._stop.set()
        self.cache.close()
        self.pinned.close()


def _pinned_store(cache: DiskBlockStore, pinned_dir: Path) -> DiskBlockStore:
    """The pinned store, of the cache's kind. No byte ceiling: a pin is a promise to keep the file. A sparse
    one takes over the blocks an earlier format pinned (checked, then moved), so pins stay readable offline."""
    if isinstance(cache, SparseStore):
        return SparseStore(pinned_dir, 1 << 62, keep_old=True)
    return DiskBlockStore(pinned_dir, 1 << 62)
