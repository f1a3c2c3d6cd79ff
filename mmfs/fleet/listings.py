"""One ``list`` per purpose per refresh for the whole fleet: a lease, and the listing it produced, shared.

When a mount's listing of a purpose expires it asks Redis first. A shared copy younger than the refresh
interval is used as it is (with its real age, so the mount refreshes again when the copy expires, not a
full interval later). Without one, the mount tries to take the purpose's lease (``SET NX PX``): the holder
calls ``list`` and publishes the answer; the others wait briefly for it and, if it does not come, list for
themselves. Any Redis trouble means: list for yourself, as a mount alone does.

A purpose the platform refuses to list (2013) is shared too, as "not listable", so the fleet does not ask
every refresh.

Keys: ``<prefix>list:<purpose>`` (JSON, expiring after the refresh interval) and
``<prefix>lease:list:<purpose>`` (the lease holder's id, expiring by itself if the holder dies).

Concurrency: stateless apart from counters (``_lock``); Namespace already serialises refreshes per purpose.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, fields

from mmfs.api import deadline
from mmfs.api.records import FileRecord
from mmfs.errors import InvalidParamsError
from mmfs.fleet.link import RedisLink

__all__ = ["SharedListings"]

log = logging.getLogger("mmfs.fleet")

# A lease outlives a slow ``list`` (the client's own retries included, up to its deadline) but not a
# crashed holder by much: the others then list for themselves.
_LEASE_SECONDS = 15.0
# How long the others wait for the holder's listing before listing themselves; polls are cheap GETs.
_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05
_RECORD_FIELDS = tuple(f.name for f in fields(FileRecord) if f.name != "download_url")

ListFn = Callable[[str], list[FileRecord]]


def _encode(records: list[FileRecord] | None) -> bytes:
    rows = None if records is None else [{k: v for k, v in asdict(r).items() if k in _RECORD_FIELDS}
                                         for r in records]
    return json.dumps({"listable": records is not None, "records": rows}).encode()


def _decode(raw: bytes) -> list[FileRecord] | None:
    body = json.loads(raw)
    if not body.get("listable"):
        return None
    return [FileRecord(**{k: row.get(k) for k in _RECORD_FIELDS}) for row in body["records"]]


class SharedListings:
    def __init__(self, link: RedisLink, prefix: str, *, ttl: float, sleep: Callable[[float], None] = time.sleep):
        self._link = link
        self._prefix = prefix
        self._ttl = ttl
        self._sleep = sleep
        self._owner = uuid.uuid4().hex
        self._lock = threading.Lock()
        self.counts = {"shared": 0, "listed": 0, "waited": 0}

    def _key(self, purpose: str) -> str:
        return f"{self._prefix}list:{purpose}"

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def list_files(self, purpose: str, list_fn: ListFn) -> tuple[list[FileRecord], float]:
        """The purpose's records and their age in seconds; ``InvalidParamsError`` if it is not listable."""
        shared = self._shared(purpose)
        if shared is not None:
            return shared
        lease = f"{self._prefix}lease:list:{purpose}"
        took = self._link.run("lease", lambda r: r.set(lease, self._owner, nx=True, px=int(_LEASE_SECONDS * 1000)),
                              None)
        if took:
            # The previous holder may have published between our look and our lease.
            shared = self._shared(purpose)
            if shared is not None:
                self._link.run("lease", lambda r: r.delete(lease), 0)
                return shared
        elif self._link.joined:
            self._count("waited")
            # The caller's deadline, when one is in force, ends the wait sooner.
            until = deadline.earliest(time.monotonic() + _WAIT_SECONDS, deadline.current())
            while time.monotonic() < until and self._link.joined:
                self._sleep(_POLL_SECONDS)
                shared = self._shared(purpose)
                if shared is not None:
                    return shared
                if not self._link.run("lease", lambda r: r.exists(lease), 0):
                    # Released: published just now (look once more), or the holder's list failed.
                    shared = self._shared(purpose)
                    if shared is not None:
                        return shared
                    break
        self._count("listed")
        try:
            records: list[FileRecord] | None = list_fn(purpose)
        except InvalidParamsError:
            records = None
            self._publish(purpose, None, took)
            raise
        except BaseException:
            if took:
                self._link.run("lease", lambda r: r.delete(lease), 0)
            raise
        self._publish(purpose, records, took)
        assert records is not None
        return records, 0.0

    def _shared(self, purpose: str) -> tuple[list[FileRecord], float] | None:
        key = self._key(purpose)

        def read(r):
            pipe = r.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            return pipe.execute()

        raw, pttl = self._link.run("listing", read, (None, -2))
        if raw is None:
            return None
        try:
            records = _decode(raw)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring a malformed shared listing of %s: %s", purpose, exc)
            return None
        self._count("shared")
        age = max(0.0, self._ttl - pttl / 1000) if pttl and pttl > 0 else 0.0
        if records is None:
            raise InvalidParamsError(f"the platform does not list {purpose} (shared)")
        return records, age

    def _publish(self, purpose: str, records: list[FileRecord] | None, took: bool) -> None:
        lease = f"{self._prefix}lease:list:{purpose}"
        payload = _encode(records)

        def write(r):
            pipe = r.pipeline(transaction=False)
            pipe.set(self._key(purpose), payload, px=max(1, int(self._ttl * 1000)))
            if took:
                pipe.delete(lease)
            return pipe.execute()

        self._link.run("listing", write, None)

    def invalidate(self, purpose: str) -> None:
        """Drop the shared copy (after an upload or delete): the next refresh anywhere lists afresh."""
        self._link.run("listing", lambda r: r.delete(self._key(purpose)), 0)
