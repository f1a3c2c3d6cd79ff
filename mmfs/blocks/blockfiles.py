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

A block the store evicts is a deleted file, and a deleted file held open keeps its space: on a full disk
the cache would stay full however much it evicts. So the files of evicted blocks are let go of as soon as
the store evicts for room (``let_go_of_evicted``) and whenever a new file is opened: closed at once when no
read was handed their fd in the last ``_IN_FLIGHT`` seconds, else as soon as that much time has passed.

Concurrency: ``_lock`` guards ``_open``, ``_opening``, ``_graves`` and ``_used_at``; checking a file happens
outside it, by one thread per file (the others wait on its event).
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

# How long after a span is handed out its fd may still be read by libfuse (right after the callback
# returns, in the same thread): far more than that takes, far less than an LRU grace.
_IN_FLIGHT = 1.0


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
        self._used_at: dict[str, float] = {}  # when each open file's fd was last handed out

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
                    self._used_at[key] = self._clock()  # under the lock: not closed as evicted meanwhile
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
            self._used_at[key] = self._clock()
            while len(self._open) > self._capacity:
                old_key, old = self._open.popitem(last=False)
                self._bury_locked(old.file, self._used_at.pop(old_key, None))
            self._close_expired_locked()
        self.let_go_of_evicted()
        return entry

    def _close_entry(self, key: str, entry: _Open) -> None:
        with self._lock:
            if self._open.get(key) is entry:
                del self._open[key]
                self._bury_locked(entry.file, self._used_at.pop(key, None))

    def forget(self, prefix: str) -> None:
        """Let go of the files of keys starting with ``prefix`` (a file that was deleted)."""
        with self._lock:
            for key in [k for k in self._open if k.startswith(prefix)]:
                self._bury_locked(self._open.pop(key).file, self._used_at.pop(key, None))

    def close(self) -> None:
        with self._lock:
            files = [e.file for e in self._open.values()] + [f for _, f in self._graves]
            self._open.clear()
            self._graves.clear()
            self._used_at.clear()
        for f in files:
            f.close()

    def let_go_of_evicted(self, wait: bool = False) -> int:
        """Close the open files of blocks the store no longer holds (deleted: their space comes back only
        when they are closed); with ``wait``, also those a read was handed just now, after at most
        ``_IN_FLIGHT`` seconds. Returns the bytes this gives back to the disk."""
        freed, waiting = 0, []
        with self._lock:
            now = self._clock()
            for key, entry in list(self._open.items()):
                size = _deleted_size(entry.file)
                if size is None:
                    continue
                del self._open[key]
                due = self._used_at.pop(key, 0.0) + _IN_FLIGHT
                if due <= now:
                    entry.file.close()
                    freed += size
                elif wait:
                    waiting.append((due, entry.file, size))
                else:
                    self._graves.append((due, entry.file))
            self._close_expired_locked()
        if waiting:
            time.sleep(max(0.0, max(due for due, _, _ in waiting) - self._clock()))
            for _, f, size in waiting:
                f.close()
                freed += size
        return freed

    def _bury_locked(self, f: BinaryIO, used: float | None = None) -> None:
        """Close ``f`` once no read can still be using it: ``grace`` from now, or, for a deleted file whose
        space is wanted back, ``_IN_FLIGHT`` after its last use."""
        due = self._clock() + self._grace
        if _deleted_size(f) is not None:
            due = min(due, (used or 0.0) + _IN_FLIGHT)
        self._graves.append((due, f))

    def _close_expired_locked(self) -> None:
        now = self._clock()
        keep = deque()
        while self._graves:  # not in order of due time: a deleted file's comes sooner
            due, f = self._graves.popleft()
            if due <= now:
                f.close()
            else:
                keep.append((due, f))
        self._graves = keep



def _deleted_size(f: BinaryIO) -> int | None:
    """The bytes a deleted (unlinked) file still holds on disk; None while it has a name."""
    try:
        st = os.fstat(f.fileno())
    except (OSError, ValueError):
        return None
    return st.st_blocks * 512 if st.st_nlink == 0 else None
