"""The filesystem's logic, FUSE-free: paths and handles in, attributes and bytes out, MmfsError on failure.

The FUSE adapter calls these methods one to one and turns exceptions into errno; everything a test can
check without a kernel lives here. The handle type is chosen at open: a ``ReadHandle`` reads a platform
file through the block cache, a ``WriteDescriptor`` (``mmfs.pending_files``) is a descriptor on a file being
written, whose ``PendingFile`` (``mmfs.writes``) alone decides when it uploads and what happens on failure.
Renames of files not yet uploaded (a tool's temporary file renamed over the real name) are moves in the
table of pending files; a stored file cannot be renamed (EXDEV).

What the kernel may cache, decided at open (see doc/SEMANTICS.md):
- a file's bytes never change under its id, so reads keep the page cache (``keep_cache``);
- the first open after a path changed id (an overwrite landed) drops the cached pages;
- a reader opening a file while an overwrite of it is being written reads the old file with
  ``direct_io``, past whatever size the writer's writes made the kernel believe.

Concurrency: FUSE calls in from many threads. ``_lock`` guards ``_handles``, ``_opened_ids``, ``_readers``,
``_doomed`` and ``_seeds``; the table of pending files has its own lock, and each pending file its own.
"""

from __future__ import annotations

import errno
import logging
import os
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
from mmfs.blocks.reader import BlockReader, waited_for_network
from mmfs.blocks.source import RemoteSource
from mmfs.errors import AuthError, InvalidParamsError, MmfsError, NotFoundError, ReadOnlyError
from mmfs.namespace import BY_ID, DirNode, FileNode, Namespace
from mmfs.pending_files import PendingFiles, WriteDescriptor
from mmfs.recovery import recover_spools
from mmfs.scratch_names import is_scratch
from mmfs.spool import Sealed, SpaceKeeper
from mmfs.upload_rules import DELETE_PURPOSES, check_create
from mmfs.writes import Landing, PendingFile, WriteState

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


# The platform's storage allowance per account (its documented legacy limit), reported as df's size.
ACCOUNT_CAPACITY = 100 * 10**9
XATTR_PREFIX = "user.minimax."


class FileSystem:
    # Whether /.by-id lists the ids mmfs knows; off so du, find and cp -r do not walk every file twice.
    list_by_id = False

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
        min_free_space: int = 0,
        free_cache: Callable[[int], int] | None = None,
        follow_pin: Callable[[str, str, str], None] | None = None,
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
        self._follow_pin = follow_pin  # an overwrite keeps the path's pin (the new bytes have a new id)
        self._mounted_ns = time.time_ns()
        self._lock = threading.Lock()
        self._handles: dict[int, ReadHandle | WriteDescriptor] = {}
        self._pending = PendingFiles()
        self._landing = None if spool_dir is None or self.failed_dir is None else Landing(
            spool_dir, self.failed_dir, SpaceKeeper(spool_dir, min_free_space, free_cache), self._upload,
            self._landed)
        self._opened_ids: dict[str, str] = {}
        self._readers: dict[str, int] = {}  # file_id -> open read handles
        self._doomed: set[str] = set()  # deleted file_ids whose blocks wait for their last reader
        self._next_fh = count(1)
        self._seeds = 0  # uploads whose bytes are still being stored as blocks
        # Tells the kernel to drop what it caches of a path (set by the FUSE adapter). While an overwrite is
        # written the path shows the old file, and the kernel keeps that size for its attribute timeout: a
        # read after the new bytes land would stop at the old size.
        self.invalidate: Callable[[str], None] = lambda path: None
        # Told of every read of a stored file: whether it waited for the network (set by the mount, for
        # status's hit ratio).
        self.on_read: Callable[[bool], None] = lambda waited: None

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
            return self.reader.true_size(record.file_id) or record.bytes  # a download corrects a listing
        known = self.namespace.known_size(record.file_id)
        if known is not None:
            return known
        size = self._remote(lambda: self.source.size(record.file_id), record)
        self.namespace.set_known_size(record.file_id, size)
        return size

    def _pending_new(self, path: str) -> PendingFile | None:
        """A file being written that readers see (created here, not an overwrite of a stored file)."""
        pending = self._pending.get(path)
        return pending if pending is not None and not pending.shows_stored else None

    def getattr(self, path: str) -> Attr:
        pending = self._pending.get(path)
        if pending is not None and pending.shows_own_size:
            return Attr(self._file_mode(pending.purpose), pending.size, pending.mtime_ns, self.uid, self.gid)
        node = self.namespace.lookup(path)
        if isinstance(node, DirNode):
            return self._dir_attr(node.purpose in self.upload_purposes)
        record = node.record
        mtime_ns = (record.created_at or 0) * 1_000_000_000 or self._mounted_ns
        by_id = node.path.lstrip("/").startswith(BY_ID + "/")  # read-only there: writes go by name
        return Attr(self._file_mode(None if by_id else record.purpose), self.size_of(record), mtime_ns, self.uid,
                    self.gid)

    def listed_attr(self, path: str) -> Attr | None:
        """``getattr`` when it costs no request, else None (a file listed without a size that no download
        has told yet): what a folder listing may hand the kernel along with the names."""
        if self._pending.get(path) is None:
            node = self.namespace.lookup(path)
            if (isinstance(node, FileNode) and not node.record.bytes
                    and self.namespace.known_size(node.record.file_id) is None):
                return None
        return self.getattr(path)

    def readdir(self, path: str) -> list[str]:
        node = self.namespace.lookup(path)
        if not isinstance(node, DirNode):
            raise _Errno(errno.ENOTDIR, path)
        if path in ("/", ""):
            return self.namespace.root_names()
        if node.purpose is None:  # /.by-id
            return self.namespace.by_id_names() if self.list_by_id else []
        names = list(self.namespace.names(node.purpose))
        extra = self._pending.names_in(f"/{node.purpose}")
        return names + [n for n in extra if n not in names]

    def scratch_files(self) -> list[tuple[str, int]]:
        """Files held only here under a tool's temporary name: (path, size)."""
        return [(f.path, f.size) for f in self._pending.all() if f.state is WriteState.SCRATCH]

    def statfs(self) -> dict[str, int]:
        """``df``: the account's capacity, and as used the bytes of the files the listings show."""
        block = 512  # df's unit (f_frsize): 100 GB is a whole number of 512-byte blocks, not of 4 KiB ones
        used = 0
        for purpose in self.namespace.root_names():
            if purpose == BY_ID:
                continue
            try:
                records = self.namespace.names(purpose).values()
            except MmfsError:
                continue
            used += sum(r.bytes or self.namespace.known_size(r.file_id) or 0 for r in records)
        total = ACCOUNT_CAPACITY // block
        free = max(0, total - (used + block - 1) // block)
        return {"f_bsize": 4096, "f_frsize": block, "f_blocks": total, "f_bfree": free, "f_bavail": free,
                "f_files": 1 << 32, "f_ffree": 1 << 32, "f_favail": 1 << 32, "f_namemax": 255}

    def xattrs(self, path: str) -> dict[str, bytes]:
        """A stored file's ``user.minimax.*`` attributes: its id, purpose and creation time (never its URL)."""
        if self._pending_new(path) is not None:
            return {}
        node = self.namespace.lookup(path)
        if not isinstance(node, FileNode):
            return {}
        record = node.record
        attrs = {f"{XATTR_PREFIX}file_id": record.file_id.encode()}
        if record.purpose:
            attrs[f"{XATTR_PREFIX}purpose"] = record.purpose.encode()
        if record.created_at is not None:
            attrs[f"{XATTR_PREFIX}created_at"] = str(record.created_at).encode()
        return attrs

    # -- opening ------------------------------------------------------------------------------------

    def _register(self, handle: ReadHandle | WriteDescriptor) -> int:
        fh = next(self._next_fh)
        with self._lock:
            self._handles[fh] = handle
            if isinstance(handle, ReadHandle):
                file_id = handle.record.file_id
                self._readers[file_id] = self._readers.get(file_id, 0) + 1
        return fh

    def open(self, path: str, flags: int) -> OpenResult:
        if flags & _WRITE_FLAGS:
            return self._open_write(path, flags)
        pending = self._pending_new(path)
        if pending is not None:  # reading a file still being written: its spool is the truth
            pending.attach(writable=False)
            return OpenResult(self._register(WriteDescriptor(pending, writable=False)), direct_io=True)
        node = self.namespace.lookup(path)
        if not isinstance(node, FileNode):
            raise _Errno(errno.EISDIR, path)
        record = node.record
        size = self.size_of(record)
        handle = ReadHandle(record, size, SequentialPrefetch(self.reader.block_size, size,
                                                            max_window=self._max_prefetch))
        overwriting = self._pending.get(path) is not None
        with self._lock:
            # Pages the kernel holds for this path came from an earlier open through this mount; if that
            # open read another file id (an overwrite landed since), they are stale and must go.
            same_bytes = self._opened_ids.get(path, record.file_id) == record.file_id
            self._opened_ids[path] = record.file_id
        opened = OpenResult(self._register(handle), keep_cache=same_bytes and not overwriting,
                            direct_io=overwriting or size != (record.bytes or size))  # kernel may hold the listed size
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

    def create(self, path: str, flags: int = os.O_WRONLY | os.O_CREAT) -> OpenResult:
        purpose = self._writable_purpose(path)
        filename = path.rsplit("/", 1)[1]
        if not is_scratch(filename):  # a tool's temporary name is taken whatever its extension
            check_create(purpose, filename)
        if self._pending.get(path) is not None or self._is_stored(path):
            # The name exists after all: another program created it since this one looked (two `cp` to
            # one new name), or the kernel trusted a negative entry older than the file. Without O_EXCL
            # that is an open, as on a local disk; the kernel thinks it created the file, so O_TRUNC is ours.
            if flags & os.O_EXCL:
                raise _Errno(errno.EEXIST, path)
            opened = self._open_write(path, flags)
            if flags & os.O_TRUNC:
                self.truncate(path, 0)
            return opened
        assert self._landing is not None
        landing = self._landing
        pending, made = self._pending.add(path, lambda: PendingFile(path, purpose, filename, landing))
        if not made:  # created by another program between the check and now: open it as above
            return self.create(path, flags)
        pending.attach(writable=True)
        descriptor = WriteDescriptor(pending, writable=True, append=bool(flags & os.O_APPEND))
        return OpenResult(self._register(descriptor), direct_io=True)

    def _is_stored(self, path: str) -> bool:
        try:
            return isinstance(self.namespace.lookup(path), FileNode)
        except NotFoundError:
            return False

    def _open_write(self, path: str, flags: int) -> OpenResult:
        while True:
            pending = self._pending_for_writing(path, flags)
            if isinstance(pending, OpenResult):
                return pending
            pending.attach(writable=True)
            if self._pending.get(path) is pending:
                descriptor = WriteDescriptor(pending, writable=True, append=bool(flags & os.O_APPEND))
                return OpenResult(self._register(descriptor), direct_io=True)
            pending.detach(writable=True)  # let go by its last descriptor meanwhile: take the path afresh

    def _pending_for_writing(self, path: str, flags: int) -> PendingFile | OpenResult:
        pending = self._pending.get(path)
        if pending is None:
            try:
                node = self.namespace.lookup(path)
            except NotFoundError:
                # The kernel opens (never creates) a name it still remembers from a file that is gone, a
                # failed upload's for instance: O_CREAT was stripped on the way, so honour it here.
                return self.create(path, flags)
            if not isinstance(node, FileNode):
                raise _Errno(errno.EISDIR, path)
            record = node.record
            purpose = self._writable_purpose(path)  # a purpose folder's file; /.by-id is read-only
            filename = record.filename or path.rsplit("/", 1)[1]
            assert self._landing is not None
            landing = self._landing
            pending, _ = self._pending.add(path, lambda: PendingFile(
                path, purpose, filename, landing, replaces=record, base=lambda: self._file_chunks(record)))
        return pending

    def _file_chunks(self, record: FileRecord) -> Iterator[bytes]:
        size = self.size_of(record)
        for offset in range(0, size, _BASE_CHUNK):
            yield self._remote(lambda o=offset: self.reader.read(record.file_id, size, o, _BASE_CHUNK), record)

    def _handle(self, fh: int) -> ReadHandle | WriteDescriptor:
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
        if isinstance(handle, WriteDescriptor):
            return handle.file.read(offset, size)
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
            self.on_read(False)
            return span
        waited_for_network()  # forget what an earlier call on this thread waited for
        data = self._remote(lambda: self.reader.read(record.file_id, handle.size, offset, size, fetch, caller=fh),
                            record)
        self.on_read(waited_for_network())
        return data

    def write(self, fh: int, data: bytes, offset: int) -> int:
        handle = self._handle(fh)
        if not isinstance(handle, WriteDescriptor) or not handle.writable:
            raise _Errno(errno.EBADF, "file not open for writing")
        return handle.file.write(data, offset, append=handle.append)

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        """``truncate(2)`` by path, or ``ftruncate(2)`` on descriptor ``fh``. An O_TRUNC open's truncate comes
        without one (the kernel drops it), so a descriptor's truncate is an edit in place: the path shows
        the writer's size at once, as ``fstat`` on a local disk would."""
        pending = self._pending.get(path)
        if pending is None:
            self._writable_purpose(path)
            raise _Errno(errno.EPERM, f"{path}: the platform cannot change a stored file; open it for writing")
        pending.truncate(length, in_place=fh is not None)
        try:
            pending.upload_if_unheld()
        finally:
            if not pending.writers and not pending.readers:
                self._let_go(pending)

    def utimens(self, path: str, mtime_ns: int | None) -> None:
        pending = self._pending.get(path)
        if pending is not None:
            pending.touch(mtime_ns)
            return
        self.accept_metadata(path)

    def accept_metadata(self, path: str) -> None:
        """chmod, chown, utimens of a stored file: the platform keeps none of them, so they succeed without
        effect (as in rclone and gcsfuse) and ``cp -a``, ``rsync -a``, ``tar -x`` and ``mv`` can finish."""
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        if self._pending.get(path) is None:
            self.namespace.lookup(path)  # ENOENT for a missing path

    def flush(self, fh: int) -> None:
        handle = self._handle(fh)
        if isinstance(handle, WriteDescriptor) and handle.writable:
            handle.file.close_writer()  # the last writer's close uploads, and raises the platform's answer

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
        if isinstance(handle, WriteDescriptor) and handle.file.detach(handle.writable):
            self._let_go(handle.file)

    def _let_go(self, pending: PendingFile) -> None:
        """No descriptor is left on ``pending``: it leaves the table unless it lingers."""
        with pending.lock:
            if pending.writers or pending.readers or pending.lingers():
                return  # opened again meanwhile, or waiting for bytes or a rename
            self._pending.remove(pending)
            pending.discard()
            dropped = pending.shows_stored  # an overwrite that never landed: the path is the stored file again
        if dropped:
            self.invalidate(pending.path)

    def _upload(self, spool: Path, purpose: str, filename: str) -> FileRecord:
        assert self.client is not None
        log.info("uploading %s to %s", filename, purpose)
        return self.client.upload(spool, purpose, filename)

    def _landed(self, pending: PendingFile, record: FileRecord, sealed: Sealed, replaced: FileRecord | None) -> None:
        """New bytes are on the platform: seed the cache from the sealed spool, show the file, and only now
        delete the file it replaces."""
        with self._lock:
            self._seeds += 1

        def seeded() -> None:
            sealed.close()
            with self._lock:
                self._seeds -= 1

        if replaced is not None and self._follow_pin is not None:
            self._follow_pin(replaced.file_id, record.file_id, pending.path)  # before seeding: blocks go pinned
        self.reader.seed(record.file_id, sealed.size, sealed.read_at, seeded)
        self.namespace.remember(record)
        with self._lock:
            self._opened_ids.pop(pending.path, None)
        self.invalidate(pending.path)
        if replaced is not None and replaced.file_id != record.file_id:
            self._delete_replaced(replaced)

    def seeding(self) -> int:
        """How many landed files are still being stored in the block cache from their sealed spools."""
        with self._lock:
            return self._seeds

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
        pending = self._pending.get(path)
        if pending is not None:
            # Writers still holding it write into the void, as on a local disk; what it stands for on the
            # platform (the file it was overwriting, or what it landed as) is deleted below.
            stored = pending.unlink()
            self._pending.remove(pending)
            if not pending.writers and not pending.readers:
                pending.discard()
            if stored is not None:
                self._delete(stored)
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
        """A file not uploaded yet (a tool's temporary file) moves, and uploads if its new name is one its
        purpose takes, over whatever that name held (the old id is deleted once the new bytes landed). The
        platform has no rename, so a stored file answers EXDEV and ``mv`` copies and deletes instead."""
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        pending = self._pending.get(old)
        if pending is None or pending.state not in (WriteState.SCRATCH, WriteState.SPOOLING) or pending.shows_stored:
            if pending is None:
                self.namespace.lookup(old)  # ENOENT for a missing path
            raise _Errno(errno.EXDEV, "the platform cannot rename; copy and delete instead")
        purpose = self._writable_purpose(new)
        filename = new.rsplit("/", 1)[1]
        if not is_scratch(filename):
            check_create(purpose, filename)
        if new == old:
            return
        replaces = self._replaced_by_rename(new)
        before = (pending.path, pending.purpose, pending.filename, pending.replaces)
        displaced = self._pending.move(pending, new)
        pending.rename(new, purpose, filename, replaces)
        try:
            pending.upload_after_rename()
        except OSError:
            # A failed rename changes nothing: the file keeps its old name and bytes, the target its own.
            self._pending.remove(pending)
            pending.rename(*before)
            self._pending.put_back(pending, before[0])
            if displaced is not None:
                self._pending.put_back(displaced, new)
            raise
        if displaced is not None:
            displaced.unlink()
            if not displaced.writers and not displaced.readers:
                displaced.discard()
        if not pending.writers and not pending.readers:
            self._let_go(pending)

    def _replaced_by_rename(self, new: str) -> FileRecord | None:
        """The stored file a rename onto ``new`` overwrites, if any."""
        target = self._pending.get(new)
        if target is not None:
            return target.replaces if target.shows_stored else target.record
        try:
            node = self.namespace.lookup(new)
        except NotFoundError:
            return None
        if not isinstance(node, FileNode):
            raise _Errno(errno.EISDIR, new)
        return node.record

    def refuse(self, what: str) -> None:
        """mkdir, rmdir, symlink, link: nothing on the platform they could map to."""
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

    def recover(self) -> list[str]:
        """Account for spools a previous mount left behind (see ``mmfs.recovery``); one line per file."""
        if self._landing is None or self.client is None:
            return []
        return recover_spools(self._landing.spool_dir, self._landing.failed_dir, self.client,
                              remember=self.namespace.remember)

    def destroy(self) -> None:
        for pending in self._pending.all():  # unmounted with files still being written: keep their bytes
            pending.unmount()
        self.reader.close()
        self.namespace.close()
