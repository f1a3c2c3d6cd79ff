"""Files uploaded, reached by id, or deleted on one mount show on every mount at once: pub/sub invalidation.

``SharedNamespace`` wraps a ``Namespace``: ``remember`` (an upload landed), a file newly reached through
``/.by-id`` (seen in ``lookup``) and ``forget`` (a delete, a file found gone, the old file of an overwrite)
are applied locally, then published on the account's channel and written to a shared hash of known
files; the shared listing of that purpose is dropped, so the next refresh anywhere lists afresh rather
than serving a copy from before the change. Every other mount's ``EventListener`` applies the message to
its own namespace.

A mount that joins (or rejoins after Redis was away) first reads the shared hash, so it also knows files
remembered while it was not listening. Messages carry the sender's id; a mount ignores its own.

The listener also keeps a marker key: when it vanishes, Redis was flushed (or restarted without
persistence), which is recorded and repaired by writing this mount's known files back.

Concurrency: the listener is one daemon thread; the namespace does its own locking.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, fields
from typing import Any

import redis

from mmfs.api.records import FileRecord
from mmfs.fleet.link import RETRY_AFTER, RedisLink
from mmfs.fleet.listings import SharedListings
from mmfs.known import KnownFiles
from mmfs.namespace import BY_ID, DirNode, FileNode, Namespace
from mmfs.threads import start_thread

__all__ = ["EventListener", "SharedNamespace"]

log = logging.getLogger("mmfs.fleet")

_RECORD_FIELDS = tuple(f.name for f in fields(FileRecord) if f.name != "download_url")
# How often the listener checks the marker key (detects a flush within this long).
_HEARTBEAT = 2.0


def _record_json(record: FileRecord) -> dict[str, Any]:
    return {k: v for k, v in asdict(record).items() if k in _RECORD_FIELDS}


def _record(fields_: dict[str, Any]) -> FileRecord:
    return FileRecord(**{k: fields_.get(k) for k in _RECORD_FIELDS})


class SharedNamespace:
    """A ``Namespace`` whose changes are told to the fleet; everything else is the namespace's own."""

    def __init__(self, inner: Namespace, known: KnownFiles, link: RedisLink, prefix: str,
                 listings: SharedListings | None, sender: str) -> None:
        self.inner = inner
        self._known = known
        self._link = link
        self._prefix = prefix
        self._listings = listings
        self._sender = sender
        self.channel = f"{prefix}events"
        self.hash = f"{prefix}known"
        self.published = 0
        self.on_close: Callable[[], None] | None = None

    def remember(self, record: FileRecord) -> None:
        self.inner.remember(record)
        self._publish("remember", record.file_id, record.purpose, record)

    def forget(self, file_id: str, purpose: str | None) -> None:
        self.inner.forget(file_id, purpose)
        self._publish("forget", file_id, purpose, None)

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
            self._publish("remember", record.file_id, record.purpose, record)
        return node

    def _publish(self, op: str, file_id: str, purpose: str | None, record: FileRecord | None) -> None:
        message = json.dumps({"op": op, "from": self._sender, "file_id": file_id, "purpose": purpose,
                              "record": _record_json(record) if record else None})

        def send(r: redis.Redis) -> object:
            pipe = r.pipeline(transaction=False)
            if record is not None:
                pipe.hset(self.hash, file_id, json.dumps(_record_json(record)))
            else:
                pipe.hdel(self.hash, file_id)
            pipe.publish(self.channel, message)
            return pipe.execute()

        if self._listings is not None and purpose is not None:
            self._listings.invalidate(purpose)
        if self._link.run("publish", send, None) is not None:
            self.published += 1

    def close(self) -> None:
        self.inner.close()
        if self.on_close is not None:
            self.on_close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class EventListener:
    """Applies other mounts' changes to this mount's namespace, from the channel, for as long as it runs."""

    def __init__(self, shared: SharedNamespace, known: KnownFiles, link: RedisLink, sender: str) -> None:
        self._shared = shared
        self._known = known
        self._marked = False
        self._outage = False
        self._link = link
        self._sender = sender
        self._stop = threading.Event()
        self._marker = f"{shared.channel}:marker"
        self._pubsub: Any = None
        self.received = 0
        self.flushes = 0
        self.listening = False
        self._thread: threading.Thread | None = None

    def start(self) -> EventListener:
        self._thread = start_thread(self._run, name="mmfs-fleet-events")
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except redis.RedisError as exc:
                if not self._stop.is_set():  # said once per outage, not at every retry
                    (log.debug if self._outage else log.info)("fleet events: %s; listening again when Redis "
                                                              "answers", exc)
                    self._outage = True
            except Exception:  # a malformed message must not end the listener
                self.listening = False
                log.exception("fleet events: unexpected failure")
            self._stop.wait(RETRY_AFTER)

    def _listen(self) -> None:
        pubsub = self._link.pubsub_redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub = pubsub
        try:
            pubsub.subscribe(self._shared.channel)
            self._catch_up()
            self.listening = True
            self._outage = False
            beat = 0.0
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is not None and message.get("type") == "message":
                    self._apply(message["data"])
                if time.monotonic() - beat > _HEARTBEAT:
                    beat = time.monotonic()
                    self._check_marker()
        finally:
            self.listening = False
            pubsub.close()

    def _catch_up(self) -> None:
        """Files the fleet knows that this mount may have missed while it was not listening."""
        entries = self._link.pubsub_redis.hgetall(self._shared.hash)
        inner = self._shared.inner
        for file_id, raw in entries.items():
            try:
                record = _record(json.loads(raw))
            except (ValueError, TypeError) as exc:
                log.debug("skipping a malformed shared record %r: %s", file_id, exc)
                continue
            if self._known.get(record.file_id) is None:
                inner.remember(record)

    def _check_marker(self) -> None:
        r = self._link.pubsub_redis
        if r.set(self._marker, "1", nx=True):
            if self._marked:
                log.warning("the shared tier was emptied (flushed or restarted): repopulating known files")
                self.flushes += 1
            entries = {k.file_id: json.dumps(_record_json(k)) for k in self._known.all()}
            if entries:
                r.hset(self._shared.hash, mapping=entries)
        self._marked = True

    def _apply(self, raw: bytes) -> None:
        message = json.loads(raw)
        if message.get("from") == self._sender:
            return
        self.received += 1
        inner = self._shared.inner
        if message.get("op") == "remember" and message.get("record"):
            inner.remember(_record(message["record"]))
        elif message.get("op") == "forget":
            purposes = [message["purpose"]] if message.get("purpose") else list(inner.purposes)
            for purpose in purposes:
                inner.forget(str(message["file_id"]), purpose)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
