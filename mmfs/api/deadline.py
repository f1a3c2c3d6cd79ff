"""One time limit for one operation as its caller sees it, across every layer and retry below it.

``within(seconds)`` sets a deadline for the code it wraps, in this thread (a ``ContextVar``); nested calls
keep the earlier of the two, so a block download inside a read cannot extend the read. Below it, every
request asks ``timeout(limit)`` for its socket timeout (the remaining time, at most ``limit``), and the
retry loops stop when the deadline is reached: connect, read timeouts, resumes and backoff all spend the
same budget. Code running outside any ``within`` has no deadline and keeps its own per-call limits.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from mmfs.errors import MmfsError

__all__ = ["DeadlineError", "current", "earliest", "remaining", "timeout", "within"]

_deadline: ContextVar[float | None] = ContextVar("mmfs_deadline", default=None)


class DeadlineError(MmfsError):
    """The operation's time is up: EIO, and no retry (retrying is what the deadline just ended)."""

    errno_code = errno.EIO
    retryable = False


def current() -> float | None:
    """The deadline in force, as ``time.monotonic()`` time, or None."""
    return _deadline.get()


def earliest(*deadlines: float | None) -> float | None:
    known = [d for d in deadlines if d is not None]
    return min(known) if known else None


@contextmanager
def within(seconds: float | None) -> Iterator[float | None]:
    """Run the body with a deadline ``seconds`` from now (or the enclosing one, if sooner)."""
    ends = earliest(_deadline.get(), None if seconds is None else time.monotonic() + seconds)
    token = _deadline.set(ends)
    try:
        yield ends
    finally:
        _deadline.reset(token)


def remaining(until: float | None = None) -> float | None:
    """Seconds left before ``until`` (default: the deadline in force); None when there is none."""
    ends = current() if until is None else until
    return None if ends is None else ends - time.monotonic()


def timeout(limit: float, until: float | None = None, what: str = "operation") -> float:
    """The socket timeout for one request: ``limit``, cut to the time left. ``DeadlineError`` if none is."""
    left = remaining(until)
    if left is None:
        return limit
    if left <= 0:
        raise DeadlineError(f"{what}: gave up at the deadline")
    return min(limit, left)
