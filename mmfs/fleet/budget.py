"""The account's API budget, shared: a token bucket in Redis that every mount draws from before each call.

The platform limits calls per account per minute (status 1002). N mounts each spending "their own" budget
hit that limit together; drawing from one bucket keeps the fleet under ``budget`` calls per minute, with a
burst of ``burst`` calls. A 1002 (or 429) seen by any mount pauses the whole bucket for the Retry-After it
came with (or ``_PAUSE_SECONDS``), so every mount slows at once instead of each finding out for itself.

The bucket is one Lua script (atomic; Redis's own clock, so mounts' clocks do not matter). Its two keys
share a hash tag, so it runs on Redis Cluster too.

When Redis does not answer, the mount draws from a local bucket of the same size: alone, it still keeps
its own calls under the budget (the fleet as a whole may then exceed it until Redis is back).

The budget never holds a caller past its operation's deadline (``mmfs.api.deadline``): a call that would
have to wait longer fails at once with ``BudgetError`` (not retried: waiting is what it just refused).
A listing refresh that fails this way leaves ``ls`` and ``stat`` with the last listing, as when the
platform stalls; a read waits at most its ``--retry-deadline``. ``counts`` say how long callers waited and
how many are waiting now.

Concurrency: the local bucket has its own lock; waiting happens outside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mmfs.api import deadline
from mmfs.errors import RateLimitError
from mmfs.fleet.link import RedisLink

__all__ = ["BudgetError", "FleetBudget", "LocalBucket"]

log = logging.getLogger("mmfs.fleet")

# How long the fleet holds off after a rate-limit answer that named no Retry-After.
_PAUSE_SECONDS = 5.0
# A waiting caller re-checks at least this often (a pause may be lifted, tokens shared by others).
_MAX_NAP = 1.0
# A pause longer than this is not believed (a platform's Retry-After is seconds; a key left by anything
# else must not stop the fleet): at most this long, then calls go on and find out for themselves.
_MAX_PAUSE = 60.0
# A caller with no deadline of its own (none of the client's calls, in practice) still waits at most this.
_MAX_WAIT = 120.0


class BudgetError(deadline.DeadlineError):
    """The fleet's API budget has no call to spare before the operation's deadline: the deadline's failure,
    known before the wait rather than at its end."""

# KEYS: bucket, pause. ARGV: tokens per ms, capacity. Returns 0 (a token was taken) or ms to wait.
_TAKE = """
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return pause end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or cap
local ts = tonumber(state[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + 60000)
return wait
"""


class LocalBucket:
    """The same bucket in this process, for when Redis is away."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._cap = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._at = clock()
        self._paused_until = 0.0

    def take(self) -> float:
        """0 if a token was taken, else the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            self._tokens = min(self._cap, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self._rate

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


class FleetBudget:
    """``before_call(op)`` blocks until the fleet may make one more API call; ``rate_limited`` shares a 1002."""

    def __init__(self, link: RedisLink, prefix: str, per_minute: int, burst: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.per_minute = per_minute
        # Default burst: a tenth of a minute's budget, so a cold `ls /` (one list per purpose) goes at once.
        self.burst = max(1, burst if burst is not None else per_minute // 10)
        self._link = link
        tag = f"{{{prefix}rate}}"  # one hash slot for both keys (Redis Cluster)
        self._keys = [f"{tag}:bucket", f"{tag}:pause"]
        self._scripts: dict[int, object] = {}
        self._local = LocalBucket(per_minute, self.burst)
        self._sleep = sleep
        self._lock = threading.Lock()
        self.counts = {"calls": 0, "waits": 0, "waited_s": 0.0, "rate_limited": 0, "local": 0,
                       "refused": 0, "waiting": 0, "last_wait_s": 0.0}

    def _take(self, r: object) -> object:
        script = self._scripts.get(id(r))
        if script is None:  # one per client (a cluster routes it by its keys' slot)
            if len(self._scripts) > 8:  # clients are replaced after timeouts
                self._scripts.clear()
            script = self._scripts[id(r)] = r.register_script(_TAKE)  # type: ignore[attr-defined]
        return script(keys=self._keys, args=[self.per_minute / 60000.0, self.burst], client=r)  # type: ignore[operator]

    def before_call(self, op: str) -> None:
        left = deadline.remaining()
        ends = time.monotonic() + (_MAX_WAIT if left is None else left)
        waited = 0.0
        with self._lock:
            self.counts["waiting"] += 1
        try:
            while True:
                wait_ms = self._link.run("budget", self._take, None)
                if wait_ms is None:
                    wait = self._local.take()
                    local = True
                else:
                    wait = min(int(wait_ms) / 1000.0, _MAX_PAUSE)  # type: ignore[call-overload]
                    local = False
                if wait <= 0:
                    break
                if time.monotonic() + wait > ends:  # no use waiting for a call the deadline will not see
                    with self._lock:
                        self.counts["refused"] += 1
                    raise BudgetError(f"{op}: the fleet's API budget has no call to spare before the deadline "
                                      f"(next in {wait:.1f} s)")
                nap = min(wait, _MAX_NAP)
                self._sleep(nap)
                waited += nap
        finally:
            with self._lock:
                self.counts["waiting"] -= 1
                if waited:
                    self.counts["waits"] += 1
                    self.counts["waited_s"] = round(self.counts["waited_s"] + waited, 3)
                    self.counts["last_wait_s"] = round(waited, 3)
        with self._lock:
            self.counts["calls"] += 1
            self.counts["local"] += local
        if waited:
            log.debug("%s waited %.2f s for the fleet's API budget", op, waited)

    def after_failure(self, exc: BaseException) -> None:
        if isinstance(exc, RateLimitError):
            self.rate_limited(getattr(exc, "retry_after", None))

    def rate_limited(self, retry_after: float | None) -> None:
        """The platform said 1002/429 to this mount: pause the whole fleet."""
        pause = min(retry_after if retry_after and retry_after > 0 else _PAUSE_SECONDS, _MAX_PAUSE)
        with self._lock:
            self.counts["rate_limited"] += 1
        self._local.pause(pause)
        self._link.run("budget", lambda r: r.set(self._keys[1], "1", px=max(1, int(pause * 1000))), None)
        log.info("rate limited by the platform: the fleet pauses API calls for %.1f s", pause)
