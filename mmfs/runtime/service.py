"""What a running mount answers on its control channel: status, refresh, pin, unpin, cache info and clear.

Each answer is built from the layers' own state (the namespace, the block stores, the spool and
failed-uploads folders) and the ``Stats`` the counting wrappers keep; nothing here is on the read path.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from mmfs.blocks.arithmetic import block_count
from mmfs.blocks.pinned import PinningStore
from mmfs.blocks.store import block_key
from mmfs.core.failed_uploads import kept
from mmfs.core.fs import FileSystem
from mmfs.errors import NotFoundError
from mmfs.redact import redact
from mmfs.settings.config import MountConfig
from mmfs.stats import Stats
from mmfs.tree.namespace import BY_ID, FileNode

__all__ = ["MountService"]

log = logging.getLogger("mmfs.control")

# How long status reuses its check of the pins (cache info and a pin or unpin always check afresh).
_PINS_TTL = 10.0


class MountService:
    def __init__(self, config: MountConfig, fs: FileSystem, store: PinningStore, stats: Stats,
                 invalidate: Callable[[str], None]) -> None:
        self.config = config
        self.fs = fs
        self.store = store
        self.stats = stats
        self._invalidate = invalidate
        self._started = time.time()
        self._pins_cache: tuple[float, list[dict[str, Any]]] | None = None

    def handlers(self) -> dict[str, Any]:
        return {"status": self.status, "refresh": self.refresh, "pin": self.pin, "unpin": self.unpin,
                "cache_info": self.cache_info, "cache_clear": self.cache_clear, "retry": self.retry}

    # -- status -------------------------------------------------------------------------------------

    def status(self, req: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        counts = self.store.counts()
        cached_bytes = counts["cached_bytes"]
        disk = shutil.disk_usage(self.config.blocks_dir)
        failed = kept(self.fs.failed_dir)
        scratch = self.fs.scratch_files()
        return {
            "mountpoint": str(self.config.mountpoint),
            "base_url": redact(self.config.base_url),  # a gateway URL may carry user:password
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self._started, 1),
            "cache": {
                "folder": str(self.config.blocks_dir.parent),
                "files": len(self.store.cache.file_ids()),
                "bytes": cached_bytes,
                "limit": self.config.cache_size,
                "free_margin": max(0, self.config.cache_size - cached_bytes),
                "disk_free": disk.free,
                "pinned_files": len(self.store.pinned_ids()),
                "pinned_bytes": counts["pinned_bytes"],
                "pins_not_complete": [p for p in self._recent_pins() if p["state"] != "complete"],
            },
            **self.stats.snapshot(),
            "failed_uploads": {"folder": str(self.fs.failed_dir), "files": failed},
            "fleet": self._fleet(),
            "scratch_files": {"folder": str(self.fs.spool_dir), "count": len(scratch),
                              "bytes": sum(size for _, size in scratch), "paths": [p for p, _ in scratch]},
            # Every file not landed: pending, writing, retrying (with the last error), refused (with the reason).
            "local_files": self.fs.local_files(),
        }

    def retry(self, req: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Try every local file waiting to land or refused (under ``path``) again now; their states after."""
        path = req.get("path")
        return {"files": self.fs.retry(str(path) if path else None)}

    def _fleet(self) -> dict[str, Any]:
        if not self.config.shared:
            return {"shared": False}
        from mmfs.fleet import fleet_status  # only with --shared: the redis package is an optional extra

        return fleet_status()

    # -- refresh ------------------------------------------------------------------------------------

    def refresh(self, req: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Fetch listings now, then drop the kernel's entries for every name before and after, so a file
        deleted elsewhere is gone at once and one changed elsewhere shows its new size."""
        purpose = req.get("purpose") or None
        purposes = [purpose] if purpose else [p for p in self.fs.namespace.root_names() if p != BY_ID]
        before = {p: set(self._names(p)) for p in purposes}
        done = self.fs.namespace.refresh(purposes)
        self._pins_cache = None  # a file found deleted elsewhere: its pin reads "gone" at once
        invalidated = 0
        for p in done:
            for name in before.get(p, set()) | set(self._names(p)):
                invalidated += self._invalidate(f"/{p}/{name}")
            invalidated += self._invalidate(f"/{p}")
        log.info("refreshed %s; %d kernel entries invalidated", ", ".join(done), invalidated)
        return {"purposes": done, "files": sum(len(self._names(p)) for p in done), "invalidated": invalidated,
                "failed": [p for p in purposes if p not in done]}

    def _names(self, purpose: str) -> list[str]:
        try:
            return list(self.fs.namespace.names(purpose))
        except OSError:
            return []

    # -- pinning ------------------------------------------------------------------------------------

    def _file(self, path: str) -> tuple[str, int, list[str]]:
        node = self.fs.namespace.lookup(path)
        if not isinstance(node, FileNode):
            raise IsADirectoryError(f"{path} is a folder: pin its files")
        file_id = node.record.file_id
        size = self.fs.sizes.of(node.record)
        bs = self.fs.reader.block_size
        return file_id, size, [block_key(file_id, bs, i) for i in range(block_count(size, bs))]

    def pin(self, req: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Every block of the file goes to the pinned store, whatever the reader's memory or the bounded
        cache holds, and is read back and checked there before the pin is reported done."""
        path = str(req["path"])
        file_id, size, keys = self._file(path)
        node = self.fs.namespace.lookup(path)
        purpose = node.record.purpose if isinstance(node, FileNode) else None
        bs = self.fs.reader.block_size
        self.store.pin(file_id, path, keys, size=size, block_size=bs, purpose=purpose)
        started = time.monotonic()
        lengths = [min(bs, size - i * bs) for i in range(len(keys))]
        for index, key in enumerate(keys):
            if self.store.pinned.get(key) is None:  # checked: an index row whose file was lost is no block
                # The reader answers from its memory when it can, and a block it downloaded may still be on
                # its way to the bounded cache: what it hands back is stored pinned here, not left to it.
                data = self.fs.reader.read(file_id, size, index * bs, bs)
                self.store.store_pinned(key, data, file_id)
            progress({"done": min(size, (index + 1) * bs), "size": size})
        self.store.pin(file_id, path, keys, size=size, block_size=bs, purpose=purpose)  # a prefetch's blocks
        missing = self.store.missing(keys, lengths)
        if missing:
            log.error("pinning %s: %d of %d blocks could not be stored in %s", path, len(missing), len(keys),
                      self.config.pinned_dir)
            raise OSError(f"{path}: {len(missing)} of {len(keys)} blocks could not be stored in the pinned "
                          f"folder {self.config.pinned_dir} (is its disk full?); the pin stays, incomplete: "
                          f"pin it again")
        self._pins_cache = None
        log.info("pinned %s: file_id %s, %d bytes in %.2f s", path, file_id, size, time.monotonic() - started)
        return {"file_id": file_id, "size": size}

    def unpin(self, req: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Pins are found by the path they were made by (that path and everything under it) with no listing
        and no network, so a pin of a file deleted elsewhere, or any pin while offline, can be dropped; a path
        no pin was made by is looked up (a file pinned through another name)."""
        self._pins_cache = None
        path = "/" + str(req["path"]).strip("/")
        prefix = path.rstrip("/") + "/"
        pins = self.store.pinned_ids()
        matched = [fid for fid, label in pins.items() if label == path or label.startswith(prefix) or path == "/"]
        if not matched:
            try:
                file_id, size, keys = self._file(path)
            except (IsADirectoryError, NotFoundError):  # a folder or a name with no pin under it
                return {"unpinned": [], "size": 0, "was_pinned": False}
            was = self.store.unpin(file_id, keys)
            return {"unpinned": [path] if was else [], "file_id": file_id, "size": size, "was_pinned": was}
        size = sum(int(self.store.meta(fid).get("size") or 0) for fid in matched)
        done = [pins[fid] for fid in matched if self.store.unpin(fid)]
        log.info("unpinned %s", ", ".join(done))
        return {"unpinned": sorted(done), "size": size, "was_pinned": bool(done)}

    def _recent_pins(self) -> list[dict[str, Any]]:
        """``pins()`` for status, at most ``_PINS_TTL`` seconds old: checking every pinned block's file on
        every status (``--watch`` asks every second) would cost a stat per block."""
        now = time.monotonic()
        cached = self._pins_cache
        if cached is None or now - cached[0] > _PINS_TTL:
            cached = self._pins_cache = (now, self.pins())
        return cached[1]

    def pins(self) -> list[dict[str, Any]]:
        """Each pin with its completeness and whether the platform still has the file (from the listings
        and memory the mount holds: no request)."""
        for file_id in self.store.pinned_ids():
            record = self.fs.namespace.local_record(file_id) if not self.store.meta(file_id) else None
            size = self.fs.sizes.known(record) if record is not None else None
            if record is not None and size is not None:  # a pin carried over an overwrite: its size is known now
                self.store.remember_size(file_id, size, self.fs.reader.block_size, record.purpose)
        report = self.store.report()
        for pin in report:
            state = self.fs.namespace.presence(pin["file_id"], pin["purpose"])
            pin["on_platform"] = state
            if state is False:
                pin["state"] = "gone from the platform"
            elif pin["complete"] is False:
                pin["state"] = f"incomplete: {pin['blocks_held']} of {pin['blocks']} blocks (pin it again)"
            elif pin["complete"] is None:
                pin["state"] = "pinned by an older mmfs: size unknown (pin it again to check it)"
            else:
                pin["state"] = "complete"
        return report

    # -- the cache ----------------------------------------------------------------------------------

    def cache_info(self, req: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        pins = self.pins()
        self._pins_cache = (time.monotonic(), pins)
        return {"folder": str(self.config.blocks_dir.parent), "limit": self.config.cache_size,
                **self.store.counts(), "pinned": self.store.pinned_ids(), "pins": pins}

    def cache_clear(self, req: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        freed = self.store.clear()
        log.info("cache cleared: %d bytes freed (pinned files kept)", freed)
        return {"freed": freed, **self.store.counts()}
