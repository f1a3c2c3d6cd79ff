"""Stored blocks as open, checked files: a cached read answered by file descriptor and offset.

libfuse can move bytes from a file descriptor to the kernel itself (``read_buf`` with ``FUSE_BUF_IS_FD``),
with no Python copy and without the GIL. For that a block must be a plain file holding its bytes at a known
offset, which is how the disk store keeps every block (a small header, then the data). Each block file is
checked once (its CRC, read in pieces) when it is first opened here, then kept open in a small LRU; reads
after that cost no check at all.

An fd handed to libfuse is read right after the callback returns, in the same thread; nothing tells us when
it is done. So a file pushed out of the LRU is closed only ``grace`` seconds later, never at once: its
number cannot be reused under a read still in flight.

Concurrency: ``_lock`` guards ``_open``, ``_opening``, ``_graves`` and ``_checked``; checking a file happens
outside it, by one thread per file (the others wait on its event).
"""

from __future__ import annotations

import logging
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
        self._checked: set[str] = set()  # keys whose file passed its check in this process
        self._opening: dict[str, threading.Event] = {}  # keys being opened and checked right now

    def span(self, key: str, start: int, end: int) -> FileSpan | None:
        """Bytes ``[start, end)`` of a stored block as a file span; None when it is not stored (or damaged,
        in which case it is dropped from the store)."""
        entry = self.open(key)
        if entry is None:
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
                    checked = key in self._checked
                    break
            busy.wait()
            with self._lock:
                if key not in self._open:  # it failed its check (or is gone): nothing to wait for
                    return None
        try:
            return self._open_checked(key, checked)
        finally:
            with self._lock:
                self._opening.pop(key).set()

    def _open_checked(self, key: str, checked: bool) -> _Open | None:
        f = self._store.open_file(key)
        if f is None:
            return None
        found = check_framed_file(f, crc=not checked)
        if found is None:
            f.close()
            self._store.drop(key)
            with self._lock:
                self._checked.discard(key)
            return None
        entry = _Open(f, *found)
        with self._lock:
            self._open[key] = entry
            self._checked.add(key)
            while len(self._open) > self._capacity:
                _, old = self._open.popitem(last=False)
                self._bury_locked(old.file)
            self._close_expired_locked()
        return entry

    def trust(self, key: str) -> None:
        """A block this process just stored from bytes it checked: its file needs no second check."""
        with self._lock:
            self._checked.add(key)

    def forget(self, prefix: str) -> None:
        """Let go of the files of keys starting with ``prefix`` (a file that was deleted)."""
        with self._lock:
            for key in [k for k in self._open if k.startswith(prefix)]:
                self._bury_locked(self._open.pop(key).file)
            self._checked = {k for k in self._checked if not k.startswith(prefix)}

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

