"""Write-back that never gives up: work that must reach the platform in the end, tried again until it does.

Two kinds of job come here: a local file whose upload failed for a reason that passes (the network, a 5xx,
a rate limit, a timeout, an answer that never came), and an old file id that must be deleted because new
bytes replaced it. Each job is tried again after a delay drawn from the project's ``RetryPolicy`` (full
jitter, doubling from ``base_delay`` up to ``max_delay``), for as long as the mount runs; the journal in the
spool folder carries the same work across a remount (``mmfs.core.recovery``).

A job is a callable that makes one try and says whether it is done; it runs on the write-back thread, with
no lock of the filesystem held (each job takes its own file's lock only around its bookkeeping).

Concurrency: ``_cond`` guards ``_jobs``; one thread runs the jobs, one at a time, so a platform that is down
sees one request at a time from here, not a storm.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mmfs.api.retry import RetryPolicy
from mmfs.threads import start_thread

__all__ = ["WriteBack"]

log = logging.getLogger("mmfs.writes")

# From one second after the first failure up to five minutes between tries: quick enough that a blip of a
# few seconds lands within seconds, slow enough that a platform down for hours is asked a dozen times an hour.
DEFAULT_POLICY = RetryPolicy(attempts=1 << 30, base_delay=1.0, max_delay=300.0, deadline=float("inf"))


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    key: object = field(compare=False)
    run: Callable[[], bool] = field(compare=False)
    tries: int = field(default=0, compare=False)


class WriteBack:
    def __init__(self, policy: RetryPolicy = DEFAULT_POLICY, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._cond = threading.Condition()
        self._jobs: list[_Job] = []
        self._keys: dict[object, _Job] = {}
        self._seq = itertools.count()
        self._running: object | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def later(self, key: object, run: Callable[[], bool], *, tries: int = 1, now: bool = False) -> None:
        """Try ``run`` again later (at once with ``now``); a job already waiting under ``key`` is kept."""
        with self._cond:
            if self._closed or key in self._keys:
                return
            due = self._clock() + (0.0 if now else self._delay(tries))
            job = _Job(due, next(self._seq), key, run, tries)
            self._keys[key] = job
            heapq.heappush(self._jobs, job)
            if self._thread is None:
                self._thread = start_thread(self._loop, name="mmfs-write-back")
            self._cond.notify_all()

    def _delay(self, tries: int) -> float:
        return max(0.2, self._policy.delay(tries))

    def now(self, key: object | None = None) -> int:
        """Make waiting jobs due at once (only ``key``'s, if given); how many."""
        with self._cond:
            hit = [j for j in self._jobs if key is None or j.key == key]
            for job in hit:
                job.due = self._clock()
            heapq.heapify(self._jobs)
            self._cond.notify_all()
            return len(hit)

    def waiting(self, key: object) -> float | None:
        """Seconds until ``key``'s next try, or None if it has none waiting."""
        with self._cond:
            job = self._keys.get(key)
            return None if job is None else max(0.0, job.due - self._clock())

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is due now or running (tests; ``mmfs retry``); whether that happened in time."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._running is not None or (self._jobs and self._jobs[0].due <= self._clock()):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._jobs or self._jobs[0].due > self._clock()):
                    self._cond.wait(None if not self._jobs else max(0.01, self._jobs[0].due - self._clock()))
                if self._closed:
                    return
                job = heapq.heappop(self._jobs)
                self._running = job.key
            try:
                done = job.run()
            except Exception:
                log.exception("write-back job %r failed; trying again later", job.key)
                done = False
            with self._cond:
                self._running = None
                if self._keys.get(job.key) is job:
                    del self._keys[job.key]
                if not done and not self._closed and job.key not in self._keys:
                    job.tries += 1
                    job.due = self._clock() + self._delay(job.tries)
                    job.seq = next(self._seq)
                    self._keys[job.key] = job
                    heapq.heappush(self._jobs, job)
                self._cond.notify_all()

    def close(self, wait: float = 0.0) -> None:
        """No job runs after this; with ``wait``, wait up to that long for the one running to end."""
        end = time.monotonic() + wait
        with self._cond:
            self._closed = True
            self._jobs.clear()
            self._keys.clear()
            self._cond.notify_all()
            while self._running is not None and time.monotonic() < end:
                self._cond.wait(max(0.0, end - time.monotonic()))
