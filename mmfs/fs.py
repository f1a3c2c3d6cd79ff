"""The filesystem's logic, FUSE-free: paths and handles in, attributes and bytes out, MmfsError on failure.

The FUSE adapter calls these methods one to one and turns exceptions into errno; everything a test can
check without a kernel lives here. Writes (spooling and uploading) are delegated to ``mmfs.writes``.

Concurrency: FUSE calls in from many threads. ``_lock`` guards the handle table; a read handle's
prefetch state is touched only by reads of that handle (the kernel serialises nothing, so it has its
own lock too).
"""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
import threading
import time
from dataclasses import dataclass, field
from itertools import count

from mmfs.api.records import FileRecord
from mmfs.blocks.prefetch import SequentialPrefetch
from mmfs.blocks.reader import BlockReader
from mmfs.blocks.source import RemoteSource
from mmfs.errors import AuthError, MmfsError, NotFoundError, ReadOnlyError
from mmfs.namespace import DirNode, FileNode, Namespace

__all__ = ["Attr", "FileSystem", "ReadHandle"]

log = logging.getLogger("mmfs.fs")


@dataclass(frozen=True)
class Attr:
    mode: int
    size: int
    mtime_ns: int
    uid: int
    gid: int
    nlink: int = 1

    def as_dict(self) -> dict[str, int]:
        return {
            "st_mode": self.mode,
            "st_size": self.size,
            "st_nlink": self.nlink,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_mtime": self.mtime_ns,
            "st_ctime": self.mtime_ns,
            "st_atime": self.mtime_ns,
            "st_blocks": (self.size + 511) // 512,
            "st_blksize": 128 << 10,
        }


@dataclass
class ReadHandle:
    record: FileRecord
    size: int
    prefetch: SequentialPrefetch
    lock: threading.Lock = field(default_factory=threading.Lock)


class _ReadError(MmfsError):
    """A read that failed after its retries: EIO, whatever the cause below."""


class FileSystem:
    def __init__(
        self,
        namespace: Namespace,
        reader: BlockReader,
        source: RemoteSource,
        *,
        uid: int,
        gid: int,
        read_only: bool = True,
        upload_purposes: frozenset[str] = frozenset(),
        max_prefetch_blocks: int = 16,
    ) -> None:
        self.namespace = namespace
        self.reader = reader
        self.source = source
        self.uid = uid
        self.gid = gid
        self.read_only = read_only
        self.upload_purposes = upload_purposes
        self._max_prefetch = max_prefetch_blocks
        self._mounted_ns = time.time_ns()
        self._lock = threading.Lock()
        self._handles: dict[int, ReadHandle] = {}
        self._next_fh = count(1)

    # -- attributes ---------------------------------------------------------------------------------

    def _dir_attr(self, writable: bool) -> Attr:
        mode = stat_mod.S_IFDIR | (0o755 if writable else 0o555)
        return Attr(mode, 0, self._mounted_ns, self.uid, self.gid, nlink=2)

    def size_of(self, record: FileRecord) -> int:
        """The file's true size. A listed ``bytes`` of 0 or none is not trusted (generated videos):
        the size comes from the download, once, and is remembered, so ``cp`` never truncates."""
        if record.bytes:
            return record.bytes
        known = self.namespace.known_size(record.file_id)
        if known is not None:
            return known
        size = self._remote(lambda: self.source.size(record.file_id), record)
        self.namespace.set_known_size(record.file_id, size)
        return size

    def getattr(self, path: str) -> Attr:
        node = self.namespace.lookup(path)
        if isinstance(node, DirNode):
            writable = not self.read_only and node.purpose in self.upload_purposes
            return self._dir_attr(writable)
        record = node.record
        mtime_ns = (record.created_at or 0) * 1_000_000_000 or self._mounted_ns
        mode = stat_mod.S_IFREG | 0o444
        return Attr(mode, self.size_of(record), mtime_ns, self.uid, self.gid)

    def readdir(self, path: str) -> list[str]:
        node = self.namespace.lookup(path)
        if not isinstance(node, DirNode):
            raise _NotADirectory(path)
        if path in ("/", ""):
            return self.namespace.root_names()
        if node.purpose is None:  # /.by-id
            return self.namespace.by_id_names()
        return list(self.namespace.names(node.purpose))

    def statfs(self) -> dict[str, int]:
        # The platform publishes no quota figure; report a large, honest "unknown" rather than 0 free,
        # which makes file managers refuse to copy.
        block = 4096
        total = (1 << 50) // block
        return {"f_bsize": block, "f_frsize": block, "f_blocks": total, "f_bfree": total, "f_bavail": total,
                "f_files": 1 << 32, "f_ffree": 1 << 32, "f_favail": 1 << 32, "f_namemax": 255}

    # -- reading ------------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise ReadOnlyError(f"{path}: files on the platform cannot be changed in place")
        node = self.namespace.lookup(path)
        if not isinstance(node, FileNode):
            raise _IsADirectory(path)
        size = self.size_of(node.record)
        handle = ReadHandle(
            node.record,
            size,
            SequentialPrefetch(self.reader.block_size, size, max_window=self._max_prefetch),
        )
        fh = next(self._next_fh)
        with self._lock:
            self._handles[fh] = handle
        return fh

    def _handle(self, fh: int) -> ReadHandle:
        with self._lock:
            handle = self._handles.get(fh)
        if handle is None:
            raise _BadHandle(f"no open file {fh}")
        return handle

    def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self._handle(fh)
        record = handle.record
        with handle.lock:
            ahead = handle.prefetch.advise(offset, size)
        if ahead:
            self.reader.prefetch(record.file_id, handle.size, ahead)
        return self._remote(lambda: self.reader.read(record.file_id, handle.size, offset, size), record)

    def release(self, fh: int) -> None:
        with self._lock:
            self._handles.pop(fh, None)

    def _remote(self, call, record: FileRecord):
        """Run a call that reaches the platform; a file found gone is forgotten and reads as ENOENT,
        anything else that survived the retries is EIO (or EACCES for a refused key)."""
        try:
            return call()
        except NotFoundError:
            log.info("file %s is gone from the platform", record.file_id)
            self.namespace.forget(record.file_id, record.purpose)
            self.reader.evict(record.file_id)
            self.source.forget(record.file_id)
            raise
        except AuthError:
            raise
        except MmfsError as exc:
            log.error("reading %s (%s) failed: %s", record.file_id, record.filename, exc)
            raise _ReadError(f"reading {record.file_id} failed", trace_id=exc.trace_id) from exc

    def destroy(self) -> None:
        self.reader.close()
        self.namespace.close()


class _IsADirectory(MmfsError):
    errno_code = errno.EISDIR


class _BadHandle(MmfsError):
    errno_code = errno.EBADF


class _NotADirectory(MmfsError):
    errno_code = errno.ENOTDIR
