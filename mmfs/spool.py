"""A file's bytes on local disk while it is written: the spool, the manifest beside it, room on a full disk.

A spool is ``spool-XXXX.part`` in the spool folder, with ``spool-XXXX.json`` beside it saying what it is for
(purpose, name, the id it replaces) and how far it got: ``writing`` while a program may still add bytes,
``complete`` once its upload started. A mount that dies leaves both behind, and the next mount reads them
(``mmfs.recovery``). A live mount holds an exclusive ``flock`` on each of its spools, so recovery never
takes a spool another live mount is writing.

Spools come before cached blocks: a write that would leave less than ``min_free`` bytes free on the disk,
or that fails with ENOSPC, first evicts cached blocks and tries again.

Once uploaded, a spool is *sealed*: its names are removed and its bytes live on in an open descriptor that
nobody writes to again, so the block cache is seeded with exactly the bytes the platform got even if the
file is written again at once (that write starts a new spool, copied from the sealed one).

Concurrency: none here; a spool is used under its ``PendingFile``'s lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mmfs.private_dir import make_private_dir

__all__ = ["COMPLETE", "WRITING", "Sealed", "SpaceKeeper", "Spool"]

log = logging.getLogger("mmfs.writes")

WRITING = "writing"
COMPLETE = "complete"
_COPY_CHUNK = 8 << 20


class SpaceKeeper:
    """Keeps ``min_free`` bytes free on the spool's disk by evicting cached blocks (``free_cache(n)``
    evicts about ``n`` bytes and says how many it freed)."""

    def __init__(self, directory: Path, min_free: int = 0, free_cache: Callable[[int], int] | None = None) -> None:
        self.directory = directory
        self.min_free = min_free
        self.free_cache = free_cache

    def free_bytes(self) -> int:
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    def make_room(self, wanted: int) -> None:
        """Before a write of ``wanted`` bytes: evict blocks if it would eat into the margin."""
        if self.free_cache is None or not self.min_free:
            return
        short = self.min_free + wanted - self.free_bytes()
        if short > 0:
            freed = self.free_cache(short)
            if freed:
                log.info("disk nearly full: evicted %d bytes of cached blocks for a spool", freed)

    def after_enospc(self, wanted: int) -> bool:
        """The disk is full: evict blocks; whether anything was freed (worth trying again)."""
        if self.free_cache is None:
            return False
        freed = self.free_cache(wanted + self.min_free)
        log.warning("disk full while spooling: evicted %d bytes of cached blocks", freed)
        return freed > 0


class Sealed:
    """The bytes of an uploaded spool, read-only, alive while this descriptor is open."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def read_at(self, start: int, end: int) -> bytes:
        return os.pread(self.fd, end - start, start)

    def dup(self) -> Sealed:
        return Sealed(os.dup(self.fd), self.size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Spool:
    """One spool file and its manifest. ``describe`` rewrites the manifest when the file is renamed."""

    def __init__(self, directory: Path, space: SpaceKeeper, meta: dict[str, object]) -> None:
        make_private_dir(directory)
        fd, name = tempfile.mkstemp(dir=directory, prefix="spool-", suffix=".part")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live; see the module docstring
        self.path = Path(name)
        self.manifest_path = self.path.with_suffix(".json")
        self._fd = fd
        self._space = space
        self.size = 0
        self._meta = dict(meta, state=WRITING)
        self._write_manifest()

    # -- the manifest ------------------------------------------------------------------------------------

    def describe(self, **meta: object) -> None:
        self._meta.update(meta)
        self._write_manifest()

    def _write_manifest(self) -> None:
        temp = self.manifest_path.with_suffix(".json.new")
        try:
            temp.write_text(json.dumps(self._meta))
            os.replace(temp, self.manifest_path)
        except OSError as exc:  # a full disk: recovery then treats the spool as one of unknown state
            log.warning("could not record what spool %s is for: %s", self.path.name, exc.strerror)
            with contextlib.suppress(OSError):
                temp.unlink()

    # -- bytes ---------------------------------------------------------------------------------------------

    def write(self, data: bytes, offset: int) -> int:
        self._space.make_room(len(data))
        try:
            written = os.pwrite(self._fd, data, offset)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not self._space.after_enospc(len(data)):
                raise
            written = os.pwrite(self._fd, data, offset)
        self.size = max(self.size, offset + written)
        return written

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def truncate(self, length: int) -> None:
        os.ftruncate(self._fd, length)
        self.size = length

    def copy_from(self, source: Sealed) -> None:
        """Start from a sealed spool's bytes (the file is written again after it landed)."""
        offset = 0
        while offset < source.size:
            chunk = source.read_at(offset, min(source.size, offset + _COPY_CHUNK))
            if not chunk:
                raise OSError(errno.EIO, "the sealed spool ended early")
            offset += self.write(chunk, offset)

    # -- its end ---------------------------------------------------------------------------------------------

    def mark_complete(self) -> None:
        """Every byte is here and the upload starts: a mount dying now leaves it for the next to upload."""
        os.fsync(self._fd)
        self.describe(state=COMPLETE, started=time.time())

    def seal(self) -> Sealed:
        """Uploaded: drop the names (nothing to recover) and keep the bytes in a descriptor."""
        fd, self._fd = self._fd, -1
        self._remove_names()
        return Sealed(fd, self.size)

    def keep_at(self, target: Path) -> None:
        """Keep the spool's bytes at ``target`` (a hard link when it can: no room needed on a full disk)."""
        os.fsync(self._fd)
        try:
            os.link(self.path, target)
        except OSError:
            shutil.copyfile(self.path, target)

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._remove_names()

    def _remove_names(self) -> None:
        for path in (self.path, self.manifest_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
