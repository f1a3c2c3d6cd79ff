"""The block store: one sparse file per remote file, its blocks at their natural offsets, and a presence map.

For each ``(file_id, block_size)`` the store keeps two files under ``<folder>/files``: ``<name>.data``, a
sparse file holding block ``i`` at byte ``i * block_size`` (so the file's bytes are the remote file's
bytes wherever a block is present), and ``<name>.map``, the presence map: a header naming the file (magic,
block size, file_id), then one fixed record per block (its length, its CRC-32C keyed as ``block_checksum``
does, and a check of the record itself, keyed by the file and the index). A zero record is "absent".

Landing a block: its bytes are written at their offset, then its record. No fdatasync: a process killed
at any point (kill -9, a crash) leaves the kernel's page cache intact, so the record is there only if the
bytes are, and the map says either "absent" or "present with this CRC". A power cut may reorder the two on
disk; that is caught by the rule below, which costs no sync on the write path:

Trust: a block is served only once its bytes matched its record's CRC *in this process*. Blocks this
process landed are checked as they land (the CRC is of the bytes written); every other block (a remount,
after a crash, after another program changed the file) is read back and checked the first time it is
asked for, and a block that fails is a miss (its record cleared, downloaded again). Answers by file
descriptor never pass through Python, so before each one the data file's ``fstat`` (inode, size, ctime,
mtime) is compared with what it was after this process's own last write: any other write to the file, by
any program, changes its ctime, and then the map is read again and every block is checked again before it
is served. Not caught: a write by another program in the instant between one of ours and the ``fstat``
after it (about a millisecond per block landed), and writes that bypass the kernel's file interface.

The index: a diskcache folder (``cache.db``, the same place as the earlier store's, so tools that heal or
measure it keep working) holds one row per present block (its key, its length, the file_id as tag, its
store time). It is the accounting and the LRU for ``size_limit``, written once per block landed (on a
writer thread); reads never touch it. Room is made by evicting least-recently-stored blocks: the record is
cleared, then the block's range is punched out of the data file (``fallocate(PUNCH_HOLE)``), once no read
handed its range by fd can still be in flight (``_IN_FLIGHT``); a file left with no block is removed. On a
filesystem that cannot punch holes, evicting a block evicts its whole file. The index and the maps are
reconciled when the store opens (rows without a present record are dropped, present records without a row
are added), so a crash between a record and its row neither leaks nor hides space.

Earlier formats: an index without this store's format row is the old one-file-per-block store. A bounded
cache of that format is emptied (its blocks read as misses); a pinned store (``keep_old``) is migrated,
block by block, each one checked with the old format's own check first.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import re
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import diskcache
from crc32c import crc32c

from mmfs.blocks.blockfiles import FileSpan
from mmfs.blocks.store import (
    _JOURNAL_ALLOWANCE,
    DiskBlockStore,
    _BlockCache,
    _BytesOnlyDisk,
    _seed,
    _unframe,
    block_checksum,
    block_key,
)
from mmfs.private_dir import make_private_dir

__all__ = ["SparseStore"]

log = logging.getLogger("mmfs.blocks")

_FORMAT_KEY = "\0format"
_FORMAT = b"sparse-1"
_MAP_MAGIC = b"MMS1"
_MAP_HEADER = struct.Struct("<4sQH")  # magic, block size, length of the file_id that follows
_RECORDS_AT = 4096  # records start on a page of their own: a record never straddles two pages
_RECORD = struct.Struct("<QII")  # block length (0: absent), crc32c of the block (keyed), check of the record
# A read by fd is made by libfuse right after the callback returns: far less than this.
_IN_FLIGHT = 1.0
# How long an open file pushed out of the LRU stays open: its fd may still be in a read.
_GRACE = 5.0
_OPEN_FILES = 128
# Disk held beyond a block's bytes: its length rounded up to a filesystem block, plus extent metadata;
# and per file, its two inodes and the map's pages.
_BLOCK_OVERHEAD = 4096
_FILE_OVERHEAD = 16 << 10
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.fallocate.restype = ctypes.c_int


def _punch(fd: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _file_name(file_id: str, block_size: int) -> str:
    """A file's name in the folder: its id when that is a plain one, else a digest (hostile ids)."""
    name = file_id if _SAFE_NAME.fullmatch(file_id) else hashlib.sha256(
        file_id.encode("utf-8", "surrogateescape")).hexdigest()[:40]
    return f"{name}.{block_size}"


def _record_check(seed: int, index: int, length: int, crc: int) -> int:
    return crc32c(struct.pack("<QQI", index, length, crc), seed)


def _split_key(key: str) -> tuple[str, int, int]:
    file_id, size, index = key.rsplit("/", 2)
    return file_id, int(size), int(index)


def _delete_row(cache: _BlockCache, key: str) -> None:
    """Delete a block's row, expired or not (diskcache's own ``delete`` leaves an expired row in place)."""
    with cache._transact(retry=True) as (sql, _cleanup):
        sql("DELETE FROM Cache WHERE key = ? AND raw = 1", (key,))


def _stamp(fd: int) -> tuple[int, ...]:
    st = os.fstat(fd)
    return (st.st_ino, st.st_size, st.st_ctime_ns, st.st_mtime_ns)


class _IndexDisk(_BytesOnlyDisk):
    """The index's values: a block's length (an int, kept in the row), the format marker, and the earlier
    format's framed blocks (bytes) while they are moved or dropped. Pickles stay refused."""

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if isinstance(value, int) and not isinstance(value, bool):
            return diskcache.Disk.store(self, value, read, key=key)
        return super().store(value, read, key=key)


@dataclass(eq=False)
class _File:
    """One remote file's data file and map, open. ``records`` and ``verified`` are read without the lock
    (single dict/set look-ups); every change happens under it."""

    file_id: str
    block_size: int
    data_path: Path
    map_path: Path
    fd: int
    map_fd: int
    seed: int  # the map's record check seed: the file's identity
    records: dict[int, tuple[int, int]] = field(default_factory=dict)  # index -> (length, crc)
    verified: set[int] = field(default_factory=set)
    handed: dict[int, float] = field(default_factory=dict)  # index -> when its range was last handed out
    stamp: tuple[int, ...] = ()
    writing: int = 0  # writes of ours under way: the stamp is refreshed when each ends
    lock: threading.Lock = field(default_factory=threading.Lock)
    gone: bool = False

    def key(self, index: int) -> str:
        return block_key(self.file_id, self.block_size, index)

    def last_handed(self) -> float:
        return max(self.handed.values(), default=0.0)


class SparseStore(DiskBlockStore):
    """Blocks in one sparse file per remote file, indexed for the size bound by diskcache; see the module
    docstring. The index's healing (a removed or corrupted folder under a live mount) is the earlier store's:
    a rebuild also forgets every open file."""

    _disk = _IndexDisk

    def __init__(self, directory: Path, size_limit: int, *, keep_old: bool = False) -> None:
        self._keep_old = keep_old
        self._files_dir = directory / "files"
        self._files: OrderedDict[tuple[str, int], _File] = OrderedDict()
        self._files_lock = threading.Lock()
        self._opening = threading.Lock()
        # (when, fd, removed): closed once no read can still use it; a removed file's space comes back then
        self._graves: list[tuple[float, int, bool]] = []
        self._can_punch = True
        super().__init__(directory, size_limit)

    # -- opening, format, reconciliation -------------------------------------------------------------------

    def _open(self) -> _BlockCache:
        cache = super()._open()
        make_private_dir(self._files_dir)
        if cache.get(_FORMAT_KEY) != _FORMAT:
            self._adopt_old_format(cache)
        self._reconcile(cache)
        return cache

    def _adopt_old_format(self, cache: _BlockCache) -> None:
        """An index without our format row: empty, or the one-file-per-block store's."""
        old = [key for key in cache.iterkeys() if isinstance(key, str) and key != _FORMAT_KEY]
        if old and self._keep_old:
            log.info("block store %s: moving %d blocks of the earlier format into sparse files",
                     self._directory, len(old))
            for key in old:
                self._migrate(cache, key)
        elif old:
            log.info("block store %s: %d blocks of the earlier format dropped (read again as needed)",
                     self._directory, len(old))
        cache.clear()
        cache.set(_FORMAT_KEY, _FORMAT)

    def _migrate(self, cache: _BlockCache, key: str) -> None:
        try:
            value = cache.get(key, default=None)
            file_id, block_size, index = _split_key(key)
        except (ValueError, OSError):
            return
        data = _unframe(value, key) if isinstance(value, bytes) else None
        if data is None:
            return
        f = self._file(file_id, block_size, create=True)
        if f is not None:
            self._land(f, index, data)

    def _reconcile(self, cache: _BlockCache) -> None:
        """Make the index say what the maps say: present records are the truth about bytes."""
        rows: dict[str, int] = {}
        for key in cache.iterkeys():
            if key != _FORMAT_KEY:
                rows[key] = 1
        present: dict[str, tuple[str, int]] = {}
        for map_path in self._files_dir.glob("*.map"):
            parsed = self._read_map(map_path)
            if parsed is None or map_path.name != f"{_file_name(parsed[0], parsed[1])}.map":
                self._unlink(map_path.with_suffix(".data"), map_path)  # torn, or another file's under its name
                continue
            file_id, block_size, records = parsed
            for index, (length, _crc) in records.items():
                present[block_key(file_id, block_size, index)] = (file_id, length)
        for data_path in self._files_dir.glob("*.data"):
            if not data_path.with_suffix(".map").exists():
                self._unlink(data_path)
        for key in rows.keys() - present.keys():
            _delete_row(cache, key)
        for key in present.keys() - rows.keys():
            file_id, length = present[key]
            cache.set(key, length, tag=file_id)

    def _rebuild(self, broken: _BlockCache | None, why: object) -> None:
        before = self._cache
        super()._rebuild(broken, why)
        if self._cache is not before:  # a new index: the files it does not know are not ours to serve
            with self._files_lock:
                stale = list(self._files.values())
                self._files.clear()
            for f in stale:
                self._bury(f)

    # -- maps ----------------------------------------------------------------------------------------------

    @staticmethod
    def _seed(file_id: str, block_size: int) -> int:
        return crc32c(f"{file_id}\n{block_size}\n".encode("utf-8", "surrogateescape"))

    @classmethod
    def _header(cls, file_id: str, block_size: int) -> bytes:
        name = file_id.encode("utf-8", "surrogateescape")
        return _MAP_HEADER.pack(_MAP_MAGIC, block_size, len(name)) + name

    @classmethod
    def _parse_map(cls, raw: bytes) -> tuple[str, int, dict[int, tuple[int, int]]] | None:
        if len(raw) < _MAP_HEADER.size:
            return None
        magic, block_size, name_len = _MAP_HEADER.unpack_from(raw)
        if magic != _MAP_MAGIC or block_size <= 0 or _MAP_HEADER.size + name_len > _RECORDS_AT:
            return None
        name = raw[_MAP_HEADER.size : _MAP_HEADER.size + name_len]
        if len(name) != name_len:
            return None
        file_id = name.decode("utf-8", "surrogateescape")
        seed = cls._seed(file_id, block_size)
        records = {}
        for pos in range(_RECORDS_AT, len(raw) - _RECORD.size + 1, _RECORD.size):
            length, crc, check = _RECORD.unpack_from(raw, pos)
            if not length:
                continue
            index = (pos - _RECORDS_AT) // _RECORD.size
            if length <= block_size and check == _record_check(seed, index, length, crc):
                records[index] = (length, crc)
        return file_id, block_size, records

    def _read_map(self, path: Path) -> tuple[str, int, dict[int, tuple[int, int]]] | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        return self._parse_map(raw)

    def _write_record(self, f: _File, index: int, length: int, crc: int) -> None:
        check = _record_check(f.seed, index, length, crc) if length else 0
        record = _RECORD.pack(length, crc if length else 0, check)
        if os.pwrite(f.map_fd, record, _RECORDS_AT + index * _RECORD.size) != len(record):
            raise OSError(errno.EIO, "short write of a block record")

    # -- open files ----------------------------------------------------------------------------------------

    def _file(self, file_id: str, block_size: int, *, create: bool) -> _File | None:
        """The file's open state; None when it is not stored (and ``create`` is false) or cannot be opened."""
        ident = (file_id, block_size)
        with self._files_lock:
            f = self._files.get(ident)
            if f is not None:
                self._files.move_to_end(ident)
                return f
        name = _file_name(file_id, block_size)
        data_path, map_path = self._files_dir / f"{name}.data", self._files_dir / f"{name}.map"
        if not create and not map_path.exists():
            return None
        # One opening at a time: a fresh map truncates the data file, which must never race a state that
        # another thread has just opened and landed blocks in.
        with self._opening:
            with self._files_lock:
                other = self._files.get(ident)
            if other is not None:
                return other
            try:
                f = self._open_file_pair(file_id, block_size, data_path, map_path, create)
            except OSError as exc:
                if create:
                    log.warning("cannot open the cache file of %s: %s", file_id, exc)
                return None
            if f is None:
                return None
            with self._files_lock:
                self._files[ident] = f
                pushed_out = []
                while len(self._files) > _OPEN_FILES:
                    pushed_out.append(self._files.popitem(last=False)[1])
        for old in pushed_out:
            self._bury(old, _GRACE)
        self._close_due()  # those pushed out earlier, once their grace is over
        return f

    def _open_file_pair(self, file_id: str, block_size: int, data_path: Path, map_path: Path,
                        create: bool) -> _File | None:
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        if create:
            make_private_dir(self._files_dir)
        map_fd = os.open(map_path, flags, 0o600)
        try:
            raw = b""
            size = os.fstat(map_fd).st_size
            if size:
                raw = os.pread(map_fd, size, 0)
            parsed = self._parse_map(raw) if raw else None
            if parsed is not None and (parsed[0], parsed[1]) != (file_id, block_size):
                log.warning("cache map %s names another file: starting it afresh", map_path.name)
                parsed = None
            fresh = parsed is None
            if fresh and not create:
                os.close(map_fd)
                return None
            fd = os.open(data_path, flags | (os.O_CREAT if fresh else 0), 0o600)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(map_fd)
            raise
        if fresh:  # a map that is new, torn or not this file's: nothing in the data file is known
            os.ftruncate(fd, 0)
            os.ftruncate(map_fd, 0)
            os.pwrite(map_fd, self._header(file_id, block_size), 0)
        f = _File(file_id, block_size, data_path, map_path, fd, map_fd, self._seed(file_id, block_size),
                  records={} if parsed is None else parsed[2])
        f.stamp = _stamp(fd)
        return f

    def _bury(self, f: _File, grace: float = 0.0) -> None:
        """Close ``f``'s files once no read handed its fd can still be using it."""
        with f.lock:  # no write of ours uses the fd after this
            f.gone = True
        due = max(time.monotonic() + grace, f.last_handed() + _IN_FLIGHT)
        with self._files_lock:
            self._graves.append((due, f.fd, not grace))
        with contextlib.suppress(OSError):
            os.close(f.map_fd)
        if not grace:  # a removed file's space comes back when it is closed: do not wait for the next open
            timer = threading.Timer(max(0.0, due - time.monotonic()) + 0.01, self._close_due)
            timer.daemon = True
            timer.start()

    def _close_due(self, wait: bool = False) -> None:
        if wait:
            with self._files_lock:
                last = max((due for due, _, removed in self._graves if removed), default=0.0)
            time.sleep(max(0.0, last - time.monotonic()))
        with self._files_lock:
            now = time.monotonic()
            due_now = [fd for due, fd, _ in self._graves if due <= now]
            self._graves = [grave for grave in self._graves if grave[0] > now]
        for fd in due_now:
            with contextlib.suppress(OSError):
                os.close(fd)

    @staticmethod
    def _close_now(f: _File) -> None:
        for fd in (f.fd, f.map_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _unlink(self, *paths: Path) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _check_stamp(self, f: _File) -> None:
        """If anything but this process wrote the data file since we last knew it, read the map again and
        check every block again before serving it. Under ``f.lock``."""
        try:
            stamp = _stamp(f.fd)
        except OSError:
            return
        if stamp == f.stamp:
            return
        log.warning("cache file of %s changed outside mmfs: checking its blocks again", f.file_id)
        size = os.fstat(f.map_fd).st_size
        parsed = self._parse_map(os.pread(f.map_fd, size, 0)) if size else None
        if parsed is None or (parsed[0], parsed[1]) != (f.file_id, f.block_size):
            f.records = {}
        else:
            f.records = parsed[2]
        f.verified = set()
        f.stamp = stamp

    # -- landing, checking, evicting one block -------------------------------------------------------------

    def _land(self, f: _File, index: int, data: bytes | bytearray | memoryview) -> bool:
        """Bytes first, then the record; the record is written only once every byte is."""
        view = memoryview(data).cast("B")
        crc = block_checksum(f.key(index), view)
        with f.lock:
            if f.gone:
                return False
            self._check_stamp(f)
            f.writing += 1
            try:
                pos = 0
                try:
                    while pos < len(view):
                        pos += os.pwrite(f.fd, view[pos:], index * f.block_size + pos)
                except OSError:
                    with contextlib.suppress(OSError):  # no partial block left holding disk
                        _punch(f.fd, index * f.block_size, f.block_size)
                    raise
                self._write_record(f, index, len(view), crc)
                f.records[index] = (len(view), crc)
                f.verified.add(index)
            finally:
                f.stamp = _stamp(f.fd)
                f.writing -= 1
        return True

    def _verify(self, f: _File, index: int) -> bool:
        """Read the block back and check it against its record, outside the file's lock: a reader checking
        one block never waits for a preload checking the next ones."""
        with f.lock:
            self._check_stamp(f)
            if f.gone:
                return False
            if index in f.verified:
                return True
            record = f.records.get(index)
        if record is None:
            return False
        length, crc = record
        running = _seed(f.key(index), length)
        pos, start = 0, index * f.block_size
        buf = memoryview(bytearray(min(length, 1 << 20)))
        try:
            while pos < length:
                got = os.preadv(f.fd, [buf[: min(len(buf), length - pos)]], start + pos)
                if got <= 0:
                    break
                running = crc32c(buf[:got], running)
                pos += got
        except OSError:
            pos = -1
        with f.lock:
            if f.records.get(index) != record or f.gone:  # changed meanwhile: not what was checked
                return False
            if pos == length and running == crc:
                f.verified.add(index)
                return True
            log.warning("cache entry %s failed its check: dropping it", f.key(index))
            self._clear(f, index)
            return False

    def _clear(self, f: _File, index: int) -> None:
        """Forget a block: its record first (no new read is handed its range), then its bytes, once no read
        handed them can still be in flight. Under ``f.lock``."""
        if f.records.pop(index, None) is None:
            return
        served = index in f.verified  # a block never checked here was never handed to a read
        f.verified.discard(index)
        with contextlib.suppress(OSError):
            self._write_record(f, index, 0, 0)
        due = f.handed.get(index, 0.0) + _IN_FLIGHT
        wait = due - time.monotonic() if served else 0.0
        if wait > 0:
            time.sleep(wait)
        f.writing += 1
        try:
            if self._can_punch:
                try:
                    _punch(f.fd, index * f.block_size, f.block_size)
                except OSError as exc:
                    if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS):
                        log.warning("the cache's filesystem cannot punch holes: evicting whole files")
                        self._can_punch = False
                    else:  # the record is cleared: never served; reconciled at the next open
                        log.warning("could not free block %s of %s: %s", index, f.file_id, exc)
        finally:
            with contextlib.suppress(OSError):
                f.stamp = _stamp(f.fd)
            f.writing -= 1

    def _forget_file(self, f: _File) -> None:
        """Remove the file's data and map (its open fd lives on until no read can use it)."""
        with self._files_lock:
            if self._files.get((f.file_id, f.block_size)) is f:
                del self._files[(f.file_id, f.block_size)]
        self._unlink(f.map_path, f.data_path)
        self._bury(f)

    # -- BlockStore ----------------------------------------------------------------------------------------

    def _located(self, key: str, create: bool = False) -> tuple[_File, int] | None:
        try:
            file_id, block_size, index = _split_key(key)
        except ValueError:
            return None
        f = self._file(file_id, block_size, create=create)
        return None if f is None else (f, index)

    def get(self, key: str) -> bytearray | None:
        self._check_identity()  # a read that misses is where a removed or replaced index is noticed
        found = self._located(key)
        if found is None:
            return None
        f, index = found
        with f.lock:
            self._check_stamp(f)
            record = f.records.get(index)
            if record is None:
                return None
            length, crc = record
            buf = bytearray(length)
            try:
                got = os.preadv(f.fd, [buf], index * f.block_size)
            except OSError:
                got = -1
            if got == length and block_checksum(key, buf) == crc:
                f.verified.add(index)
                return buf
            log.warning("cache entry %s failed its check: dropping it", key)
            self._clear(f, index)
        self._drop_row(key)
        return None

    def keeps_files(self) -> bool:
        return False  # one file per remote file: reads by fd go through ``span``

    def open_file(self, key: str) -> None:
        """No block has a file of its own here: reads by fd go through ``span``."""
        return None

    def contains(self, key: str) -> bool:
        self._check_identity()
        found = self._located(key)
        return found is not None and found[1] in found[0].records

    def holds(self, key: str) -> bool:
        """Whether the block's record says present and the data file reaches its end (its bytes are not
        read: ``get`` checks them)."""
        found = self._located(key)
        if found is None:
            return False
        f, index = found
        with f.lock:
            self._check_stamp(f)
            record = f.records.get(index)
            try:
                return record is not None and os.fstat(f.fd).st_size >= index * f.block_size + record[0]
            except OSError:
                return False

    def span(self, file_id: str, block_size: int, start: int, end: int, file_size: int) -> FileSpan | None:
        """Bytes ``[start, end)`` of the remote file (``end`` within ``file_size``) as a span of its data
        file, when every block they touch is present, of the length ``file_size`` calls for, and checked in
        this process; else None."""
        if start >= end:
            return None
        f = self._file(file_id, block_size, create=False)
        if f is None or f.gone:
            return None
        first, last = start // block_size, (end - 1) // block_size
        now = time.monotonic()
        for index in range(first, last + 1):
            f.handed[index] = now  # before looking: an eviction that clears it after this waits for us
        try:
            stamp = _stamp(f.fd)
        except OSError:
            return None
        fast = stamp == f.stamp or f.writing > 0  # our own write under way refreshes the stamp when done
        for index in range(first, last + 1):
            want = min(block_size, file_size - index * block_size)
            record = f.records.get(index)
            if record is None or record[0] != want:
                return None
            if fast and index in f.verified:
                continue
            if not self._verify(f, index):
                if index not in f.records:  # failed its check and cleared: its row goes too
                    self._drop_row(f.key(index))
                return None
        return FileSpan(f.fd, start, end - start)

    def drop(self, key: str) -> None:
        found = self._located(key)
        if found is not None:
            f, index = found
            with f.lock:
                self._clear(f, index)
        self._drop_row(key)

    def _drop_row(self, key: str) -> None:
        self._using(lambda cache: _delete_row(cache, key), None)

    def put(self, key: str, data: bytes | bytearray | memoryview, file_id: str) -> None:
        # One stat per block landed: reads never touch the index, so landing is where a removed or
        # replaced folder must be noticed, before a block is written into a folder no index knows.
        self._next_check = 0.0
        self._check_identity()  # rebuilt now, the block lands in the new folder
        if self._cache is None:  # another thread is rebuilding it (under the lock): land after it
            with self._lock:
                pass
        self._using(lambda cache: self._put(cache, key, data, file_id), None)

    def _put(self, cache: _BlockCache, key: str, data: bytes | bytearray | memoryview,  # type: ignore[override]
             file_id: str) -> None:
        try:
            fid, block_size, index = _split_key(key)
        except ValueError:
            return
        need = len(data) + _BLOCK_OVERHEAD + _FILE_OVERHEAD
        with self._lock:
            if need + _JOURNAL_ALLOWANCE > self._size_limit:
                return  # larger than the whole cache: never stored
            self._make_room(cache, self._pending + need)
            self._pending += need
        try:
            for _ in range(3):  # a file let go of meanwhile (pushed out, rebuilt, evicted): open it again
                f = self._file(fid, block_size, create=True)
                if f is None:
                    return
                if self._land(f, index, data):
                    break
            else:
                return
            cache.set(key, len(data), tag=file_id, expire=self.max_age)
        except OSError as exc:  # a full disk must not fail the read that fetched the block
            log.warning("could not store block %s: %s", key, exc)
        finally:
            with self._lock:
                self._pending = max(0, self._pending - need)
        self._close_due()

    def _footprint(self, cache: _BlockCache) -> int:
        blocks, total, files = cache._sql(
            "SELECT COUNT(*), COALESCE(SUM(value), 0), COUNT(DISTINCT tag) FROM Cache WHERE tag IS NOT NULL"
        ).fetchone()
        return (cache.volume() + _JOURNAL_ALLOWANCE + int(total or 0) + blocks * _BLOCK_OVERHEAD
                + files * _FILE_OVERHEAD)

    def _make_room(self, cache: _BlockCache, need: int) -> None:
        while self._footprint(cache) + need > self._size_limit:
            if not self._evict_oldest(cache):
                return

    def _evict_oldest(self, cache: _BlockCache) -> bool:
        row = cache._sql("SELECT key FROM Cache WHERE tag IS NOT NULL ORDER BY store_time LIMIT 1").fetchone()
        if row is None:
            return False
        self._evict_key(cache, row[0])
        return True

    def _evict_key(self, cache: _BlockCache, key: str) -> None:
        _delete_row(cache, key)
        found = self._located(key)
        if found is None:
            return
        f, index = found
        with f.lock:
            self._clear(f, index)
            whole = not f.records or not self._can_punch
            others = list(f.records) if whole else []
            if whole:
                f.gone = True  # no block lands in it any more
        if whole:
            for other in others:
                _delete_row(cache, f.key(other))
            self._forget_file(f)

    def evict_file(self, file_id: str) -> int:
        return self._using(lambda cache: self._evict_file(cache, file_id), 0)

    def _evict_file(self, cache: _BlockCache, file_id: str) -> int:
        with cache._transact(retry=True) as (sql, _cleanup):
            count = sql("DELETE FROM Cache WHERE tag = ?", (file_id,)).rowcount
        with self._files_lock:
            mine = [f for (fid, _), f in self._files.items() if fid == file_id]
        for f in mine:
            self._forget_file(f)
        for map_path in self._files_dir.glob(f"{_file_name(file_id, 0).rsplit('.', 1)[0]}.*.map"):
            parsed = self._read_map(map_path)
            if parsed is None or parsed[0] == file_id:
                self._unlink(map_path, map_path.with_suffix(".data"))
        return count

    def volume(self) -> int:
        return self._using(self._footprint, 0)

    def _free_bytes(self, cache: _BlockCache, wanted: int) -> int:  # type: ignore[override]
        before = self._footprint(cache)
        with self._lock:
            while before - self._footprint(cache) < wanted and self._evict_oldest(cache):
                pass
        self._close_due(wait=True)
        return max(0, before - self._footprint(cache))

    def let_go_of_evicted(self, wait: bool = False) -> int:
        """Close the fds of removed files (their space comes back only then); with ``wait``, also those a
        read was handed just now, after at most ``_IN_FLIGHT`` seconds."""
        self._close_due(wait=wait)
        return 0

    def count(self) -> int:
        return self._using(lambda cache: max(0, len(cache) - 1), 0)

    def file_ids(self) -> set[str]:
        return self._using(
            lambda cache: {str(tag) for (tag,) in cache._sql(
                "SELECT DISTINCT tag FROM Cache WHERE tag IS NOT NULL").fetchall()}, set())

    def clear(self) -> None:
        self._using(self._clear_all, None)

    def _clear_all(self, cache: _BlockCache) -> None:
        with self._files_lock:
            states = list(self._files.values())
        for f in states:
            self._forget_file(f)
        for path in list(self._files_dir.glob("*.map")) + list(self._files_dir.glob("*.data")):
            self._unlink(path)
        cache.clear()
        cache.set(_FORMAT_KEY, _FORMAT)

    def expire(self) -> int:
        return self._using(self._expire, 0)

    def _expire(self, cache: _BlockCache) -> int:
        rows = cache._sql("SELECT key FROM Cache WHERE tag IS NOT NULL AND expire_time IS NOT NULL "
                          "AND expire_time < ?", (time.time(),)).fetchall()
        with self._lock:
            for (key,) in rows:
                self._evict_key(cache, key)
        return len(rows)

    def close(self) -> None:
        with self._files_lock:
            states = list(self._files.values())
            self._files.clear()
            graves = [fd for _, fd, _ in self._graves]
            self._graves = []
        for f in states:
            self._close_now(f)
        for fd in graves:
            with contextlib.suppress(OSError):
                os.close(fd)
        super().close()

