"""Byte ranges of platform files, by file_id: the signed-URL cache in front of the Downloader.

A ``download_url`` is a pre-signed URL that expires (its OSS ``Expires``, or a 403 or 404 when it has no such
field, as the global host's unsigned CDN links). The source keeps one URL per file, asks ``retrieve`` for a
fresh one a little before it expires or when a download is refused, and retries the range: the reader never
sees the expiry. Concurrent readers
of one file share one ``retrieve`` (a per-file lock).

The source also keeps what downloads say a file's size is (``true_size``): a listing's ``bytes`` may be wrong,
and the object store's ``Content-Range`` total is what the bytes are. And it knows whether the download host
ignores Range (``ignores_range``), so that such a file is read as one whole-body stream (``stream``).

Concurrency: ``_lock`` guards ``_urls``, ``_file_locks`` and ``_totals``; a file's lock is held while its URL
is refreshed, never while downloading; waiting for it ends at the deadline in force.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TypeVar

from mmfs.api import deadline
from mmfs.api.bwlimit import RateLimit
from mmfs.api.client import ApiClient
from mmfs.api.download import BadAnswerError, Downloader, url_expires_at
from mmfs.api.records import MAX_SIZE
from mmfs.errors import MmfsError, NotFoundError, ProtocolError, UrlExpiredError

__all__ = ["RemoteSource", "copy_fetched"]

log = logging.getLogger("mmfs.blocks")

# Refresh this long before a URL's stated expiry, so a download that starts just before it still lands;
# a quarter of the URL's lifetime for short-lived URLs, so they are not refreshed on every block.
_REFRESH_MARGIN = 60.0
# A URL that fails with 403 right after a refresh is not going to work with a third one either.
_MAX_REFRESHES = 2
# What a download URL answers once it is no longer valid: 403 (OSS, expired) or 404 (a CDN link withdrawn).
# A file that is really gone shows up when the refresh's retrieve says so. An answer that is not the file
# (an error page, a wrong size) is tried again on a fresh URL too, then fails the read.
_REFUSED = (UrlExpiredError, NotFoundError, BadAnswerError)
# What a download passes on: chunks of bytes (a stream), or counts of bytes placed in the caller's buffer.
_Piece = TypeVar("_Piece", bytes, int)


@dataclass
class _Url:
    url: str
    expires_at: float | None
    refresh_at: float | None


class RemoteSource:
    def __init__(self, client: ApiClient, downloader: Downloader, *, clock: Callable[[], float] = time.time):
        self._client = client
        self._downloader = downloader
        self._clock = clock
        self._lock = threading.Lock()
        self._urls: dict[str, _Url] = {}
        self._file_locks: dict[str, threading.Lock] = {}
        self._totals: dict[str, int] = {}
        self._recorded: dict[str, int] = {}  # sizes the file's retrieve stated (0, "unknown", is left out)
        self.download_limit: RateLimit | None = None  # --bwlimit's download budget

    def _file_lock(self, file_id: str) -> threading.Lock:
        with self._lock:
            return self._file_locks.setdefault(file_id, threading.Lock())

    def _fresh(self, entry: _Url | None) -> bool:
        if entry is None:
            return False
        return entry.refresh_at is None or self._clock() < entry.refresh_at

    def _entry(self, url: str) -> _Url:
        expires = url_expires_at(url)
        if expires is None:
            return _Url(url, None, None)
        margin = min(_REFRESH_MARGIN, max(0.0, expires - self._clock()) / 4)
        return _Url(url, expires, expires - margin)

    def url(self, file_id: str, *, stale: str | None = None) -> str:
        """A usable download URL for ``file_id``; ``stale`` names one known to be refused."""
        with self._lock:
            entry = self._urls.get(file_id)
        if self._fresh(entry) and entry is not None and entry.url != stale:
            return entry.url
        file_lock = self._file_lock(file_id)
        left = deadline.remaining()
        if not file_lock.acquire(timeout=-1 if left is None else max(left, 0.0)):
            raise deadline.DeadlineError(f"download URL of {file_id}: gave up waiting at the deadline")
        with _held(file_lock):
            with self._lock:  # another reader may have refreshed it while we waited
                entry = self._urls.get(file_id)
            if self._fresh(entry) and entry is not None and entry.url != stale:
                return entry.url
            record = self._client.retrieve(file_id)
            assert record.download_url is not None  # retrieve() guarantees it
            entry = self._entry(record.download_url)
            with self._lock:
                self._urls[file_id] = entry
                if record.bytes:
                    self._recorded[file_id] = record.bytes
            return entry.url

    def fetch(self, file_id: str, start: int, end: int) -> bytearray:
        """Bytes ``[start, end)`` of the file; the URL is refreshed as often as needed. The buffer is
        the caller's from here on: nothing else holds it, so it is handed over without a copy."""
        buf = bytearray(end - start)
        self.fetch_into(file_id, start, buf)
        return buf

    def fetch_into(self, file_id: str, start: int, into: bytearray | memoryview) -> None:
        """Bytes ``[start, start + len(into))`` of the file, received straight into ``into`` (no memory of
        their own on the way); ``ProtocolError`` when the file ends first. Once it returns, every byte of
        ``into`` is this range's, whatever the buffer held before (another block's bytes)."""
        view = memoryview(into)
        end = start + len(view)
        filled = 0
        for n in self._transfer(file_id, start, end, lambda url, pos, **how: self._downloader.iter_into(
                url, pos, view[pos - start:], **how), int):
            filled += n
        if filled != len(view):
            total = self.true_size(file_id)
            said = f"; the download says the file has {total} bytes" if total is not None else ""
            raise ProtocolError(f"short download of {file_id}: {filled} of {len(view)} bytes{said}")

    def stream(self, file_id: str, start: int, end: int) -> Generator[bytes, None, None]:
        """Bytes ``[start, end)`` of the file as they arrive (fewer if it ends first)."""
        return self._transfer(file_id, start, end, lambda url, pos, **how: self._downloader.iter_range(
            url, pos, end, **how), len)

    def _transfer(self, file_id: str, start: int, end: int, read: Callable[..., Iterator[_Piece]],
                  length: Callable[[_Piece], int]) -> Generator[_Piece, None, None]:
        """What ``read(url, pos, ...)`` gives for ``[start, end)``, each piece ``length`` bytes of it; the
        URL is refreshed as often as needed, and a ``backup_download_url`` the retrieve answer carried is
        tried when the ``download_url`` fails. A try that breaks goes on from the bytes already passed."""
        pos = start
        stale: str | None = None
        for attempt in range(_MAX_REFRESHES + 1):
            url = self.url(file_id, stale=stale)
            with self._lock:
                stated = self._totals.get(file_id)
                known = stated if stated is not None else self._recorded.get(file_id)
            backup = self._backup(file_id, url)
            for candidate in (url, backup) if backup else (url,):
                try:
                    for piece in read(candidate, pos, size=known, stated=stated,
                                      on_total=lambda total: self._saw_total(file_id, total)):
                        n = length(piece)
                        pos += n
                        if self.download_limit is not None:
                            self.download_limit.consume(n)
                        yield piece
                    return
                except MmfsError as exc:
                    if candidate == url and backup and not isinstance(exc, deadline.DeadlineError):
                        log.info("download_url of %s failed (%s); trying its backup_download_url", file_id, exc)
                        continue
                    if not isinstance(exc, _REFUSED) or attempt == _MAX_REFRESHES:
                        raise
                    log.info("download URL of %s refused (%s); fetching a fresh one", file_id, exc)
            stale = url

    def _backup(self, file_id: str, url: str) -> str | None:
        """The retrieve answer's ``backup_download_url`` for ``file_id``, when it is not ``url`` itself."""
        backup = self._client.backup_url(file_id)
        return backup if backup and backup != url else None

    def _saw_total(self, file_id: str, total: int) -> None:
        with self._lock:
            before = self._totals.get(file_id)
            self._totals[file_id] = total
        if before != total:
            log.debug("download of %s says it has %d bytes", file_id, total)

    def true_size(self, file_id: str) -> int | None:
        """The file's size as its last download stated it, or None before any did."""
        with self._lock:
            return self._totals.get(file_id)

    def ignores_range(self, file_id: str) -> bool:
        """Whether this file's download host was seen answering a Range request with the whole body."""
        with self._lock:
            entry = self._urls.get(file_id)
        return entry is not None and self._downloader.ignores_range(entry.url)

    def range_known(self, file_id: str) -> bool:
        """Whether this file's download host has shown yet whether it honours Range."""
        with self._lock:
            entry = self._urls.get(file_id)
        if entry is None:  # no URL yet: known if every host seen so far honours Range (files share a CDN)
            return self._downloader.all_honour_range()
        return self._downloader.knows_range(entry.url)

    def share_block(self, file_id: str, start: int, data: bytes | bytearray) -> None:
        """Nothing to share: every mount downloads for itself (``SharedBlockSource`` shares)."""

    def size(self, file_id: str) -> int:
        """The true size of the file, from its download (for files listed with ``bytes`` 0)."""
        stale: str | None = None
        for attempt in range(_MAX_REFRESHES + 1):
            url = self.url(file_id, stale=stale)
            try:
                return min(self._downloader.probe_size(url), MAX_SIZE)  # never wrapped by off_t
            except _REFUSED:
                backup = self._backup(file_id, url)
                if backup:
                    with contextlib.suppress(MmfsError):
                        return self._downloader.probe_size(backup)
                if attempt == _MAX_REFRESHES:
                    raise
                stale = url
        raise AssertionError("unreachable")

    def forget(self, file_id: str) -> None:
        with self._lock:
            self._urls.pop(file_id, None)
            self._file_locks.pop(file_id, None)
            self._totals.pop(file_id, None)
            self._recorded.pop(file_id, None)


def copy_fetched(fetch: Callable[[str, int, int], bytes | bytearray], file_id: str, start: int,
                 into: bytearray | memoryview) -> None:
    """``fetch_into`` for a source that can only ``fetch``: its bytes, copied into ``into``."""
    view = memoryview(into)
    data = fetch(file_id, start, start + len(view))
    if len(data) != len(view):
        raise ProtocolError(f"short download of {file_id}: {len(data)} of {len(view)} bytes")
    view[:] = data


class _held:
    """Releases an already acquired lock on exit (``with lock`` would acquire it again)."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
