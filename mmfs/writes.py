"""Files being written: a private spool on disk per file, uploaded whole when the writer closes it.

The platform has upload and delete and nothing else, so a write is: spool the bytes to a temporary file
under the cache folder (never in memory), and on ``flush`` (``close()``) upload the spool as one new file.
An overwrite uploads the new bytes first and deletes the old file_id only after that succeeded: at every
moment the platform holds the old file or the new one. A spool whose upload failed for good is moved to
``failed-uploads/`` and the log says where, so the bytes are never lost.

An existing file opened for writing without truncation starts from its current bytes; they are copied into
the spool lazily, at the first write or read, so ``cp`` onto an existing file (open, then truncate to 0)
never downloads what it is about to replace.

Concurrency: each ``WriteHandle`` has a lock held for every spool operation and for the upload; the
kernel may send writes from several threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mmfs.api.records import FileRecord
from mmfs.errors import MmfsError
from mmfs.private_dir import make_private_dir
from mmfs.upload_rules import check_size, size_limit

__all__ = ["CommitResult", "WriteHandle", "save_failed_upload"]

log = logging.getLogger("mmfs.writes")


@dataclass(frozen=True)
class CommitResult:
    record: FileRecord
    replaced: FileRecord | None


class WriteHandle:
    """One file being written, shared by every descriptor the kernel opened on its path."""

    def __init__(
        self,
        path: str,
        purpose: str,
        filename: str,
        spool_dir: Path,
        *,
        replaces: FileRecord | None = None,
        base: Callable[[], Iterable[bytes]] | None = None,
    ) -> None:
        self.path = path
        self.purpose = purpose
        self.filename = filename
        self.replaces = replaces
        self.lock = threading.RLock()
        self.opens = 0
        self.unlinked = False
        # A write that failed (past the size limit, disk full) poisons the file: uploading what came
        # before it would put a truncated file on the platform. close() reports the same error.
        self.failure: MmfsError | None = None
        self.dirty = replaces is None  # a new file exists once created, even if nothing is written
        self.mtime_ns = time.time_ns()
        self.limit = size_limit(purpose, filename)
        self._base = base  # the old bytes, not yet copied in
        make_private_dir(spool_dir)
        fd, name = tempfile.mkstemp(dir=spool_dir, prefix="spool-", suffix=".part")
        self.spool_path = Path(name)
        self._fd = fd
        self._size = 0

    # -- the spool ------------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    def _materialize_locked(self) -> None:
        """Copy the old bytes in before the first change that keeps any of them."""
        if self._base is None:
            return
        base, self._base = self._base, None
        offset = 0
        for chunk in base():
            os.pwrite(self._fd, chunk, offset)
            offset += len(chunk)
        self._size = offset

    def write(self, data: bytes, offset: int) -> int:
        with self.lock:
            end = offset + len(data)
            try:
                if end > self.limit:
                    check_size(self.purpose, self.filename, end)
                self._materialize_locked()
                written = os.pwrite(self._fd, data, offset)
            except MmfsError as exc:
                self.failure = exc
                raise
            except OSError as exc:
                self.failure = MmfsError(f"spooling {self.filename} failed: {exc.strerror}")
                self.failure.errno = exc.errno
                raise
            self._size = max(self._size, offset + written)
            self.dirty = True
            self.mtime_ns = time.time_ns()
            return written

    def read(self, offset: int, size: int) -> bytes:
        with self.lock:
            self._materialize_locked()
            return os.pread(self._fd, size, offset)

    def truncate(self, length: int) -> None:
        with self.lock:
            check_size(self.purpose, self.filename, length)
            if length == 0:
                self._base = None  # nothing of the old bytes survives: no need to fetch them
            else:
                self._materialize_locked()
            os.ftruncate(self._fd, length)
            self._size = length
            self.dirty = True
            self.mtime_ns = time.time_ns()

    def snapshot(self) -> tuple[Callable[[int, int], bytes], Callable[[], None]]:
        """A reader of the spool as it is now that outlives the handle (its own descriptor keeps the bytes
        after the spool is removed), and the function that lets it go."""
        fd = os.dup(self._fd)
        return (lambda start, end: os.pread(fd, end - start, start)), (lambda: os.close(fd))

    # -- commit ---------------------------------------------------------------------------------------

    def commit(self, upload: Callable[[Path, str, str], FileRecord]) -> CommitResult | None:
        """Upload the spool if anything changed. Caller holds ``lock``. Raises the upload's error."""
        if not self.dirty:
            return None
        if self.failure is not None:
            raise self.failure
        self._materialize_locked()
        os.fsync(self._fd)
        check_size(self.purpose, self.filename, self._size)
        record = upload(self.spool_path, self.purpose, self.filename)
        replaced, self.replaces = self.replaces, record
        self.dirty = False
        return CommitResult(record, replaced)

    def copy_to(self, target: Path) -> None:
        """Keep the spool's bytes at ``target`` as well (the spool itself stays usable)."""
        with self.lock:
            os.fsync(self._fd)
            try:
                os.link(self.spool_path, target)  # same folder tree: instant
            except OSError:
                shutil.copyfile(self.spool_path, target)

    def discard(self) -> None:
        """Close and remove the spool (after a commit, or when the file is unlinked unsaved)."""
        with self.lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            with contextlib.suppress(FileNotFoundError):
                self.spool_path.unlink()


def save_failed_upload(handle: WriteHandle, failed_dir: Path, error: MmfsError) -> Path | None:
    """Keep a spool whose upload failed for good; return where it went (None if there was nothing)."""
    if handle.size == 0:
        return None
    make_private_dir(failed_dir)
    safe = re.sub(r"[^\w.\-]+", "_", handle.filename)[:120] or "unnamed"
    target = failed_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{handle.purpose}-{safe}"
    counter = 1
    while target.exists():
        target = target.with_name(f"{target.name}.{counter}")
        counter += 1
    handle.copy_to(target)
    log.error("upload of %s to %s failed for good (%s); its bytes are kept in %s",
              handle.filename, handle.purpose, error, target)
    return target
