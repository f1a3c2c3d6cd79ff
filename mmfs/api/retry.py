"""When to try an HTTP call again, and how long to wait: one policy, two layers that do not multiply.

``RetryPolicy`` is pure (no HTTP, no sleeping) so its properties can be tested on their own. The loops that
use it are built with tenacity by ``retrying(policy)``: its wait, stop and retry callables all ask the policy.

How the two layers compose:

* **urllib3** (``connect_retry()``, mounted on each session's adapter) retries only *connection establishment*
  failures - refused, unreachable, a connect timeout - at most twice, at once, with no status retries and no
  read retries. Nothing was sent, so this is safe for every method (urllib3 counts connect errors whatever
  the method; ``allowed_methods`` only gates read retries, which are off), and a blip while opening a
  connection does not spend a policy attempt.
* **tenacity** (``retrying()``) handles everything else: platform status codes that say "try later" (1002,
  1000, ...), HTTP 429/5xx, read timeouts, bodies cut short. Retry-After is honoured here as a floor on the
  next delay, and only if that delay still fits in the deadline - a 429 asking for ten minutes fails now
  rather than holding a reader for ten minutes.

So one logical call makes at most ``attempts`` tries at the tenacity layer, each of which may open at most
three connections; waits between tries never exceed ``deadline`` in total, and each try's own time is
bounded by the request timeout. Inside a ``deadline.within`` (a read from the kernel, a listing) the loop
also ends at that deadline, and the request timeouts are cut to it: the caller's bound holds whole.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import tenacity
from urllib3.util.retry import Retry

from mmfs.api import deadline
from mmfs.errors import MmfsError

__all__ = ["RetryPolicy", "connect_retry", "retrying"]

# Connection attempts per try at the urllib3 layer, beyond the first. Two covers a stale pooled connection
# plus one genuine blip; more would only multiply with the tenacity attempts.
CONNECT_RETRIES = 2
# Within a caller's deadline, a retry is worth starting only with at least this long left for the try.
MIN_TRY_TIME = 0.2


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a failed call.

    ``attempts`` counts tries (the first included); ``deadline`` is the whole time budget in seconds, from the
    start of the first try, that waiting may use; delays grow as ``base_delay * 2**n`` up to ``max_delay``,
    with full jitter so that many readers hitting one rate limit do not come back in step.
    """

    attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 8.0
    deadline: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after try number ``attempt`` (1-based) failed.

        Full jitter: uniform in [0, min(max_delay, base_delay * 2**(attempt-1))]. A server's Retry-After is a
        floor (a rate limit says when it will answer again; coming back earlier only spends a try).
        """
        exponent = min(max(attempt - 1, 0), 62)  # a bounded exponent keeps the float finite
        ceiling = min(self.max_delay, self.base_delay * (2.0**exponent))
        wait = random.uniform(0.0, max(ceiling, 0.0))
        if retry_after is not None and retry_after > wait:
            wait = retry_after
        return wait

    def should_retry(self, exc: BaseException, attempt: int, elapsed: float) -> bool:
        """Whether try ``attempt`` (1-based), failed with ``exc`` after ``elapsed`` seconds, earns another.

        Only errors marked ``retryable`` qualify. The smallest wait the next try needs (the server's
        Retry-After, if any) must still fit in the deadline: otherwise waiting would only postpone the error.
        """
        if not isinstance(exc, MmfsError) or not exc.retryable:
            return False
        if attempt >= self.attempts:
            return False
        floor = _retry_after(exc) or 0.0
        return elapsed + floor < self.deadline

    def wait_for(self, exc: BaseException | None, attempt: int, elapsed: float) -> float:
        """The delay before the next try, clipped so that waiting never runs past the deadline."""
        wait = max(0.0, min(self.delay(attempt, _retry_after(exc)), self.deadline - elapsed))
        # deadline - elapsed, added back to elapsed, can round one unit past the deadline.
        while wait > 0.0 and elapsed + wait > self.deadline:
            wait = math.nextafter(wait, 0.0)
        return wait


def _retry_after(exc: BaseException | None) -> float | None:
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def retrying(
    policy: RetryPolicy,
    *,
    may_retry: Callable[[BaseException], bool] | None = None,
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    until: float | None = None,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` driven by ``policy``; the last error is re-raised as itself.

    ``may_retry`` narrows the policy for one call (an upload must not re-send after an ambiguous failure
    unless it can check whether the first try landed). No try starts, and no wait runs, past ``until`` or
    the deadline in force (``time.monotonic()`` time).
    """
    ends = deadline.earliest(until, deadline.current())

    def left() -> float:
        return float("inf") if ends is None else ends - time.monotonic()

    planned: list[float] = []  # the wait chosen by retry(), used by wait(): one draw of the jitter

    def retry(state: tenacity.RetryCallState) -> bool:
        if state.outcome is None or not state.outcome.failed:
            return False
        exc = state.outcome.exception()
        if may_retry is not None and not may_retry(exc):
            return False
        elapsed = state.seconds_since_start or 0.0
        if not policy.should_retry(exc, state.attempt_number, elapsed):
            return False
        pause = policy.wait_for(exc, state.attempt_number, elapsed)
        # A try that would start with (almost) no time left could only fail with "deadline": keep the real
        # error instead.
        if pause + MIN_TRY_TIME >= left():
            return False
        planned[:] = [pause]
        return True

    def wait(state: tenacity.RetryCallState) -> float:
        return planned.pop() if planned else 0.0

    kwargs = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    return tenacity.Retrying(
        retry=retry,
        wait=wait,
        # The retry callable already enforces both limits; the stop is a backstop should it ever be changed.
        stop=tenacity.stop_after_attempt(max(policy.attempts, 1)),
        reraise=True,
        before_sleep=before_sleep,
        **kwargs,
    )


def connect_retry() -> Retry:
    """The urllib3 ``Retry`` for session adapters: connection establishment only (see module docstring)."""
    return Retry(
        total=CONNECT_RETRIES,
        connect=CONNECT_RETRIES,
        read=0,
        status=0,
        other=0,
        redirect=None,  # requests follows redirects itself
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=(),
        backoff_factor=0.0,
        raise_on_status=False,
        respect_retry_after_header=False,  # Retry-After is the tenacity layer's business
    )
