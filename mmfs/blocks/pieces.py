"""Sub-block ranges fetched for readers that jump around, kept in memory only.

A read after a seek downloads a small range instead of its whole block (see ``SequentialPrefetch``). Those
ranges live here, least recently used first out, within a byte budget; the disk cache keeps holding whole
blocks only, so what it says it holds stays simple. A range is found again when one piece covers the
bytes asked for; a whole block, once fetched, makes the pieces inside it redundant (they just age out).

Concurrency: ``_lock`` guards everything; the bytes themselves are immutable once stored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["PieceCache"]


class PieceCache:
    def __init__(self, budget: int = 16 << 20) -> None:
        self._budget = budget
        self._lock = threading.Lock()
        self._pieces: OrderedDict[tuple[str, int], bytes | bytearray] = OrderedDict()
        self._by_file: dict[str, set[int]] = {}
        self._bytes = 0

    def get(self, file_id: str, start: int, end: int) -> memoryview | None:
        """The bytes ``[start, end)`` of a file when one stored piece covers them."""
        with self._lock:
            for lo in self._by_file.get(file_id, ()):
                data = self._pieces[(file_id, lo)]
                if lo <= start and end <= lo + len(data):
                    self._pieces.move_to_end((file_id, lo))
                    return memoryview(data)[start - lo : end - lo]
        return None

    def prefix(self, file_id: str, start: int, end: int) -> bytes:
        """The bytes from ``start`` on (at most to ``end``) that pieces in a row cover: what a whole block's
        download need not fetch again once a reader that began with small fetches goes on in sequence."""
        got: list[memoryview] = []
        pos = start
        with self._lock:
            starts = sorted(self._by_file.get(file_id, ()))
            for lo in starts:
                data = self._pieces[(file_id, lo)]
                if lo <= pos < lo + len(data):
                    take = memoryview(data)[pos - lo : min(end, lo + len(data)) - lo]
                    got.append(take)
                    pos += len(take)
                    if pos >= end:
                        break
        return b"".join(got)

    def put(self, file_id: str, start: int, data: bytes | bytearray) -> None:
        if len(data) > self._budget:
            return
        key = (file_id, start)
        with self._lock:
            old = self._pieces.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._pieces[key] = data
            self._by_file.setdefault(file_id, set()).add(start)
            self._bytes += len(data)
            while self._bytes > self._budget:
                (victim, lo), dropped = self._pieces.popitem(last=False)
                self._bytes -= len(dropped)
                self._forget_locked(victim, lo)

    def _forget_locked(self, file_id: str, start: int) -> None:
        starts = self._by_file.get(file_id)
        if starts is not None:
            starts.discard(start)
            if not starts:
                del self._by_file[file_id]

    def evict(self, file_id: str) -> None:
        with self._lock:
            for lo in self._by_file.pop(file_id, set()):
                self._bytes -= len(self._pieces.pop((file_id, lo)))
