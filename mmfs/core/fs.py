"""The filesystem's logic, FUSE-free: paths and handles in, attributes and bytes out, MmfsError on failure.

The FUSE adapter calls these methods one to one and turns exceptions into errno; everything a test can
check without a kernel lives here. The handle type is chosen at open: a ``ReadHandle`` reads a platform
file through the block cache, a ``WriteDescriptor`` (``mmfs.core.pending_files``) is a descriptor on a file being
written, whose ``PendingFile`` (``mmfs.core.writes``) alone decides when it uploads and what happens on failure.
Every entry of a purpose folder is landed (a platform file) or local (a ``PendingFile``: bytes held here,
with a state and a reason; see ``mmfs.core.writes``). A rename of local bytes is a move in the table of pending
files; a rename of a stored file is a copy under the new name (from the cache, downloading what is
missing) and then a delete of the old id, with the same landing rules. Old ids a landing replaced are
hidden from the tree at once and deleted, tried again in the background (``mmfs.core.write_back``) until done.

What the kernel may cache, decided at open (see doc/SEMANTICS.md):
- a file's bytes never change under its id, so reads keep the page cache (``keep_cache``);
- the first open after a path changed id (an overwrite landed) drops the cached pages;
- a reader opening a file while an overwrite of it is being written reads the old file with
  ``direct_io``, past whatever size the writer's writes made the kernel believe.

Concurrency: FUSE calls in from many threads. ``_lock`` guards ``_handles``, ``_opened_ids``, ``_readers``,
``_doomed`` and ``_seeds``; the table of pending files has its own lock, and each pending file its own.
"""

from __future__ import annotations

import contextlib
import errno
import json
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

from mmfs.api.records import FileRecord
from mmfs.blocks.blockfiles import FileSpan
from mmfs.blocks.ports import FileNamespace, PlatformSource, UploadClient
from mmfs.blocks.prefetch import SequentialPrefetch
from mmfs.blocks.reader import BlockReader, waited_for_network
from mmfs.core.pending_files import PendingFiles, WriteDescriptor
from mmfs.core.recovery import recover_spools
from mmfs.core.refusals import check_name
from mmfs.core.spool import LANDED, Sealed, SpaceKeeper, Spool
from mmfs.core.write_back import DEFAULT_POLICY, WriteBack
from mmfs.core.writes import CannotCheck, Landing, PendingFile, WriteState
from mmfs.errors import AuthError, InvalidParamsError, MmfsError, NotFoundError, ReadOnlyError
from mmfs.private_dir import make_private_dir
from mmfs.purposes import DELETE_PURPOSES
from mmfs.tree.namespace import BY_ID, DirNode, FileNode
from mmfs.tree.open_readers import OpenReaders
from mmfs.tree.platform_names import to_platform
from mmfs.tree.sizes import Sizes

__all__ = ["Attr", "FileSystem", "OpenResult", "ReadHandle"]

log = logging.getLogger("mmfs.fs")

T = TypeVar("T")

_WRITE_FLAGS = 0o3  # O_WRONLY | O_RDWR (O_ACCMODE)
_BASE_CHUNK = 4 << 20
# Blocks loaded from the disk cache ahead of a streaming reader: two keep one block's load (read + checksum,
# a few ms) running while the reader consumes the other, without pushing recent blocks out of memory.
_PRELOAD_BLOCKS = 2
# Opens that find an overwrite landing under them start again this many times at most (each try sees the
# path's newer file; a path overwritten faster than a look-up is not a case to wait out).
_OPEN_TRIES = 3


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
# Where a file is in its write life: landed, or local with its state and reason (see doc/SEMANTICS.md).
STATE_XATTR = "user.mmfs.state"
# The values libfuse puts in a timestamp's nanoseconds for utimensat's UTIME_NOW and UTIME_OMIT (with the
# seconds left 0), as they reach us in nanoseconds since the epoch.
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2


class FileSystem:
    # Whether /.by-id lists the ids mmfs knows; off so du, find and cp -r do not walk every file twice.
    list_by_id = False

    def __init__(
        self,
        namespace: FileNamespace,
        reader: BlockReader,
        source: PlatformSource,
        *,
        uid: int,
        gid: int,
        client: UploadClient | None = None,
        read_only: bool = True,
        upload_purposes: frozenset[str] = frozenset(),
        spool_dir: Path | None = None,
        failed_dir: Path | None = None,
        max_prefetch_blocks: int = 16,
        min_free_space: int = 0,
        free_cache: Callable[[int], int] | None = None,
        follow_pin: Callable[[str, str, str], None] | None = None,
        write_back: WriteBack | None = None,
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
        self.write_back = write_back or WriteBack(DEFAULT_POLICY)
        self._landing = None if spool_dir is None or self.failed_dir is None else Landing(
            spool_dir, self.failed_dir, SpaceKeeper(spool_dir, min_free_space, free_cache), self._upload,
            self._landed, find_landed=self._find_landed, delete=self._delete_quietly, retry_later=self._retry_later,
            existing=lambda purpose, filename: self.namespace.ids_named(purpose, filename))
        self._local_dirs: set[str] = set()  # hidden folders made here (rsync's .~tmp~), local only
        # An id found gone by a listing (deleted elsewhere, or an old version): none of its blocks is served.
        namespace.on_gone = self._gone_elsewhere
        self._opened_ids: dict[str, str] = {}
        self._readers: dict[str, int] = {}  # file_id -> open read handles
        self._doomed: set[str] = set()  # deleted file_ids whose blocks wait for their last reader
        self._open_readers = OpenReaders()  # an overwrite must not cut short a reader of the old file
        self.sizes = Sizes(namespace, source, self._open_readers, self._remote)
        self._next_fh = count(1)
        self._seeds = 0  # uploads whose bytes are still being stored as blocks
        # Tells the kernel to drop what it caches of a path (set by the FUSE adapter). While an overwrite is
        # written the path shows the old file, and the kernel keeps that size for its attribute timeout: a
        # read after the new bytes land would stop at the old size.
        self.invalidate: Callable[[str], None] = lambda path: None
        # Told of every read of a stored file: whether it waited for the network (set by the mount, for
        # status's hit ratio).
        self.on_read: Callable[[bool], None] = lambda waited: None
        # Told of an id deleted by another client before its blocks go (a pin of it is kept, as "gone").
        self.on_gone_elsewhere: Callable[[str], None] = lambda file_id: None

    # -- attributes ---------------------------------------------------------------------------------

    def _dir_attr(self, writable: bool) -> Attr:
        mode = stat_mod.S_IFDIR | (0o755 if writable else 0o555)
        return Attr(mode, 0, self._mounted_ns, self.uid, self.gid, nlink=2)

    def _file_mode(self, purpose: str | None) -> int:
        return stat_mod.S_IFREG | (0o644 if purpose in self.upload_purposes else 0o444)

    def _pending_new(self, path: str) -> PendingFile | None:
        """A file being written that readers see (created here, not an overwrite of a stored file)."""
        pending = self._pending.get(path)
        return pending if pending is not None and not pending.shows_stored else None

    def getattr(self, path: str) -> Attr:
        if path in self._local_dirs:
            return Attr(stat_mod.S_IFDIR | 0o755, 0, self._mounted_ns, self.uid, self.gid, nlink=2)
        pending = self._pending.get(path)
        if pending is not None and pending.shows_own_size:
            return Attr(self._file_mode(pending.purpose), pending.size, pending.mtime_ns, self.uid, self.gid)
        node = self.namespace.lookup(path)
        if isinstance(node, DirNode):
            return self._dir_attr(node.purpose in self.upload_purposes)
        record = node.record
        mtime_ns = (record.created_at or 0) * 1_000_000_000 or self._mounted_ns
        by_id = node.path.lstrip("/").startswith(BY_ID + "/")  # read-only there: writes go by name
        size = self.sizes.at_path(path, record)
        return Attr(self._file_mode(None if by_id else record.purpose), size, mtime_ns, self.uid, self.gid)

    def listed_attr(self, path: str) -> Attr | None:
        """``getattr`` when it costs no request, else None (a file listed without a size that no download
        has told yet): what a folder listing may hand the kernel along with the names."""
        if self._pending.get(path) is None:
            node = self.namespace.lookup(path)
            if isinstance(node, FileNode) and self.sizes.known(node.record) is None:
                return None
        return self.getattr(path)

    def readdir(self, path: str) -> list[str]:
        if path in self._local_dirs:
            return self._pending.names_in(path) + self._local_subdirs(path)
        node = self.namespace.lookup(path)
        if not isinstance(node, DirNode):
            raise _Errno(errno.ENOTDIR, path)
        if path in ("/", ""):
            return self.namespace.root_names()
        if node.purpose is None:  # /.by-id
            return self.namespace.by_id_names() if self.list_by_id else []
        names = list(self.namespace.names(node.purpose))
        folder = f"/{node.purpose}"
        extra = self._pending.names_in(folder) + self._local_subdirs(folder)
        return names + [n for n in extra if n not in names]

    def scratch_files(self) -> list[tuple[str, int]]:
        """Files held only here under a tool's temporary name: (path, size)."""
        return [(f.path, f.size) for f in self._pending.all() if f.state is WriteState.SCRATCH]

    def local_files(self) -> list[dict[str, object]]:
        """Every local file (not landed): path, state (pending, writing, uploading, retrying, refused, local,
        failed), size, and the last error or the platform's reason; ``next_try_s`` for one waiting to retry."""
        found = []
        for pending in sorted(self._pending.all(), key=lambda f: f.path):
            if not pending.is_local and pending.state is not WriteState.FAILED:
                continue
            if pending.state is WriteState.SPOOLING and pending.shows_stored and not pending.dirty:
                continue  # opened for writing, nothing changed: the stored file is still the truth
            info = pending.describe_state()
            waiting = self.write_back.waiting(pending)
            if waiting is not None:
                info["next_try_s"] = round(waiting, 1)
            found.append(info)
        return found

    def retry(self, path: str | None = None) -> list[dict[str, object]]:
        """``mmfs retry [PATH]``: try again now every local file waiting to land or refused under ``path``
        (a file or a folder; all when None), and wait a little for the answers; the files' states after."""
        prefix = None if path in (None, "", "/") else path.rstrip("/")
        chosen = [f for f in self._pending.all()
                  if prefix is None or f.path == prefix or f.path.startswith(prefix + "/")]
        for pending in chosen:
            if pending.retry():
                self.write_back.now(pending)
        self.write_back.idle(timeout=30.0)
        return [pending.describe_state() for pending in chosen]

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
            used += sum(self.sizes.known(r) or 0 for r in records)
        total = ACCOUNT_CAPACITY // block
        free = max(0, total - (used + block - 1) // block)
        return {"f_bsize": 4096, "f_frsize": block, "f_blocks": total, "f_bfree": free, "f_bavail": free,
                "f_files": 1 << 32, "f_ffree": 1 << 32, "f_favail": 1 << 32, "f_namemax": 255}

    def xattrs(self, path: str) -> dict[str, bytes]:
        """A stored file's ``user.minimax.*`` attributes: its id, purpose and creation time (never its URL)."""
        pending = self._pending.get(path)
        if pending is not None and (pending.is_local or pending.state is WriteState.FAILED) and not (
                pending.shows_stored and not pending.dirty):
            info = pending.describe_state()
            state = str(info["state"]) + (f": {info['reason']}" if info.get("reason") else "")
            return {STATE_XATTR: state.encode("utf-8", "replace")}
        if path in self._local_dirs:
            return {}
        node = self.namespace.lookup(path)
        if not isinstance(node, FileNode):
            return {}
        record = node.record
        attrs = {f"{XATTR_PREFIX}file_id": record.file_id.encode(), STATE_XATTR: b"landed"}
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

    def open(self, path: str, flags: int, *, tries: int = _OPEN_TRIES) -> OpenResult:
        if flags & _WRITE_FLAGS:
            return self._open_write(path, flags)
        pending = self._pending_new(path)
        if pending is not None:  # reading a local file: its spool is the truth
            pending.attach(writable=False)
            if self._pending.get(path) is pending:
                return OpenResult(self._register(WriteDescriptor(pending, writable=False)), direct_io=True)
            pending.detach(writable=False)  # it landed and left the table meanwhile: open what landed
        opened = self._open_stored(path)
        # An overwrite may have landed between the look-up and the registration: its old id, hidden and
        # deleted meanwhile, had no reader yet to keep its blocks. Then open what the path shows now.
        if tries > 1 and not self._still_shows(path, self._handle(opened.fh)):
            self.release(opened.fh)
            return self.open(path, flags, tries=tries - 1)
        return opened

    def _open_stored(self, path: str) -> OpenResult:
        node = self.namespace.lookup(path)
        if not isinstance(node, FileNode):
            raise _Errno(errno.EISDIR, path)
        record = node.record
        size = self.sizes.of(record)
        handle = ReadHandle(record, size, SequentialPrefetch(self.reader.block_size, size,
                                                            max_window=self._max_prefetch))
        overwriting = self._pending.get(path) is not None or self._open_readers.others_open(path, record.file_id)
        with self._lock:
            # Pages the kernel holds for this path came from an earlier open through this mount; if that
            # open read another file id (an overwrite landed since), they are stale and must go.
            same_bytes = self._opened_ids.get(path, record.file_id) == record.file_id
            self._opened_ids[path] = record.file_id
        fh = self._register(handle)
        self._open_readers.opened(fh, path, record.file_id, size)
        opened = OpenResult(fh, keep_cache=same_bytes and not overwriting,
                            direct_io=overwriting or size != (record.bytes or size))  # kernel may hold the listed size
        log.debug("open %s for reading: %s", path, opened)
        return opened

    def _still_shows(self, path: str, handle: ReadHandle | WriteDescriptor) -> bool:
        """Whether ``path`` still shows the stored file ``handle`` reads (or shows nothing else instead)."""
        assert isinstance(handle, ReadHandle)
        if self._pending_new(path) is not None:
            return False
        try:
            node = self.namespace.lookup(path)
        except NotFoundError:
            return True  # deleted since: the reader keeps the file it opened, as on a disk
        return not isinstance(node, FileNode) or node.record.file_id == handle.record.file_id

    def _writable_purpose(self, path: str) -> str:
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 3 and path.rsplit("/", 1)[0] in self._local_dirs:
            return parts[0]  # a local-only folder's file: its purpose folder's, never uploaded
        if len(parts) != 2 or parts[0] == BY_ID:
            raise ReadOnlyError(f"{path}: files can be written only inside a purpose folder")
        purpose = parts[0]
        if purpose not in self.upload_purposes:
            raise ReadOnlyError(f"the platform takes no uploads for {purpose}")
        return purpose

    def create(self, path: str, flags: int = os.O_WRONLY | os.O_CREAT) -> OpenResult:
        purpose = self._writable_purpose(path)
        filename = path.rsplit("/", 1)[1]
        local_only = self._in_local_dir(path)
        if not local_only:  # a tool's temporary name is taken whatever its extension
            check_name(path, purpose, filename)
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
        pending, made = self._pending.add(path, lambda: PendingFile(path, purpose, filename, landing,
                                                                    local_only=local_only))
        if not made:  # created by another program between the check and now: open it as above
            return self.create(path, flags)
        pending.attach(writable=True)
        descriptor = WriteDescriptor(pending, writable=True, append=bool(flags & os.O_APPEND))
        return OpenResult(self._register(descriptor), direct_io=True)

    def _in_local_dir(self, path: str) -> bool:
        return path.rsplit("/", 1)[0] in self._local_dirs

    def _local_subdirs(self, folder: str) -> list[str]:
        return [d.rsplit("/", 1)[1] for d in sorted(self._local_dirs) if d.rsplit("/", 1)[0] == folder]

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
            filename = path.rsplit("/", 1)[1]  # the name it shows, which is what it uploads as again
            assert self._landing is not None
            landing = self._landing
            pending, _ = self._pending.add(path, lambda: PendingFile(
                path, purpose, filename, landing, replaces=record, base=lambda: self._file_chunks(record)))
        return pending

    def _file_chunks(self, record: FileRecord) -> Iterator[bytes]:
        size = self.sizes.of(record)
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
        data = self._remote(lambda: self.reader.read(record.file_id, handle.size, offset, size, fetch, caller=fh,
                                                     as_file=as_file), record)
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
        """``mtime_ns`` None, or libfuse's UTIME_NOW (``touch``), is now; UTIME_OMIT leaves it as it is."""
        if mtime_ns == _UTIME_OMIT:
            self.accept_metadata(path)
            return
        if mtime_ns == _UTIME_NOW:
            mtime_ns = None
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
        if self._pending.get(path) is None and path not in self._local_dirs:
            self.namespace.lookup(path)  # ENOENT for a missing path

    def flush(self, fh: int) -> None:
        handle = self._handle(fh)
        if isinstance(handle, WriteDescriptor) and handle.writable:
            try:
                handle.file.close_writer()  # the last writer's close uploads, and raises the platform's answer
            except MmfsError:
                if handle.file.failed_for_good():
                    self._drop_failed(handle.file)
                raise

    def _drop_failed(self, pending: PendingFile) -> None:
        """A write the platform would refuse (too large, a name it takes no file by) leaves the tree when the
        close that reports it returns: the kernel sends RELEASE after close(2) has returned, so an ``ls``
        right after a failed ``cp`` would otherwise still show the name."""
        if self._pending.remove(pending) and pending.shows_stored:
            self.invalidate(pending.path)

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
        outgrown = self._open_readers.closed(fh)
        if outgrown is not None:
            self.invalidate(outgrown)  # the path showed an older file's size for this reader
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
        return self.client.upload(spool, purpose, to_platform(filename))

    def _find_landed(self, purpose: str, filename: str, size: int, since: float,
                     not_ids: frozenset[str]) -> FileRecord | None:
        """The file an earlier try of this upload stored, if it landed (so it is not sent twice)."""
        assert self.client is not None
        not_ids = not_ids | self.namespace.ids_named(purpose, filename)  # old versions, ids being deleted
        try:
            return self.client.find_landed(purpose, to_platform(filename), size, since, not_ids)
        except InvalidParamsError as exc:
            raise CannotCheck(f"{purpose} cannot be listed: {exc}") from None

    def _retry_later(self, pending: PendingFile) -> None:
        self.write_back.later(pending, pending.land_in_background, tries=max(1, pending.tries))

    def _landed(self, pending: PendingFile, record: FileRecord, sealed: Sealed, old: list[FileRecord],
                journal: Path | None) -> Callable[[], None]:
        """New bytes are on the platform: seed the cache from the sealed spool, show the file and hide the old
        ids it replaces at once; the returned step (run without the file's lock) deletes them, tried again
        until done (``journal`` records them until then)."""
        with self._lock:
            self._seeds += 1

        def seeded() -> None:
            sealed.close()
            with self._lock:
                self._seeds -= 1

        replaced = next((r for r in old if r.filename == record.filename), old[0] if old else None)
        if replaced is not None and self._follow_pin is not None:
            self._follow_pin(replaced.file_id, record.file_id, pending.path)  # before seeding: blocks go pinned
        self.reader.seed(record.file_id, sealed.size, sealed.read_at, seeded)
        for gone in old:
            self.namespace.hide(gone.file_id)
        self.namespace.remember(record)
        with self._lock:
            self._opened_ids.pop(pending.path, None)
        self.invalidate(pending.path)

        def then() -> None:
            self._delete_old(old, journal)
            if not pending.writers and not pending.readers:
                self._let_go(pending)

        return then

    def seeding(self) -> int:
        """How many landed files are still being stored in the block cache from their sealed spools."""
        with self._lock:
            return self._seeds

    def _delete_old(self, old: list[FileRecord], journal: Path | None,
                    done: Callable[[], None] = lambda: None, *, try_now: bool = True) -> None:
        """Delete ids new bytes replaced: now, and in the background until done; then drop the journal (or
        tell ``done``)."""
        left = list(old)

        def run() -> bool:
            for record in list(left):
                try:
                    self._delete(record)
                except (NotFoundError, ReadOnlyError):
                    pass  # gone already; or a purpose that cannot delete (its files expire): hidden for good
                except MmfsError as exc:
                    log.warning("could not delete %s (%s), which new bytes replaced: %s; trying again later",
                                record.file_id, record.filename, exc)
                    return False
                left.remove(record)
            if journal is not None:
                journal.unlink(missing_ok=True)
            done()
            return True

        if not try_now or not run():
            self.write_back.later(("delete", tuple(r.file_id for r in old)), run)

    def _delete_quietly(self, record: FileRecord) -> None:
        with contextlib.suppress(NotFoundError):
            self._delete(record)

    # -- deleting and the operations the platform cannot do ---------------------------------------

    def unlink(self, path: str) -> None:
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        if path.lstrip("/").startswith(BY_ID + "/"):
            raise _Errno(errno.EROFS, f"{path}: files under {BY_ID} are read-only; delete them by name")
        pending = self._pending.get(path)
        if pending is not None:
            # Writers still holding it write into the void, as on a local disk; what it stands for on the
            # platform (the files it was replacing, or what it landed as) is deleted below.
            stored = pending.unlink()
            stored += self._landed_unseen(pending)
            self._pending.remove(pending)
            if not pending.writers and not pending.readers:
                pending.discard()
            # The name is gone now: what it stood for on the platform leaves the tree at once and is deleted,
            # tried again in the background if the platform fails (the stored file it replaced must not
            # come back under the name).
            self._delete_later(stored)
            self._open_readers.moved_away(path)
            return
        node = self.namespace.lookup(path)
        if not isinstance(node, FileNode):
            raise _Errno(errno.EISDIR, path)
        try:
            self._delete(node.record)
        except (NotFoundError, ReadOnlyError, AuthError):
            raise  # gone already (ENOENT), a purpose without delete (EACCES), a refused key
        except MmfsError as exc:
            # The platform failed after the client's retries: the rm stands (as on a disk); the file leaves
            # the tree now and is deleted in the background, journalled so a restart finishes it too.
            log.warning("deleting %s failed (%s); it is deleted in the background", path, exc)
            self._delete_later([node.record], try_now=False)
        self._open_readers.moved_away(path)

    def _delete_later(self, records: list[FileRecord], *, try_now: bool = True) -> None:
        """Ids a name no longer stands for: out of the tree now, deleted now or, journalled, later."""
        if not records:
            return
        for record in records:
            self.namespace.hide(record.file_id)
        journal = None
        if self._landing is not None:
            journal = self._landing.spool_dir / f"spool-delete-{records[0].file_id}-{time.time_ns()}.json"
            try:
                make_private_dir(journal.parent)
                journal.write_text(json.dumps({"state": LANDED, "deletes": [r.file_id for r in records],
                                               "purpose": records[0].purpose, "filename": records[0].filename}))
            except OSError as exc:
                log.warning("could not journal the delete of %s: %s", records[0].file_id, exc)
                journal = None
        self._delete_old(records, journal, try_now=try_now)

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
        self.gone(record.file_id)

    def _gone_elsewhere(self, file_id: str) -> None:
        self.on_gone_elsewhere(file_id)
        self.source.forget(file_id)
        self.gone(file_id)

    def gone(self, file_id: str) -> None:
        """An id is gone from the platform (deleted here or elsewhere): no block of it is served again."""
        with self._lock:
            busy = file_id in self._readers
            if busy:
                self._doomed.add(file_id)
        if not busy:
            self.reader.evict(file_id)

    def rename(self, old: str, new: str) -> None:
        """A local file moves (and lands if its new name is one its purpose takes, over whatever that name
        held). A stored file is copied under the new name (from the cache, downloading what is missing) and
        its old id deleted once the copy is safe: landed, or held here under a name that stays local."""
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        if old in self._local_dirs or new in self._local_dirs:
            raise _Errno(errno.EPERM, "local folders cannot be renamed")
        pending = self._pending.get(old)
        if pending is not None and pending.state is WriteState.FAILED:
            assert pending.failure is not None
            raise pending.failure
        stored = pending is None or pending.shows_stored or pending.state is WriteState.LANDED
        record = None
        if stored:
            if pending is not None and pending.state is WriteState.LANDED:
                record = pending.record
            else:
                node = self.namespace.lookup(old)  # ENOENT for a missing path
                if not isinstance(node, FileNode):
                    raise _Errno(errno.EPERM, "purpose folders cannot be renamed")
                if node.path.lstrip("/").startswith(BY_ID + "/"):
                    raise _Errno(errno.EROFS, f"files under {BY_ID} are read-only")
                record = node.record
            assert record is not None
            if record.purpose not in DELETE_PURPOSES:
                raise _Errno(errno.EXDEV, "the platform cannot delete this purpose's files; copy instead")
        purpose = self._writable_purpose(new)
        filename = new.rsplit("/", 1)[1]
        local_only = self._in_local_dir(new)
        if new == old:
            return
        refusal = None
        if not local_only:
            try:
                check_name(new, purpose, filename)
            except MmfsError as exc:
                refusal = exc  # held here with the reason, as the platform would refuse it
        replaces, also = self._replaced_by_rename(new)
        if record is not None and replaces is not None and replaces.file_id == record.file_id:
            replaces = None  # a second name of the same file (not reachable today): nothing replaced
        if stored:
            assert record is not None and self._landing is not None
            landing, source = self._landing, record
            moved = PendingFile(new, purpose, filename, landing, replaces=replaces, supersedes=[source, *also],
                                base=lambda: self._file_chunks(source), local_only=local_only)
            try:
                moved.copy_in()  # the whole file is here before its old id may go
            except OSError:
                moved.discard()
                raise
            moved.mark_changed()
            displaced = self._pending.move(moved, new)
            if pending is not None:
                self._pending.remove(pending)
                pending.unlink()
            self.namespace.hide(source.file_id)
            self.invalidate(old)
            pending = moved
        else:
            assert pending is not None
            also += self._landed_unseen(pending)  # under its old name: goes once it lands under the new
            displaced = self._pending.move(pending, new)
            for extra in also:
                pending.supersedes.append(extra)
        pending.rename(new, purpose, filename, replaces, local_only=local_only, refusal=refusal)
        for gone in pending.supersedes:  # what the old name stood for: not shown under it any more
            self.namespace.hide(gone.file_id)
        # Readers of what either path showed keep their own file (libfuse gives a path renamed over a new
        # inode): neither path holds their size up any more.
        self._open_readers.moved_away(new)
        self._open_readers.moved_away(old)
        if displaced is not None and displaced is not pending:
            displaced.unlink()
            if not displaced.writers and not displaced.readers:
                displaced.discard()
        if pending.state is WriteState.SCRATCH:
            self._delete_superseded(pending)  # its bytes are held here, journalled: the old ids may go
        else:
            pending.upload_after_rename()
        if not pending.writers and not pending.readers:
            self._let_go(pending)

    def link(self, existing: str, new: str) -> None:
        """A hard link, as a copy: a platform file's bytes never change under its id, and an edit through
        either name makes a new file, so a copy behaves as the link would (``gawk -i inplace`` keeps its
        backup this way)."""
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        if self._pending.get(new) is not None or self._is_stored(new) or new in self._local_dirs:
            raise _Errno(errno.EEXIST, new)
        purpose = self._writable_purpose(new)
        filename = new.rsplit("/", 1)[1]
        local_only = self._in_local_dir(new)
        if not local_only:
            check_name(new, purpose, filename)
        source = self._pending.get(existing)
        if source is not None and not source.shows_stored and source.state is not WriteState.LANDED:
            chunks: Callable[[], Iterator[bytes]] = lambda: self._local_chunks(source)  # noqa: E731
        else:
            node = self.namespace.lookup(existing)
            if not isinstance(node, FileNode):
                raise _Errno(errno.EPERM, "folders cannot be linked")
            record = node.record
            chunks = lambda: self._file_chunks(record)  # noqa: E731
        assert self._landing is not None
        made = PendingFile(new, purpose, filename, self._landing, base=chunks, local_only=local_only)
        try:
            made.copy_in()
        except OSError:
            made.discard()
            raise
        made.mark_changed()
        _, added = self._pending.add(new, lambda: made)
        if not added:
            made.discard()
            raise _Errno(errno.EEXIST, new)
        made.rename(new, purpose, filename, None, local_only=local_only)
        if made.state is not WriteState.SCRATCH:
            made.upload_after_rename()
        self._let_go(made)

    @staticmethod
    def _local_chunks(pending: PendingFile) -> Iterator[bytes]:
        offset = 0
        while piece := pending.read(offset, _BASE_CHUNK):
            yield piece
            offset += len(piece)

    def _landed_unseen(self, pending: PendingFile) -> list[FileRecord]:
        """The file an earlier try of ``pending`` may have stored without an answer, if the listing shows it:
        a local file deleted or renamed must not leave it behind."""
        query = pending.unseen_landing()
        if query is None:
            return []
        try:
            found = self._find_landed(*query)
        except MmfsError as exc:
            log.warning("could not check whether an earlier upload of %s landed: %s", pending.filename, exc)
            return []
        return [found] if found is not None else []

    def _delete_superseded(self, pending: PendingFile) -> None:
        """A local file's bytes are safe here (journalled): the old ids it stands for may go. They stay in
        its journal until deleted, so a crash meanwhile deletes them at the next mount."""
        old = list(pending.supersedes)
        if old:
            self._delete_old(old, None, done=lambda: pending.forget_superseded(old))

    def _replaced_by_rename(self, new: str) -> tuple[FileRecord | None, list[FileRecord]]:
        """The stored file a rename onto ``new`` overwrites, if any; and other old ids the file there had
        still to delete."""
        target = self._pending.get(new)
        if target is not None:
            if target.state is WriteState.LANDED:
                return target.record, []
            return target.replaces, list(target.supersedes)
        try:
            node = self.namespace.lookup(new)
        except NotFoundError:
            return None, []
        if not isinstance(node, FileNode):
            raise _Errno(errno.EISDIR, new)
        return node.record, []

    def mkdir(self, path: str) -> None:
        """Only a hidden folder (``.name``) in a purpose folder, local only (rsync's ``.~tmp~``): the
        platform has no folders, so anything else is EPERM."""
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        parts = [p for p in path.split("/") if p]
        inside_local = len(parts) >= 3 and path.rsplit("/", 1)[0] in self._local_dirs  # .git/objects
        hidden = len(parts) == 2 and parts[1].startswith(".") and parts[0] in self.upload_purposes
        if not (inside_local or hidden):
            raise _Errno(errno.EPERM, "the platform has no folders of its own (only hidden local ones)")
        if path in self._local_dirs or self._pending.get(path) is not None or self._is_stored(path):
            raise _Errno(errno.EEXIST, path)
        self._local_dirs.add(path)

    def rmdir(self, path: str) -> None:
        if self.read_only:
            raise _Errno(errno.EROFS, "mounted read-only")
        if path not in self._local_dirs:
            raise _Errno(errno.EPERM, "the platform has no way to remove a purpose folder")
        if self._pending.names_in(path) or self._local_subdirs(path):
            raise _Errno(errno.ENOTEMPTY, path)
        self._local_dirs.discard(path)

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
        """Take back what a previous mount left in the spool folder (see ``mmfs.core.recovery``): local files
        are local again (those waiting to land get their first try now), old ids still to delete are
        hidden and deleted. One line per file."""
        if self._landing is None or self.client is None:
            return []
        adopted: list[PendingFile] = []
        lines = recover_spools(self._landing.spool_dir, self._landing.failed_dir,
                               adopt=lambda fd, spool, meta: self._adopt(fd, spool, meta, adopted),
                               resume_deletes=self._resume_deletes)
        for pending in adopted:
            replaces = [r.file_id for r in ([pending.replaces] if pending.replaces else []) + pending.supersedes]
            if pending.state is WriteState.RETRYING and not pending.land_in_background():
                self._retry_later(pending)
            info = pending.describe_state()
            if pending.state is WriteState.LANDED and pending.record is not None:
                line = f"{pending.filename} ({pending.purpose}) landed after a restart: file {pending.record.file_id}"
                line += f", replacing {', '.join(replaces)}" if replaces else ""
            else:
                line = f"{pending.filename} ({pending.purpose}) is here again after a restart, {info['state']}"
                line += f" ({info['reason']})" if info.get("reason") else ""
            log.warning("%s", line)
            lines.append(line)
        return lines

    def _adopt(self, fd: int, spool_path: Path, meta: dict[str, object], adopted: list[PendingFile]) -> str | None:
        """A closed local file a stopped mount left: in the tree again, as it was. None if its path is
        taken meanwhile (the caller keeps its bytes in failed-uploads/)."""
        assert self._landing is not None
        purpose = str(meta.get("purpose"))
        filename = str(meta.get("filename"))
        path = str(meta.get("path") or f"/{purpose}/{filename}")
        folder = path.rsplit("/", 1)[0]
        local_only = bool(meta.get("local_only"))
        if local_only:
            parts = folder.split("/")
            for depth in range(3, len(parts) + 1):  # the folder and the local folders it is in
                self._local_dirs.add("/".join(parts[:depth]))

        def old(file_id: object) -> FileRecord:
            return FileRecord(str(file_id), None, None, filename, purpose)

        replaces = old(meta["replaces"]) if meta.get("replaces") else None
        supersedes = [old(i) for i in meta.get("supersedes") or []]  # type: ignore[attr-defined]
        landing = self._landing
        made = PendingFile(path, purpose, filename, landing, replaces=replaces, supersedes=supersedes,
                           local_only=local_only, adopt=(Spool(landing.spool_dir, landing.space, meta,
                                                               adopt=(fd, spool_path)), meta))
        _, added = self._pending.add(path, lambda: made)
        if not added:
            made.release_spool()
            return None
        for record in supersedes:
            self.namespace.hide(record.file_id)
        if made.state is WriteState.SCRATCH:
            self._delete_superseded(made)
        adopted.append(made)
        return ""  # said once its first try is done

    def _resume_deletes(self, manifest: Path, meta: dict[str, object]) -> str:
        """A landing whose old ids were not all deleted when the mount stopped: hide them, delete them."""
        purpose = str(meta.get("purpose"))
        old = [FileRecord(str(i), None, None, str(meta.get("filename")), purpose)
               for i in meta.get("deletes") or []]  # type: ignore[attr-defined]
        for record in old:
            self.namespace.hide(record.file_id)
        self._delete_old(old, manifest)
        return (f"{meta.get('filename')} ({purpose}) had landed as file {meta.get('file_id')}; deleting the "
                f"file{'s' if len(old) > 1 else ''} it replaced: {', '.join(r.file_id for r in old)}")

    def destroy(self) -> None:
        self.write_back.close()
        for pending in self._pending.all():  # unmounted with files still here: their journal stays
            pending.unmount()
        self.reader.close()
        self.namespace.close()
