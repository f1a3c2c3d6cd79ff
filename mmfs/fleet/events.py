"""Files uploaded, reached by id, or deleted on one mount show on every mount: an event stream, and an outbox.

``SharedNamespace`` wraps a ``Namespace``: ``remember`` (an upload landed), a file newly reached through
``/.by-id`` (seen in ``lookup``) and ``forget`` (a delete, a file found gone, the old file of an overwrite)
are applied locally, then queued in the mount's *outbox*. The outbox is sent in order: each change is
written to a shared hash of known files, appended to the account's event stream, and the purpose's shared
listing dropped (so the next refresh anywhere lists afresh). A change made while Redis is away stays in the
outbox, in order, and is sent when the mount rejoins: nothing a mount did alone is lost to the fleet.

Every other mount's ``EventListener`` reads the stream (a blocking ``XREAD``, which is also the idle
mount's probe of Redis: it notices Redis back within a second or two) and applies each change to its own
namespace. A stream, not pub/sub: a mount that was away reads on from where it stopped, so deletes made
meanwhile reach it too (as long as the stream, capped at ``_STREAM_LENGTH`` entries, still holds them).
A mount that joins reads the hash first, so it also knows files remembered before it started.

Redis emptied (flushed, or restarted without persistence) is told by the marker key: each mount keeps the
random value it last saw there; a missing or different one means the tier was emptied, and **every**
mount then writes back all the files it knows (the union; writing the same sealed record twice is a no-op)
and reads the stream from its start.

Every record and event is sealed (``mmfs.fleet.seal``): one that does not open, or is not well formed, is
dropped and counted, never applied and never copied into the mount's own state.

Concurrency: the listener is one daemon thread; the outbox has its own lock (changes are queued and sent
in the order they were made); the namespace does its own locking.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from mmfs.api.records import FileRecord
from mmfs.fleet.link import LISTEN_BLOCK, RETRY_AFTER, RedisLink
from mmfs.fleet.listings import SharedListings
from mmfs.fleet.seal import Seal, record_from_json, record_to_json
from mmfs.threads import start_thread
from mmfs.tree.known import KnownFiles
from mmfs.tree.namespace import BY_ID, DirNode, FileNode, Namespace

__all__ = ["EventListener", "SharedNamespace"]

log = logging.getLogger("mmfs.fleet")

# How often the listener checks the marker key (detects a flush within this long).
_HEARTBEAT = 2.0
# The stream keeps about this many recent changes (XADD MAXLEN ~): a few MiB however busy the fleet.
_STREAM_LENGTH = 10_000
# Changes kept while alone. Beyond this the oldest are dropped and the mount writes back everything it knows
# when it rejoins instead (which carries the uploads, though not the deletes, of the dropped ones).
_OUTBOX_LIMIT = 10_000
# After the tier was emptied, the hash is read again at this many heartbeats: other mounts write their
# files back when they notice, which may be a heartbeat later than this one.
_RESYNC_BEATS = 3
# After a read that brought news, the next waits this long: a busy fleet's changes then reach each mount in
# batches of up to a tenth of a second, and each mount reads the stream at most ten times a second
# however many mounts make changes (every entry wakes every reader: the cost grows with mounts x changes).
_READ_GAP = 0.1
_ERRORS = (redis.RedisError, RedisClusterException)


class SharedNamespace:
    """A ``Namespace`` whose changes are told to the fleet; everything else is the namespace's own."""

    def __init__(self, inner: Namespace, known: KnownFiles, link: RedisLink, prefix: str,
                 listings: SharedListings | None, sender: str, seal: Seal) -> None:
        self.inner = inner
        self._known = known
        self._link = link
        self._prefix = prefix
        self._listings = listings
        self._sender = sender
        self.seal = seal
        self.stream = f"{prefix}events"
        self.hash = f"{prefix}known"
        self.published = 0
        self.on_close: Callable[[], None] | None = None
        self._outbox: collections.deque[tuple[str, str, str | None, FileRecord | None]] = collections.deque()
        self._outbox_lock = threading.Lock()
        self._send_lock = threading.Lock()  # one sender at a time, so changes leave in the order made
        self.overflowed = False
        self.on_change: Callable[[], None] | None = None  # wakes the listener to send the outbox

    # -- changes made here ------------------------------------------------------------------------------

    def remember(self, record: FileRecord) -> None:
        self.inner.remember(record)
        self._queue("remember", record.file_id, record.purpose, record)

    def forget(self, file_id: str, purpose: str | None) -> None:
        self.inner.forget(file_id, purpose)
        self._queue("forget", file_id, purpose, None)

    def refresh(self, purposes: Iterable[str] | None = None) -> list[str]:
        """``mmfs refresh``: from the platform, not from a shared copy another mount made; the fresh
        listing is then shared in its place."""
        purposes = list(purposes or self.inner.purposes)
        if self._listings is not None:
            for purpose in purposes:
                self._listings.invalidate(purpose)
        return self.inner.refresh(purposes)

    def lookup(self, path: str) -> DirNode | FileNode:
        """The namespace's answer; a file newly reached through ``/.by-id`` is told to the fleet."""
        parts = [p for p in path.split("/") if p]
        file_id = parts[1] if len(parts) == 2 and parts[0] == BY_ID else None
        was_known = file_id is not None and self._known.get(file_id) is not None
        node = self.inner.lookup(path)
        record = self._known.get(file_id) if file_id is not None and not was_known else None
        if record is not None and isinstance(node, FileNode):  # retrieved just now, not found in a listing
            self._queue("remember", record.file_id, record.purpose, record)
        return node

    # -- the rest of the namespace: the inner one's -----------------------------------------------------

    @property
    def purposes(self) -> tuple[str, ...]:
        return self.inner.purposes

    @property
    def on_gone(self) -> Callable[[str], None]:
        return self.inner.on_gone

    @on_gone.setter
    def on_gone(self, tell: Callable[[str], None]) -> None:
        self.inner.on_gone = tell  # ids the inner namespace finds gone: it is the one that finds them

    def root_names(self) -> list[str]:
        return self.inner.root_names()

    def names(self, purpose: str) -> dict[str, FileRecord]:
        return self.inner.names(purpose)

    def by_id_names(self) -> list[str]:
        return self.inner.by_id_names()

    def record_by_id(self, file_id: str) -> FileRecord:
        return self.inner.record_by_id(file_id)

    def local_record(self, file_id: str) -> FileRecord | None:
        return self.inner.local_record(file_id)

    def presence(self, file_id: str, purpose: str | None) -> bool | None:
        return self.inner.presence(file_id, purpose)

    def ids_named(self, purpose: str, filename: str) -> frozenset[str]:
        return self.inner.ids_named(purpose, filename)

    def hide(self, file_id: str) -> None:
        self.inner.hide(file_id)

    def known_size(self, file_id: str) -> int | None:
        return self.inner.known_size(file_id)

    def set_known_size(self, file_id: str, size: int) -> None:
        self.inner.set_known_size(file_id, size)

    # -- the outbox -------------------------------------------------------------------------------------

    def _queue(self, op: str, file_id: str, purpose: str | None, record: FileRecord | None) -> None:
        with self._outbox_lock:
            self._outbox.append((op, file_id, purpose, record))
            if len(self._outbox) > _OUTBOX_LIMIT:
                self._outbox.popleft()
                self.overflowed = True
        self.send_outbox(wait=False)  # a sender already at work takes this change along
        if self.pending and self.on_change is not None:
            self.on_change()

    @property
    def pending(self) -> int:
        with self._outbox_lock:
            return len(self._outbox)

    def send_outbox(self, wait: bool = True) -> bool:
        """Send queued changes, oldest first; those Redis does not take stay queued. True when none is left.
        Without ``wait``, leaves them to a sender already at work (a change never waits on Redis for the
        lock)."""
        if not self._send_lock.acquire(blocking=wait):
            return False
        try:
            while True:
                with self._outbox_lock:
                    batch = list(self._outbox)[:100]
                if not batch:
                    return True
                if self._link.run("publish", lambda r, b=batch: self._send(r, b), None) is None:
                    return False
                with self._outbox_lock:
                    for _ in batch:  # an overflow may have dropped some of them meanwhile
                        if self._outbox and self._outbox[0] in batch:
                            self._outbox.popleft()
                self.published += len(batch)
        finally:
            self._send_lock.release()

    def _send(self, r: Any, batch: list[tuple[str, str, str | None, FileRecord | None]]) -> object:
        pipe = r.pipeline(transaction=False)
        for op, file_id, purpose, record in batch:
            if record is not None:
                pipe.hset(self.hash, file_id, self.known_value(record))
            else:
                pipe.hdel(self.hash, file_id)
            event = {"op": op, "from": self._sender, "file_id": file_id, "purpose": purpose,
                     "record": record_to_json(record) if record is not None else None}
            pipe.xadd(self.stream, {"m": self.seal.seal_json(self.stream, event)},
                      maxlen=_STREAM_LENGTH, approximate=True)
            if self._listings is not None and purpose is not None:
                pipe.delete(self._listings.key(purpose))
        return pipe.execute()

    def known_value(self, record: FileRecord) -> bytes:
        return self.seal.seal_json(f"{self.hash}\0{record.file_id}", record_to_json(record))

    def known_record(self, file_id: object, value: object) -> FileRecord | None:
        """A record of the shared hash, if it is one this account sealed under this very field."""
        if isinstance(file_id, bytes):
            file_id = file_id.decode("utf-8", "surrogateescape")
        if not isinstance(file_id, str):
            return None
        record = record_from_json(self.seal.open_json(f"{self.hash}\0{file_id}", value))
        return record if record is not None and record.file_id == file_id else None

    def close(self) -> None:
        self.inner.close()
        if self.on_close is not None:
            self.on_close()


class EventListener:
    """Applies other mounts' changes to this mount's namespace, from the stream, for as long as it runs;
    sends this mount's outbox when Redis is back; writes back everything it knows after Redis was emptied."""

    def __init__(self, shared: SharedNamespace, known: KnownFiles, link: RedisLink, sender: str) -> None:
        self._shared = shared
        self._known = known
        self._link = link
        self._sender = sender
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._marker = f"{shared.stream}:marker"
        self._epoch: str | None = None  # the marker's value when this mount last looked
        self._last_id: str | None = None  # the last stream entry read
        self._resync = 0
        self._outage = False
        self.received = 0
        self.bad = 0
        self.flushes = 0
        self.listening = False
        self._thread: threading.Thread | None = None
        shared.on_change = self._wake.set

    def start(self) -> EventListener:
        self._thread = start_thread(self._run, name="mmfs-fleet-events")
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except _ERRORS as exc:
                self.listening = False
                self._link.reset("listen")
                if not self._stop.is_set():
                    self._link.note_failure(f"events: {type(exc).__name__}: {exc}")
                    if not self._outage:  # said once per outage, not at every retry
                        log.info("fleet events: %s; listening again when Redis answers", exc)
                    self._outage = True
            except Exception:  # nothing a record holds may end the listener
                self.listening = False
                self._link.reset("listen")
                log.exception("fleet events: unexpected failure")
            self._stop.wait(RETRY_AFTER)  # the probe: one cheap attempt a second while Redis is away

    def _listen(self) -> None:
        r = self._link.listen_redis
        self._check_marker(r)
        if self._last_id is None:
            newest = r.xrevrange(self._shared.stream, count=1)
            self._last_id = _text(newest[0][0]) if newest else "0-0"
        self._catch_up(r)  # files remembered while this mount was not listening (or before it started)
        self._link.note_success()
        self.listening = True
        self._outage = False
        beat = time.monotonic()
        while not self._stop.is_set():
            if self._shared.pending:
                self._shared.send_outbox()
            if self._wake.is_set():
                self._wake.clear()
                block = 1  # a change of ours is queued: come back to it soon
            else:
                block = int(LISTEN_BLOCK * 1000)
            answer = r.xread({self._shared.stream: self._last_id}, count=500, block=block)
            self._link.note_success()
            for _stream, entries in answer or []:
                for entry_id, fields in entries:
                    self._last_id = _text(entry_id)
                    self._apply(fields)
            if answer:
                self._stop.wait(_READ_GAP)
            if time.monotonic() - beat >= _HEARTBEAT:
                beat = time.monotonic()
                self._check_marker(r)
                if self._resync:
                    self._resync -= 1
                    self._catch_up(r)

    def _catch_up(self, r: Any) -> None:
        inner = self._shared.inner
        for file_id, raw in r.hgetall(self._shared.hash).items():
            record = self._shared.known_record(file_id, raw)
            if record is None:
                self.bad += 1
                continue
            if self._known.get(record.file_id) is None:
                inner.remember(record)

    def _check_marker(self, r: Any) -> None:
        r.set(self._marker, uuid.uuid4().hex, nx=True)
        epoch = _text(r.get(self._marker))
        if epoch == self._epoch:
            if not r.exists(self._shared.hash) and self._known.all():
                self._write_back(r)  # the hash alone was evicted (allkeys-lru): put this mount's share back
            return
        if self._epoch is not None:
            log.warning("the shared tier was emptied (flushed or restarted): writing back this mount's files")
            self.flushes += 1
            self._last_id = "0-0"  # a new stream: read it from its start
            self._resync = _RESYNC_BEATS
        if self._epoch is not None or self._shared.overflowed:
            self._write_back(r)
        self._epoch = epoch

    def _write_back(self, r: Any) -> None:
        """Every file this mount knows, into the shared hash: idempotent (the same sealed value)."""
        entries = {k.file_id: self._shared.known_value(k) for k in self._known.all()}
        if entries:
            r.hset(self._shared.hash, mapping=entries)
        self._shared.overflowed = False

    def _apply(self, fields: dict[Any, Any]) -> None:
        stream = self._shared.stream
        message = self._shared.seal.open_json(stream, fields.get(b"m", fields.get("m")))
        if not isinstance(message, dict) or message.get("from") == self._sender:
            if not isinstance(message, dict):
                self.bad += 1
            return
        op, file_id, purpose = message.get("op"), message.get("file_id"), message.get("purpose")
        inner = self._shared.inner
        if op == "remember":
            record = record_from_json(message.get("record"))
            if record is None or record.file_id != file_id:
                self.bad += 1
                return
            self.received += 1
            inner.remember(record)
        elif op == "forget" and isinstance(file_id, str) and file_id.isdigit() and file_id.isascii():
            if purpose is not None and purpose not in inner.purposes:
                purpose = None
            self.received += 1
            for each in [purpose] if purpose else list(inner.purposes):
                inner.forget(file_id, each)
        else:
            self.bad += 1

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=LISTEN_BLOCK + 2.0)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else None
