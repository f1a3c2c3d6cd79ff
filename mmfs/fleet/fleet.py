"""One mount's membership of a fleet: the Redis link and every shared piece, wired to the mount's objects.

``Fleet`` is built from the ``--shared`` URL; ``mmfs.runtime.mount`` asks it to wrap the block source and the
namespace and to gate the API client. Nothing else in mmfs knows Redis exists. ``fleet_status()`` reports
the process's fleet (for ``mmfs status``).

Keys live under ``mmfs:<account tag>:``, the tag a one-way hash of (host, key): two accounts sharing one
Redis never see each other's files, and the key itself is never sent. Every value is sealed with a key
derived from the API key (``mmfs.fleet.seal``): Redis alone cannot make a mount show or serve anything.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from mmfs.api.records import FileRecord
from mmfs.blocks.ports import PlatformSource
from mmfs.fleet.blocks import SharedBlockSource
from mmfs.fleet.budget import FleetBudget
from mmfs.fleet.events import EventListener, SharedNamespace
from mmfs.fleet.link import RedisLink, parse_shared_url
from mmfs.fleet.listings import SharedListings
from mmfs.fleet.seal import Seal, derive_key
from mmfs.tree.known import KnownFiles
from mmfs.tree.namespace import Namespace

__all__ = ["Fleet", "fleet_status"]

log = logging.getLogger("mmfs.fleet")

_active_lock = threading.Lock()
_active: list[Fleet] = []


class Fleet:
    def __init__(self, url: str, account_tag: str, api_key: str, *, dir_cache_time: float,
                 timeout: float | None = None) -> None:
        shared = parse_shared_url(url)
        self.link = RedisLink(shared) if timeout is None else RedisLink(shared, timeout=timeout)
        self.prefix = f"mmfs:{account_tag}:"
        self.seal = Seal(derive_key(api_key, account_tag))
        self.sender = uuid.uuid4().hex
        self.listings = SharedListings(self.link, self.prefix, self.seal, ttl=dir_cache_time)
        self.budget = (FleetBudget(self.link, self.prefix, shared.budget, shared.burst)
                       if shared.budget is not None else None)
        self.blocks: SharedBlockSource | None = None
        self.namespace: SharedNamespace | None = None
        self.listener: EventListener | None = None

    def start(self) -> Fleet:
        """Check the link (``FleetError`` for a refused password or TLS) and register for status."""
        self.link.check()
        with _active_lock:
            _active.append(self)
        return self

    def lister(self, list_fn: Callable[[str], list[FileRecord]]) -> Callable[[str], tuple[list[FileRecord], float]]:
        return lambda purpose: self.listings.list_files(purpose, list_fn)

    def wrap_source(self, source: PlatformSource, block_size: int = 4 << 20) -> SharedBlockSource:
        self.blocks = SharedBlockSource(source, self.link, self.prefix, self.seal, block_size)
        return self.blocks

    def wrap_namespace(self, namespace: Namespace, known: KnownFiles) -> SharedNamespace:
        self.namespace = SharedNamespace(namespace, known, self.link, self.prefix, self.listings, self.sender,
                                         self.seal)
        self.namespace.on_close = self.close  # the filesystem closes its namespace at unmount
        self.listener = EventListener(self.namespace, known, self.link, self.sender).start()
        return self.namespace

    def status(self) -> dict[str, Any]:
        state: dict[str, Any] = {"shared": True, **self.link.state()}
        state["listings"] = dict(self.listings.counts)
        if self.blocks is not None:
            state["blocks"] = dict(self.blocks.counts)
        if self.namespace is not None and self.listener is not None:
            state["events"] = {"published": self.namespace.published, "received": self.listener.received,
                               "pending": self.namespace.pending, "bad": self.listener.bad,
                               "listening": self.listener.listening, "flushes": self.listener.flushes}
        if self.budget is not None:
            state["budget"] = {"per_minute": self.budget.per_minute, "burst": self.budget.burst,
                               **self.budget.counts}
        return state

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        if self.blocks is not None:
            self.blocks.close()
        self.link.close()
        with _active_lock:
            if self in _active:
                _active.remove(self)


def fleet_status() -> dict[str, Any]:
    """The shared tier as this process sees it: ``{"shared": False}`` when the mount runs alone by choice."""
    with _active_lock:
        fleet = _active[-1] if _active else None
    return fleet.status() if fleet is not None else {"shared": False}
