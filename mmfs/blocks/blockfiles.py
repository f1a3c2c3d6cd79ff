"""Stored blocks as open, checked files: a cached read answered by file descriptor and offset.

libfuse can move bytes from a file descriptor to the kernel itself (``read_buf`` with ``FUSE_BUF_IS_FD``),
with no Python copy and without the GIL. For that a block must be a plain file holding its bytes at a known
offset, which is how the disk store keeps every block (a small header, then the data). Each block file is
checked (its CRC-32C over its key, length and bytes, read in pieces) every time it is opened here, blocks
this process stored itself included, then kept open in a small LRU. Bytes libfuse reads by fd never pass
through Python, so they cannot be checked per read; instead every read first compares the open file's
``fstat`` (inode, size, ctime and mtime, as taken before its check) with what it was: any write to the file
since, by any program, changes its ctime, and the file is checked again before it answers another read.
What this cannot see is a write that reaches the disk without the kernel's file API (a raw device write).

An fd handed to libfuse is read right after the callback returns, in the same thread; nothing tells us when
it is done. So a file pushed out of the LRU is closed only ``grace`` seconds later, never at once: its
number cannot be reused under a read still in flight.

Concurrency: ``_lock`` guards ``_open``, ``_opening`` and ``_graves``; checking a file happens outside it, by
one thread per file (the others wait on its event).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from mmfs.blocks.store import DiskBlockStore, check_framed_file

__all__ = ["BlockFiles", "FileSpan"]

log = logging.getLogger("mmfs.blocks")


@dataclass(frozen=True)
class FileSpan:
    """``length`` bytes at ``offset`` of the open file ``fd``: what a read answers with."""

    fd: int
    offset: int
    length: int


@dataclass(frozen=True)
class _Open:
    file: BinaryIO
    start: int  # where the block's bytes begin in the file
    length: int
    stamp: tuple[int, ...]  # the file's fstat as it was checked (see _stamp)


def _stamp(fd: int) -> tuple[int, ...]:
    """What changes when a file's bytes do: a write moves ctime (which no program can set back)."""
    st = os.fstat(fd)
    return (st.st_ino, st.st_size, st.st_ctime_ns, st.st_mtime_ns)


class BlockFiles:
    def __init__(self, store: DiskBlockStore, capacity: int = 64, grace: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._capacity = max(1, capacity)
        self._grace = grace
        self._clock = clock
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._graves: deque[tuple[float, BinaryIO]] = deque()
        self._opening: dict[str, threading.Event] = {}  # keys being opened and checked right now

    def span(self, key: str, start: int, end: int, length: int | None = None) -> FileSpan | None:
        """Bytes ``[start, end)`` of a stored block as a file span; None when it is not stored, is not
        ``length`` bytes long (a block cut for another size of the file), or is damaged (then it is dropped
        from the store)."""
        entry = self.open(key)
        if entry is None:
            return None
        try:
            changed = _stamp(entry.file.fileno()) != entry.stamp
        except (OSError, ValueError):  # closed under us: treat as changed
            changed = True
        if changed:
            log.warning("cache file of %s changed after its check: checking it again", key)
            self._close_entry(key, entry)
            entry = self.open(key)
            if entry is None:
                return None
        if length is not None and entry.length != length:
            return None
        end = min(end, entry.length)
        return FileSpan(entry.file.fileno(), entry.start + start, max(0, end - start))

    def open(self, key: str) -> _Open | None:
        """The block's file, opened and checked if it is not open yet; a thread that finds another one
        checking the same file waits for it rather than checking it twice."""
        while True:
            with self._lock:
                entry = self._open.get(key)
                if entry is not None:
                    self._open.move_to_end(key)
                    return entry
                busy = self._opening.get(key)
                if busy is None:
                    self._opening[key] = threading.Event()
                    break
            busy.wait()
            with self._lock:
                if key not in self._open:  # it failed its check (or is gone): nothing to wait for
                    return None
        try:
            return self._open_checked(key)
        finally:
            with self._lock:
                self._opening.pop(key).set()

    def _open_checked(self, key: str) -> _Open | None:
        f = self._store.open_file(key)
        if f is None:
            return None
        try:
            stamp = _stamp(f.fileno())  # before the check: a write during it shows at the next read
            found = check_framed_file(f, key)
        except OSError:
            found = None
        if found is None:
            f.close()
            self._store.drop(key)
            return None
        entry = _Open(f, *found, stamp)
        with self._lock:
            self._open[key] = entry
            while len(self._open) > self._capacity:
                _, old = self._open.popitem(last=False)
                self._bury_locked(old.file)
            self._close_expired_locked()
        return entry

    def _close_entry(self, key: str, entry: _Open) -> None:
        with self._lock:
            if self._open.get(key) is entry:
                del self._open[key]
                self._bury_locked(entry.file)

    def forget(self, prefix: str) -> None:
        """Let go of the files of keys starting with ``prefix`` (a file that was deleted)."""
        with self._lock:
            for key in [k for k in self._open if k.startswith(prefix)]:
                self._bury_locked(self._open.pop(key).file)

    def close(self) -> None:
        with self._lock:
            files = [e.file for e in self._open.values()] + [f for _, f in self._graves]
            self._open.clear()
            self._graves.clear()
        for f in files:
            f.close()

    def _bury_locked(self, f: BinaryIO) -> None:
        self._graves.append((self._clock() + self._grace, f))

    def _close_expired_locked(self) -> None:
        now = self._clock()
        while self._graves and self._graves[0][0] <= now:
            self._graves.popleft()[1].close()

