"""One ``list`` per purpose per refresh for the whole fleet: a lease, and the listing it produced, shared.

When a mount's listing of a purpose expires it asks Redis first. A shared copy younger than the refresh
interval is used as it is (with its real age, so the mount refreshes again when the copy expires, not a
full interval later). Without one, the mount tries to take the purpose's lease (``SET NX PX``): the holder
calls ``list`` and publishes the answer; the others wait briefly for it and, if it does not come, list for
themselves. Any Redis trouble means: list for yourself, as a mount alone does.

A purpose the platform refuses to list (2013) is shared too, as "not listable", so the fleet does not ask
every refresh.

A shared listing is sealed (``mmfs.fleet.seal``) under its own key: one that does not open is ignored (and
counted ``bad``) as if there were none; inside a genuine one, each record is checked on its own (types,
name, a purpose that is the folder's) and a bad one is dropped and counted, never the folder.

Keys: ``<prefix>list:<purpose>`` (JSON, expiring after the refresh interval) and
``<prefix>lease:list:<purpose>`` (the lease holder's id, expiring by itself if the holder dies).

Concurrency: stateless apart from counters (``_lock``); Namespace already serialises refreshes per purpose.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from mmfs.api import deadline as api_deadline
from mmfs.api.records import FileRecord
from mmfs.errors import InvalidParamsError
from mmfs.fleet.link import RedisLink
from mmfs.fleet.seal import Seal, record_from_json, record_to_json

__all__ = ["SharedListings"]

log = logging.getLogger("mmfs.fleet")

# A lease outlives a slow ``list`` (the client's own retries included, up to its deadline) but not a
# crashed holder by much: the others then list for themselves.
_LEASE_SECONDS = 15.0
# How long the others wait for the holder's listing before listing themselves; polls are cheap GETs.
_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05

ListFn = Callable[[str], list[FileRecord]]


class SharedListings:
    def __init__(self, link: RedisLink, prefix: str, seal: Seal, *, ttl: float,
                 sleep: Callable[[float], None] = time.sleep):
        self._link = link
        self._seal = seal
        self._prefix = prefix
        self._ttl = ttl
        self._sleep = sleep
        self._owner = uuid.uuid4().hex
        self._lock = threading.Lock()
        self.counts = {"shared": 0, "listed": 0, "waited": 0, "bad": 0, "bad_records": 0}

    def key(self, purpose: str) -> str:
        return f"{self._prefix}list:{purpose}"

    def _encode(self, purpose: str, records: list[FileRecord] | None) -> bytes:
        rows = None if records is None else [record_to_json(r) for r in records]
        return self._seal.seal_json(self.key(purpose), {"listable": records is not None, "records": rows})

    def _decode(self, purpose: str, raw: bytes) -> list[FileRecord] | bool | None:
        """The records (None: not listable), or False when the value is not a listing this account sealed."""
        body = self._seal.open_json(self.key(purpose), raw)
        if not isinstance(body, dict) or not isinstance(body.get("listable"), bool):
            return False
        if not body["listable"]:
            return None
        rows = body.get("records")
        if not isinstance(rows, list):
            return False
        records = []
        for row in rows:
            record = record_from_json(row, purpose)
            if record is None:
                self._count("bad_records")
            else:
                records.append(record)
        return records

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
            left = api_deadline.remaining()  # a caller with a deadline keeps half of it for its own list
            deadline = time.monotonic() + (_WAIT_SECONDS if left is None else max(0.0, min(_WAIT_SECONDS, left / 2)))
            while time.monotonic() < deadline and self._link.joined:
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
        key = self.key(purpose)

        def read(r):
            pipe = r.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            return pipe.execute()

        raw, pttl = self._link.run("listing", read, (None, -2))
        if raw is None:
            return None
        records = self._decode(purpose, raw)
        if records is False:
            self._count("bad")
            log.warning("ignoring a shared listing of %s that does not carry this account's seal", purpose)
            return None
        self._count("shared")
        age = max(0.0, self._ttl - pttl / 1000) if pttl and pttl > 0 else 0.0
        if records is None:
            raise InvalidParamsError(f"the platform does not list {purpose} (shared)")
        return records, age

    def _publish(self, purpose: str, records: list[FileRecord] | None, took: bool) -> None:
        lease = f"{self._prefix}lease:list:{purpose}"
        payload = self._encode(purpose, records)

        def write(r):
            pipe = r.pipeline(transaction=False)
            pipe.set(self.key(purpose), payload, px=max(1, int(self._ttl * 1000)))
            if took:
                pipe.delete(lease)
            return pipe.execute()

        self._link.run("listing", write, None)

    def invalidate(self, purpose: str) -> None:
        """Drop the shared copy (after an upload or delete): the next refresh anywhere lists afresh."""
        self._link.run("listing", lambda r: r.delete(self.key(purpose)), 0)
