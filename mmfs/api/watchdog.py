"""A watchdog that holds an HTTP exchange to its deadline, however the server paces its answer.

urllib3's timeouts bound each socket read, not an answer: a server that sends one byte of its headers every
half second never trips a 5 s read timeout, and ``http.client`` reads headers line by line with no limit of
its own. So the deadline cannot be left to socket timeouts alone. ``guarded()`` opens a guard for the code it
wraps, until the deadline in force (``mmfs.api.deadline``) or a given time; every connection this thread sends
a request on inside it (through ``GuardedAdapter``) is registered with the guard, and one watchdog thread
shuts those sockets down (``SHUT_RDWR``, which wakes a blocked ``recv``) when the guard's time is up. The
code inside then sees a broken connection, and ``guarded`` raises ``DeadlineError`` in its place.

A connection leaves its guard when it goes back to the pool, so a guard that fires never breaks a connection
another request has since taken. ``answer`` bounds an answer from the moment its request has been sent (the
whole body of an upload, say): the guard's time becomes at most ``answer`` seconds after ``getresponse``.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from mmfs.api import deadline
from mmfs.threads import start_thread

__all__ = ["Guard", "GuardedAdapter", "guarded"]


class Guard:
    """The connections one guarded block of code uses, and when they are to be cut."""

    def __init__(self, until: float, answer: float | None) -> None:
        self.until = until
        self.answer = answer
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        # Each connection's socket as last seen: http.client drops ``conn.sock`` as soon as an answer that
        # closes the connection begins, while its body is still read from that socket.
        self._conns: dict[Any, socket.socket | None] = {}

    def add(self, conn: Any) -> None:
        with self._lock:
            if self.fired:
                raise deadline.DeadlineError("gave up at the deadline")
            sock = getattr(conn, "sock", None)
            self._conns[conn] = sock if isinstance(sock, socket.socket) else self._conns.get(conn)
        conn._mmfs_guard = self

    def discard(self, conn: Any) -> None:
        with self._lock:
            self._conns.pop(conn, None)

    def answer_begins(self) -> None:
        if self.answer is not None:
            _WATCHDOG.move(self, time.monotonic() + self.answer)

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            socks = [sock for sock in self._conns.values() if sock is not None]
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            conns, self._conns = list(self._conns), {}
        for conn in conns:
            if getattr(conn, "_mmfs_guard", None) is self:
                conn._mmfs_guard = None


class _Watchdog:
    """One thread for every guard of the process, sleeping until the earliest one is due."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._guards: set[Guard] = set()
        self._thread: threading.Thread | None = None

    def add(self, guard: Guard) -> None:
        with self._cond:
            self._guards.add(guard)
            if self._thread is None or not self._thread.is_alive():
                self._thread = start_thread(self._run, name="mmfs-watchdog")
            self._cond.notify()

    def remove(self, guard: Guard) -> None:
        with self._cond:
            self._guards.discard(guard)

    def move(self, guard: Guard, until: float) -> None:
        with self._cond:
            guard.until = min(guard.until, until)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [g for g in self._guards if g.until <= now]
                self._guards.difference_update(due)
                if not due:
                    nearest = min((g.until for g in self._guards), default=math.inf)
                    self._cond.wait(None if nearest == math.inf else nearest - now)
                    continue
            for guard in due:
                guard.fire()


_WATCHDOG = _Watchdog()
_active = threading.local()


def _current() -> Guard | None:
    stack = getattr(_active, "stack", None)
    return stack[-1] if stack else None


@contextmanager
def guarded(until: float | None = None, *, answer: float | None = None) -> Iterator[Guard | None]:
    """Cut this thread's connections at ``until`` or the deadline in force, whichever is sooner (and an
    answer ``answer`` seconds after its request went out); ``DeadlineError`` for what that broke. Without
    either, nothing is watched."""
    ends = deadline.earliest(until, deadline.current())
    if ends is None and answer is None:
        yield None
        return
    guard = Guard(math.inf if ends is None else ends, answer)
    stack = _active.__dict__.setdefault("stack", [])
    stack.append(guard)
    _WATCHDOG.add(guard)
    try:
        yield guard
    except Exception as exc:
        if guard.fired and not isinstance(exc, deadline.DeadlineError):
            raise deadline.DeadlineError(f"gave up at the deadline ({exc})") from exc
        raise
    finally:
        guard.finish()
        _WATCHDOG.remove(guard)
        stack.pop()


def _register(conn: Any) -> None:
    guard = _current()
    if guard is not None:
        guard.add(conn)


def _release(conn: Any) -> None:
    guard = getattr(conn, "_mmfs_guard", None)
    if guard is not None:
        guard.discard(conn)
        conn._mmfs_guard = None


class _Watched:
    """Registers a connection with the thread's guard each time a request is sent on it."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)
        super().request(*args, **kwargs)  # type: ignore[misc]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        guard = getattr(self, "_mmfs_guard", None)
        if guard is not None:
            guard.add(self)  # now with its socket

    def getresponse(self) -> Any:
        guard = getattr(self, "_mmfs_guard", None)
        if guard is not None:
            guard.add(self)
            guard.answer_begins()
        return super().getresponse()  # type: ignore[misc]


class _GuardedHTTPConnection(_Watched, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _GuardedPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            _release(conn)
        super()._put_conn(conn)


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            _release(conn)
        super()._put_conn(conn)


class GuardedAdapter(HTTPAdapter):
    """requests' adapter, its connections watched by the guard of the thread that uses them."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedPool, "https": _GuardedHTTPSPool}
