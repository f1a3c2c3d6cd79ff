"""The filesystem's logic, FUSE-free: paths and handles in, attributes and bytes out, MmfsError on failure.

The FUSE adapter calls these methods one to one and turns exceptions into errno; everything a test can
check without a kernel lives here. The handle type is chosen at open: a ``ReadHandle`` reads a platform
file through the block cache, a ``WriteHandle`` (``mmfs.writes``) spools a file to upload.

What the kernel may cache, decided at open (see doc/SEMANTICS.md):
- a file's bytes never change under its id, so reads keep the page cache (``keep_cache``);
- the first open after a path changed id (an overwrite landed) drops the cached pages;
- a reader opening a file while an overwrite of it is being written reads the old file with
  ``direct_io``, past whatever size the writer's writes made the kernel believe.

Concurrency: FUSE calls in from many threads. ``_lock`` guards ``_handles``, ``_pending`` and
``_opened_ids``; a handle has its own lock for its own state.
"""

from __future__ import annotations

import errno
import logging
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import TypeVar

from mmfs.api.client import ApiClient
from mmfs.api.records import FileRecord
from mmfs.blocks.blockfiles import FileSpan
from mmfs.blocks.prefetch import SequentialPrefetch
from mmfs.blocks.reader import BlockReader
from mmfs.blocks.source import RemoteSource
from mmfs.errors import AuthError, InvalidParamsError, MmfsError, NotFoundError, ReadOnlyError
from mmfs.namespace import BY_ID, DirNode, FileNode, Namespace
from mmfs.upload_rules import DELETE_PURPOSES, check_create
from mmfs.writes import WriteHandle, save_failed_upload

__all__ = ["Attr", "FileSystem", "OpenResult", "ReadHandle"]

log = logging.getLogger("mmfs.fs")

T = TypeVar("T")

_WRITE_FLAGS = 0o3  # O_WRONLY | O_RDWR (O_ACCMODE)
_BASE_CHUNK = 4 << 20
# Blocks loaded from the disk cache ahead of a streaming reader: two keep one block's load (read + checksum,
# a few ms) running while the reader consumes the other, without pushing recent blocks out of memory.
_PRELOAD_BLOCKS = 2


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
            # Programs size their buffers by this (Python's open() too): the kernel's read size, so a
            # one-byte read does not become a 1 MiB read that looks like the start of a stream.
            "st_blksize": 128 << 10,
        }


@dataclass
class ReadHandle:
    record: FileRecord
    size: int
    prefetch: SequentialPrefetch
    lock: threading.Lock = field(default_factory=threading.Lock)
    block: int = -1  # the block the last read ended in


@dataclass(frozen=True)
class OpenResult:
    fh: int
    keep_cache: bool = False
    direct_io: bool = False


class _Errno(MmfsError):
    """An error that is only an errno (a wrong kind of node, an unsupported operation)."""

    def __init__(self, code: int, message: str) -> None:
        self.errno_code = code
        super().__init__(message)


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
        client: ApiClient | None = None,
        read_only: bool = True,
        upload_purposes: frozenset[str] = frozenset(),
        spool_dir: Path | None = None,
        failed_dir: Path | None = None,
        max_prefetch_blocks: int = 16,
    ) -> None:
        self.namespace = namespace
        self.reader = reader
        self.source = source
        self.client = client
        self.uid = uid
        self.gid = gid
        self.read_only = read_only or client is None or spool_dir is None
        self.upload_purposes = frozenset() if self.read_only else upload_purposes
        self.spool_dir = spool_dir
        self.failed_dir = failed_dir or (spool_dir.parent / "failed-uploads" if spool_dir else None)
        self._max_prefetch = max_prefetch_blocks
        self._mounted_ns = time.time_ns()
        self._lock = threading.Lock()
        self._handles: dict[int, ReadHandle | WriteHandle] = {}
        self._pending: dict[str, WriteHandle] = {}
        self._opened_ids: dict[str, str] = {}
        self._readers: dict[str, int] = {}  # file_id -> open read handles
        self._doomed: set[str] = set()  # deleted file_ids whose blocks wait for their last reader
        self._next_fh = count(1)

    # -- attributes ---------------------------------------------------------------------------------

    def _dir_attr(self, writable: bool) -> Attr:
        mode = stat_mod.S_IFDIR | (0o755 if writable else 0o555)
        return Attr(mode, 0, self._mounted_ns, self.uid, self.gid, nlink=2)

    def _file_mode(self, purpose: str | None) -> int:
        return stat_mod.S_IFREG | (0o644 if purpose in self.upload_purposes else 0o444)

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

    def _pending_new(self, path: str) -> WriteHandle | None:
        """A file created through the mount and not uploaded yet (it exists only here)."""
        with self._lock:
            handle = self._pending.get(path)
        return handle if handle is not None and handle.replaces is None else None

    def getattr(self, path: str) -> Attr:
        pending = self._pending_new(path)
        if pending is not None:
            return Attr(self._file_mode(pending.purpose), pending.size, pending.mtime_ns, self.uid, self.gid)
        node = self.namespace.lookup(path)
        if isinstance(node, DirNode):
            return self._dir_attr(node.purpose in self.upload_purposes)
        record = node.record
        mtime_ns = (record.created_at or 0) * 1_000_000_000 or self._mounted_ns
        return Attr(self._file_mode(record.purpose), self.size_of(record), mtime_ns, self.uid, self.gid)

    def readdir(self, path: str) -> list[str]:
        node = self.namespace.lookup(path)
        if not isinstance(node, DirNode):
            raise _Errno(errno.ENOTDIR, path)
        if path in ("/", ""):
            return self.namespace.root_names()
        if node.purpose is None:  # /.by-id
            return self.namespace.by_id_names()
        names = list(self.namespace.names(node.purpose))
        prefix = f"/{node.purpose}/"
        with self._lock:
            extra = [p[len(prefix) :] for p, h in self._pending.items() if p.startswith(prefix) and h.replaces is None]
        return names + [n for n in extra if n not in names]

    def statfs(self) -> dict[str, int]:
        # The platform publishes no quota figure; report a large, honest "unknown" rather than 0 free,
        # which makes file managers refuse to copy.
        block = 4096
        total = (1 << 50) // block
        return {"f_bsize": block, "f_frsize": block, "f_blocks": total, "f_bfree": total, "f_bavail": total,
                "f_files": 1 << 32, "f_ffree": 1 << 32, "f_favail": 1 << 32, "f_namemax": 255}

    # -- opening ------------------------------------------------------------------------------------

    def _register(self, handle: ReadHandle | WriteHandle) -> int:
        fh = next(self._next_fh)
        with self._lock:
            self._handles[fh] = handle
            if isinstance(handle, ReadHandle):
                file_id = handle.record.file_id
                self._readers[file_id] = self._readers.get(file_id, 0) + 1
        return fh

    def open(self, path: str, flags: int) -> OpenResult:
        if flags & _WRITE_FLAGS:
            return self._open_write(path)
        pending = self._pending_new(path)
        if pending is not None:  # reading a file still being written: its spool is the truth
            with pending.lock:
                pending.opens += 1
            return OpenResult(self._register(pending), direct_io=True)
        node = self.namespace.lookup(path)
        if not isinstance(node, FileNode):
            raise _Errno(errno.EISDIR, path)
        record = node.record
        size = self.size_of(record)
        handle = ReadHandle(record, size, SequentialPrefetch(self.reader.block_size, size,
                                                            max_window=self._max_prefetch))
        with self._lock:
            overwriting = path in self._pending
            # Pages the kernel holds for this path came from an earlier open through this mount; if that
            # open read another file id (an overwrite landed since), they are stale and must go.
            same_bytes = self._opened_ids.get(path, record.file_id) == record.file_id
            self._opened_ids[path] = record.file_id
        opened = OpenResult(self._register(handle), keep_cache=same_bytes and not overwriting,
                            direct_io=overwriting)
        log.debug("open %s for reading: %s", path, opened)
        return opened

    def _writable_purpose(self, path: str) -> str:
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        parts = [p for p in path.split("/") if p]
        if len(parts) != 2 or parts[0] == BY_ID:
            raise ReadOnlyError(f"{path}: files can be written only inside a purpose folder")
        purpose = parts[0]
        if purpose not in self.upload_purposes:
            raise ReadOnlyError(f"the platform takes no uploads for {purpose}")
        return purpose

    def create(self, path: str) -> OpenResult:
        purpose = self._writable_purpose(path)
        filename = path.rsplit("/", 1)[1]
        check_create(purpose, filename)
        assert self.spool_dir is not None
        handle = WriteHandle(path, purpose, filename, self.spool_dir)
        with self._lock:
            if path in self._pending:
                handle.discard()
                raise _Errno(errno.EEXIST, path)
            self._pending[path] = handle
        handle.opens = 1
        return OpenResult(self._register(handle), direct_io=True)

    def _open_write(self, path: str) -> OpenResult:
        with self._lock:
            handle = self._pending.get(path)
        if handle is None:
            try:
                node = self.namespace.lookup(path)
            except NotFoundError:
                # The kernel opens (never creates) a name it still remembers from a file that is gone, a
                # failed upload's for instance: O_CREAT was stripped on the way, so honour it here.
                return self.create(path)
            if not isinstance(node, FileNode):
                raise _Errno(errno.EISDIR, path)
            record = node.record
            purpose = record.purpose or self._writable_purpose(path)
            if self.read_only or purpose not in self.upload_purposes:
                raise ReadOnlyError(f"the platform takes no uploads for {purpose}")
            filename = record.filename or path.rsplit("/", 1)[1]
            assert self.spool_dir is not None
            handle = WriteHandle(path, purpose, filename, self.spool_dir, replaces=record,
                                 base=lambda: self._file_chunks(record))
            with self._lock:
                existing = self._pending.setdefault(path, handle)
            if existing is not handle:
                handle.discard()
                handle = existing
        with handle.lock:
            handle.opens += 1
        return OpenResult(self._register(handle), direct_io=True)

    def _file_chunks(self, record: FileRecord) -> Iterator[bytes]:
        size = self.size_of(record)
        for offset in range(0, size, _BASE_CHUNK):
            yield self._remote(lambda o=offset: self.reader.read(record.file_id, size, o, _BASE_CHUNK), record)

    def _handle(self, fh: int) -> ReadHandle | WriteHandle:
        with self._lock:
            handle = self._handles.get(fh)
        if handle is None:
            raise _Errno(errno.EBADF, f"no open file {fh}")
        return handle

    # -- reading and writing ------------------------------------------------------------------------

    def read(self, fh: int, offset: int, size: int, *, as_file: bool = False) -> bytes | FileSpan:
        """The bytes; with ``as_file``, a span of a cache file instead when the block is on disk (the
        FUSE adapter lets libfuse read it, with no copy through Python)."""
        handle = self._handle(fh)
        if isinstance(handle, WriteHandle):
            return handle.read(offset, size)
        record = handle.record
        with handle.lock:
            ahead = handle.prefetch.advise(offset, size)
            block = (offset + max(size, 1) - 1) // self.reader.block_size
            entered, handle.block = block != handle.block, block
            streaming = handle.prefetch.streaming
            fetch = handle.prefetch.fetch_size
        if ahead:
            self.reader.prefetch(record.file_id, handle.size, ahead)
        if streaming and entered:  # blocks already on disk: have the next ones in memory before they are read
            self.reader.preload(record.file_id, handle.size, range(block + 1, block + 1 + _PRELOAD_BLOCKS))
        span = self.reader.locate(record.file_id, handle.size, offset, size) if as_file else None
        if span is not None:
            return span
        return self._remote(lambda: self.reader.read(record.file_id, handle.size, offset, size, fetch), record)

    def write(self, fh: int, data: bytes, offset: int) -> int:
        handle = self._handle(fh)
        if not isinstance(handle, WriteHandle):
            raise _Errno(errno.EBADF, "file not open for writing")
        return handle.write(data, offset)

    def truncate(self, path: str, length: int) -> None:
        with self._lock:
            handle = self._pending.get(path)
        if handle is None:
            self._writable_purpose(path)
            raise _Errno(errno.EPERM, f"{path}: the platform cannot change a stored file; open it for writing")
        handle.truncate(length)

    def utimens(self, path: str, mtime_ns: int | None) -> None:
        with self._lock:
            handle = self._pending.get(path)
        if handle is None:
            self.namespace.lookup(path)  # ENOENT for a missing path
            raise _Errno(errno.EPERM, f"{path}: the platform keeps its own times")
        with handle.lock:
            handle.mtime_ns = mtime_ns if mtime_ns is not None else time.time_ns()

    def flush(self, fh: int) -> None:
        handle = self._handle(fh)
        if isinstance(handle, WriteHandle):
            self._commit(handle)

    def release(self, fh: int) -> None:
        with self._lock:
            handle = self._handles.pop(fh, None)
            evict = None
            if isinstance(handle, ReadHandle):
                file_id = handle.record.file_id
                self._readers[file_id] -= 1
                if not self._readers[file_id]:
                    del self._readers[file_id]
                    if file_id in self._doomed:
                        self._doomed.discard(file_id)
                        evict = file_id
        if evict is not None:
            self.reader.evict(evict)
        if not isinstance(handle, WriteHandle):
            return
        with handle.lock:
            handle.opens -= 1
            last = handle.opens <= 0
        if not last:
            return
        try:
            self._commit(handle)  # only if a write came after the last flush; errors are in the log
        except MmfsError:
            pass
        finally:
            self._drop_pending(handle)
            handle.discard()

    def _drop_pending(self, handle: WriteHandle) -> None:
        with self._lock:
            if self._pending.get(handle.path) is handle:
                del self._pending[handle.path]

    def _commit(self, handle: WriteHandle) -> None:
        with handle.lock:
            if handle.unlinked:
                return
            try:
                result = handle.commit(self._upload)
            except OSError as exc:
                failure = exc if isinstance(exc, MmfsError) else MmfsError(f"writing {handle.filename}: {exc}")
                save_failed_upload(handle, self._failed_dir(), failure)
                handle.dirty = False  # the bytes are safe; the release must not try again
                handle.failure = failure
                self._drop_pending(handle)  # it never reached the platform: no name to show
                if failure is exc:
                    raise
                raise failure from exc
            if result is None:
                return
            read_at, release = handle.snapshot()
            self.reader.seed(result.record.file_id, handle.size, read_at, release)
        self.namespace.remember(result.record)
        with self._lock:
            self._opened_ids.pop(handle.path, None)
        if result.replaced is not None:
            self._delete_replaced(result.replaced)

    def _upload(self, spool: Path, purpose: str, filename: str) -> FileRecord:
        assert self.client is not None
        log.info("uploading %s to %s", filename, purpose)
        return self.client.upload(spool, purpose, filename)

    def _failed_dir(self) -> Path:
        assert self.failed_dir is not None
        return self.failed_dir

    def _delete_replaced(self, old: FileRecord) -> None:
        """The new bytes are on the platform: now the old file may go."""
        try:
            self._delete(old)
        except MmfsError as exc:
            log.warning("replaced %s but could not delete the old file %s: %s", old.filename, old.file_id, exc)

    # -- deleting and the operations the platform cannot do ---------------------------------------

    def unlink(self, path: str) -> None:
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        with self._lock:
            pending = self._pending.get(path)
            if pending is not None and pending.replaces is None:
                del self._pending[path]
        if pending is not None and pending.replaces is None:
            with pending.lock:
                pending.unlinked = True  # writers still holding it write into the void, as on a disk
            return
        node = self.namespace.lookup(path)
        if not isinstance(node, FileNode):
            raise _Errno(errno.EISDIR, path)
        self._delete(node.record)

    def _delete(self, record: FileRecord) -> None:
        purpose = record.purpose
        if purpose not in DELETE_PURPOSES:
            raise ReadOnlyError(f"the platform cannot delete {purpose} files (they expire on their own)")
        assert self.client is not None
        try:
            self.client.delete(record.file_id, purpose)
        except (NotFoundError, InvalidParamsError) as exc:
            self._forget(record)
            raise NotFoundError(f"{record.file_id} is already gone from the platform", trace_id=exc.trace_id) from exc
        self._forget(record)

    def _forget(self, record: FileRecord) -> None:
        """A file deleted: gone from the tree at once; its cached blocks stay while someone still has it
        open (as a local disk keeps an unlinked file readable), and go with the last close."""
        self.namespace.forget(record.file_id, record.purpose)
        self.source.forget(record.file_id)
        with self._lock:
            busy = record.file_id in self._readers
            if busy:
                self._doomed.add(record.file_id)
        if not busy:
            self.reader.evict(record.file_id)

    def rename(self, old: str, new: str) -> None:
        # The platform has no rename: EXDEV makes mv copy and delete, which the platform can do.
        raise _Errno(errno.EXDEV, "the platform cannot rename; copy and delete instead")

    def refuse(self, what: str) -> None:
        """mkdir, rmdir, chmod, chown, symlink, link: nothing on the platform they could map to."""
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        raise _Errno(errno.EPERM, f"the platform has no {what}")

    # -- plumbing -----------------------------------------------------------------------------------

    def _remote(self, call: Callable[[], T], record: FileRecord) -> T:
        """Run a call that reaches the platform; a file found gone is forgotten and reads as ENOENT,
        anything else that survived the retries is EIO (or EACCES for a refused key)."""
        try:
            return call()
        except NotFoundError:
            log.info("file %s is gone from the platform", record.file_id)
            self._forget(record)
            raise
        except AuthError:
            raise
        except MmfsError as exc:
            log.error("reading %s (%s) failed: %s", record.file_id, record.filename, exc)
            raise _ReadError(f"reading {record.file_id} failed", trace_id=exc.trace_id) from exc

    def destroy(self) -> None:
        with self._lock:
            leftovers = list(self._pending.values())
        for handle in leftovers:  # unmounted with files still open for writing: keep their bytes
            with handle.lock:
                if handle.dirty and not handle.unlinked and handle.size:
                    save_failed_upload(handle, self._failed_dir(), MmfsError("unmounted before the upload"))
            handle.discard()
        self.reader.close()
        self.namespace.close()
