"""How many block downloads run at once: more while more make the aggregate faster.

One connection is limited by what the server gives it (many object stores and CDNs cap each connection) and
by its round trips (a 4 MiB block over a link with 80 ms of latency spends a good part of its time waiting).
More connections at once lift both limits, up to the link's; past that they only cost memory and, in
Python, CPU and lock waits that slow every other download. So the number is measured, not fixed:
``StreamControl`` starts at ``start`` streams and, each time downloads were held back by the limit for a
full measurement (so the limit, not the readers, set the pace), compares the aggregate rate with the best
seen at fewer streams. A rise of at least ``gain`` earns twice the streams, up to ``max_streams``; none
sends the limit back to where the best was, which is tried again after ``retry_after`` seconds, since
links change. Pure logic: the caller says what landed, what waited, and when.

``StreamGate`` holds background downloads to the controller's limit. Downloads a reader waits for
never wait here: they count in the rate, and the in-flight memory budget bounds them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["StreamControl", "StreamGate"]


class StreamControl:
    def __init__(self, max_streams: int, *, start: int = 8, interval: float = 0.5, gain: float = 1.15,
                 retry_after: float = 10.0) -> None:
        self.max_streams = max(1, max_streams)
        self.limit = min(max(1, start), self.max_streams)
        self._interval = interval
        self._gain = gain
        self._retry_after = retry_after
        self._best_rate = 0.0
        self._best_limit = self.limit
        self._hold_until: float | None = None
        self._began: float | None = None
        self._bytes = 0
        self._landed = 0
        self._held_back = False

    def landed(self, nbytes: int, now: float) -> None:
        """A download of ``nbytes`` finished at ``now``."""
        if self._began is None:
            self._began = now
        self._bytes += nbytes
        self._landed += 1
        self._judge(now)

    def held_back(self, now: float) -> None:
        """A download had to wait for the limit at ``now``: the readers want more than it allows."""
        if self._began is None:
            self._began = now
        self._held_back = True

    def _judge(self, now: float) -> None:
        assert self._began is not None
        elapsed = now - self._began
        # Long enough to be a rate, and every stream has landed a couple of blocks (a new one ramps up).
        if elapsed < self._interval or self._landed < 2 * self.limit:
            return
        rate = self._bytes / elapsed
        saturated = self._held_back
        self._began, self._bytes, self._landed, self._held_back = now, 0, 0, False
        if not saturated:
            return  # the readers set the pace, not the limit: nothing learnt about streams
        if self._hold_until is not None:
            if now < self._hold_until:
                return
            # Time to try for more again: what the best number of streams gives now is the new mark.
            self._hold_until = None
            self._best_rate, self._best_limit = rate, self.limit
            self._grow()
            return
        if rate >= self._best_rate * self._gain:
            self._best_rate, self._best_limit = rate, self.limit
            self._grow()
        else:
            self.limit = self._best_limit
            self._hold_until = now + self._retry_after

    def _grow(self) -> None:
        if self.limit < self.max_streams:
            self.limit = min(self.max_streams, self.limit * 2)
        else:
            self._hold_until = None  # at the top: stay, and keep measuring


class StreamGate:
    """Background downloads, held to ``StreamControl``'s limit (thread-safe)."""

    def __init__(self, control: StreamControl, clock: Callable[[], float] = time.monotonic) -> None:
        self.control = control
        self._clock = clock
        self._cond = threading.Condition()
        self._running = 0

    @property
    def running(self) -> int:
        return self._running

    @contextmanager
    def stream(self, timeout: float | None = None) -> Iterator[bool]:
        """Run one background download: True once it may, False when ``timeout`` ran out first (the
        caller drops it)."""
        with self._cond:
            if self._running >= self.control.limit:
                self.control.held_back(self._clock())
            admitted = self._cond.wait_for(lambda: self._running < self.control.limit, timeout)
            if admitted:
                self._running += 1
        if not admitted:
            yield False
            return
        try:
            yield True
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify()

    def landed(self, nbytes: int) -> None:
        """A download (background or not) finished with ``nbytes``."""
        with self._cond:
            before = self.control.limit
            self.control.landed(nbytes, self._clock())
            if self.control.limit > before:
                self._cond.notify_all()
