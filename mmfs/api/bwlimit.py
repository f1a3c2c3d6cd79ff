"""``--bwlimit``: a ceiling on the bytes per second a mount moves to and from the platform, one budget per
direction shared by all its transfers (rclone's ``--bwlimit UP:DOWN``).

A transfer asks ``consume(n)`` for each chunk it moved and sleeps until those bytes are paid for at the
rate: the pace is held on average; after an idle spell at most a quarter of a second's worth goes at once.
"""

from __future__ import annotations

import threading
import time
from typing import BinaryIO

__all__ = ["RateLimit", "ThrottledReader"]

# How far ahead of the pace a transfer may run after an idle spell: a quarter second's worth of bytes.
_BURST_SECONDS = 0.25


class RateLimit:
    """Bytes per second, shared by every caller; thread-safe."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()  # when the bytes taken so far have been "paid for"

    def consume(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now - _BURST_SECONDS)
            self._next = start + n / self.rate
            wait = self._next - now
        if wait > 0:
            time.sleep(wait)


class ThrottledReader:
    """A file read through a ``RateLimit`` (an upload's body): ``read`` waits for the budget; the rest of
    what the multipart encoder asks of a file (its descriptor, for its size; a seek to its start) is the
    file's."""

    def __init__(self, raw: BinaryIO, limit: RateLimit) -> None:
        self._raw = raw
        self._limit = limit

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self._limit.consume(len(data))
        return data

    def readinto(self, buffer: memoryview) -> int:
        n = self._raw.readinto(buffer) or 0
        if n:
            self._limit.consume(n)
        return n

    def fileno(self) -> int:
        return self._raw.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)
