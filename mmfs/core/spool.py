"""A file's bytes on local disk while it is written: the spool, the manifest beside it, room on a full disk.

A spool is ``spool-XXXX.part`` in the spool folder, with ``spool-XXXX.json`` beside it: the journal entry of
a local file, saying what it is for (path, purpose, name, the ids it replaces) and how far it got:

- ``writing``: a program may still add bytes (a mount dying now leaves it cut);
- ``local``: closed, whole, held here and not meant to upload yet (a temporary name, a refused upload);
- ``complete``: closed, whole, to land (``tries`` says how many uploads were sent: after one, it may have
  landed already, and the listing is checked before sending again);
- ``landed``: the bytes are on the platform as ``file_id`` (the ``.part`` is gone); the old ids in
  ``deletes`` are still to be deleted. The entry goes once they are.

A mount that stops or dies leaves them behind, and the next mount takes them back (``mmfs.core.recovery``). A live
mount holds an exclusive ``flock`` on each of its spools, so recovery never takes a spool another live mount
is writing.

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

__all__ = ["COMPLETE", "LANDED", "LOCAL", "WRITING", "Sealed", "SpaceKeeper", "Spool"]

log = logging.getLogger("mmfs.writes")

WRITING = "writing"
LOCAL = "local"
COMPLETE = "complete"
LANDED = "landed"
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

    def __init__(self, directory: Path, space: SpaceKeeper, meta: dict[str, object], *,
                 adopt: tuple[int, Path] | None = None) -> None:
        if adopt is None:
            make_private_dir(directory)
            fd, name = tempfile.mkstemp(dir=directory, prefix="spool-", suffix=".part")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live; see the module docstring
            path = Path(name)
        else:
            fd, path = adopt  # a spool a stopped mount left: its descriptor, already locked by recovery
        self.path = path
        self.manifest_path = self.path.with_suffix(".json")
        self._fd = fd
        self._space = space
        self.size = os.fstat(fd).st_size
        self._meta = dict(meta) if adopt is not None else dict(meta, state=WRITING)
        self._write_manifest()

    @property
    def meta(self) -> dict[str, object]:
        return dict(self._meta)

    @property
    def state(self) -> object:
        return self._meta.get("state")

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

    def mark(self, state: str, **meta: object) -> None:
        """Closed: every byte is here (synced, so a crash of the machine keeps them); say what comes next."""
        os.fsync(self._fd)
        self.describe(state=state, **meta)

    def seal(self, deletes: list[str] | None = None, **meta: object) -> Sealed:
        """Uploaded: drop the bytes' name and keep them in a descriptor. With ``deletes`` (old ids still to
        delete), the manifest stays as the journal of that (state ``landed``), else it goes too."""
        fd, self._fd = self._fd, -1
        if deletes:
            self.describe(state=LANDED, deletes=deletes, **meta)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        else:
            self._remove_names()
        return Sealed(fd, self.size)

    def release(self) -> None:
        """Let go of the spool and leave it where it is (the mount stops; the next one takes it back)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

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
