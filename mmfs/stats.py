"""What a running mount counts for ``mmfs status``: kept beside the layers, not inside them.

Three thin wrappers observe the layers they wrap and feed one ``Stats``: ``CountingSource`` (block downloads
and their progress), ``CountingStore`` (disk-cache hits and misses) and ``ObservedClient`` (uploads and
deletes, each logged at INFO with its file_id, size and rate). ``LastErrorHandler`` keeps the latest
warning or error the mount logged. The filesystem tells ``Stats.read_served`` of every read of a stored
file and whether it waited for the network (``mmfs.blocks.reader.waited_for_network``): the hit ratio.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, BinaryIO

from mmfs.api.records import FileRecord
from mmfs.blocks.blockfiles import FileSpan
from mmfs.blocks.ports import BlockStore, RangeSource, UploadClient
from mmfs.errors import MmfsError
from mmfs.platform import read_offset
from mmfs.redact import one_line, redact

__all__ = ["CountingSource", "CountingStore", "LastErrorHandler", "ObservedClient", "Stats"]

log = logging.getLogger("mmfs.fs")


@dataclass
class Transfer:
    what: str
    size: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    # An upload's spool: its progress is how far the client has read it (see progress).
    path: str | None = None

    def progress(self) -> int:
        if self.path is None:
            return self.done
        # The client streams the spool itself: how far this process has read it is the upload's progress,
        # without reaching into the client.
        return min(self.size, read_offset(self.path))


class Stats:
    """Counters shared by the wrappers; ``snapshot()`` is what status reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = count(1)
        self.hits = 0
        self.misses = 0
        self.reads = 0
        self.reads_from_network = 0
        self.downloaded_bytes = 0
        self.uploaded_bytes = 0
        self.uploads_done = 0
        self.uploads_failed = 0
        self.deletes = 0
        self.downloads: dict[int, Transfer] = {}
        self.uploads: dict[int, Transfer] = {}
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def start(self, table: dict[int, Transfer], what: str, size: int, path: str | None = None) -> int:
        with self._lock:
            ident = next(self._ids)
            table[ident] = Transfer(what, size, path=path)
        return ident

    def finish(self, table: dict[int, Transfer], ident: int) -> Transfer | None:
        with self._lock:
            return table.pop(ident, None)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def read_served(self, waited: bool) -> None:
        """A read of a stored file was answered; ``waited``: it waited for a download. Per FUSE read, so
        an integer add under an uncontended lock and nothing more."""
        with self._lock:
            self.reads += 1
            self.reads_from_network += waited

    def error(self, message: str) -> None:
        with self._lock:
            self.last_error, self.last_error_at = message, time.time()

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()

        def rows(table: dict[int, Transfer]) -> list[dict[str, Any]]:
            return [{"what": t.what, "size": t.size, "done": t.progress(), "seconds": round(now - t.started, 3)}
                    for t in list(table.values())]

        with self._lock:
            return {
                "block_hits": self.hits,
                "block_misses": self.misses,
                "reads": self.reads,
                "reads_from_network": self.reads_from_network,
                # Of the reads served, the share that did not wait for the network: from memory, a piece,
                # the disk cache or a pinned block (by fd or not).
                "hit_ratio": round(1 - self.reads_from_network / self.reads, 4) if self.reads else None,
                "downloaded_bytes": self.downloaded_bytes,
                "uploaded_bytes": self.uploaded_bytes,
                "uploads_done": self.uploads_done,
                "uploads_failed": self.uploads_failed,
                "deletes": self.deletes,
                "downloads_in_flight": rows(self.downloads),
                "uploads_in_flight": rows(self.uploads),
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
            }


class CountingSource:
    """The block reader's source, counted: each range fetch is a download in flight until it returns."""

    def __init__(self, source: RangeSource, stats: Stats) -> None:
        self._source = source
        self._stats = stats
        # Not counted: what the source knows, and a block it may share. Bound once, so the reader's calls
        # (several per read) go straight to the source.
        self.true_size = source.true_size
        self.ignores_range = source.ignores_range
        self.range_known = source.range_known
        self.share_block = source.share_block

    def fetch(self, file_id: str, start: int, end: int) -> bytes | bytearray:
        ident = self._stats.start(self._stats.downloads, f"{file_id} [{start}-{end})", end - start)
        try:
            data = self._source.fetch(file_id, start, end)
        finally:
            self._stats.finish(self._stats.downloads, ident)
        self._stats.add("downloaded_bytes", len(data))
        return data

    def fetch_into(self, file_id: str, start: int, into: bytearray | memoryview) -> None:
        size = len(into)
        ident = self._stats.start(self._stats.downloads, f"{file_id} [{start}-{start + size})", size)
        try:
            self._source.fetch_into(file_id, start, into)
        finally:
            self._stats.finish(self._stats.downloads, ident)
        self._stats.add("downloaded_bytes", size)

    def stream(self, file_id: str, start: int, end: int) -> Generator[bytes, None, None]:
        """A whole-body stream (a host that ignores Range) is one download in flight while it runs."""
        ident = self._stats.start(self._stats.downloads, f"{file_id} [{start}-{end}) stream", end - start)
        try:
            for chunk in self._source.stream(file_id, start, end):
                self._stats.add("downloaded_bytes", len(chunk))
                yield chunk
        finally:
            self._stats.finish(self._stats.downloads, ident)



class CountingStore:
    """A ``BlockStore`` whose look-ups are counted: a hit is a block read from disk, a miss one downloaded."""

    def __init__(self, store: BlockStore, stats: Stats) -> None:
        self._store = store
        self._stats = stats
        # Not counted: the rest of the store, bound once so those calls go straight to it.
        self.contains = store.contains
        self.put = store.put
        self.evict_file = store.evict_file
        self.keeps_files = store.keeps_files
        self.let_go_of_evicted = store.let_go_of_evicted
        self.drop = store.drop
        self.close = store.close

    def get(self, key: str) -> memoryview | bytes | None:
        data = self._store.get(key)
        self._stats.add("hits" if data is not None else "misses")
        return data

    def open_file(self, key: str) -> BinaryIO | None:
        # A block read by fd (libfuse reads the file itself) is a hit too; a miss always comes through get.
        found = self._store.open_file(key)
        if found is not None:
            self._stats.add("hits")
        return found

    def span(self, file_id: str, block_size: int, start: int, end: int, file_size: int) -> FileSpan | None:
        # A range answered by fd from one file per remote file: a hit, as a block file opened is.
        found = self._store.span(file_id, block_size, start, end, file_size)
        if found is not None:
            self._stats.add("hits")
        return found


def _rate(size: int, seconds: float) -> str:
    return f"{size / max(seconds, 1e-6) / 1e6:.1f} MB/s"


class ObservedClient:
    """The API client as the filesystem sees it: uploads and deletes are counted and logged at INFO, with
    the file_id, the size and the rate, and a refusal with the platform's reason."""

    def __init__(self, client: UploadClient, stats: Stats,
                 size_of: Callable[[str], int | None] = lambda _: None) -> None:
        self._client = client
        self._stats = stats
        self._size_of = size_of

    def upload(self, path: str | os.PathLike[str], purpose: str, filename: str) -> FileRecord:
        size = Path(path).stat().st_size
        ident = self._stats.start(self._stats.uploads, f"{purpose}/{filename}", size,
                                  path=os.path.realpath(path))
        started = time.monotonic()
        try:
            record = self._client.upload(path, purpose, filename)
        except MmfsError as exc:
            self._stats.finish(self._stats.uploads, ident)
            self._stats.add("uploads_failed")
            log.info("upload refused: %s to %s (%d bytes): %s", filename, purpose, size, exc)
            raise
        except BaseException:
            self._stats.finish(self._stats.uploads, ident)
            raise
        seconds = time.monotonic() - started
        self._stats.finish(self._stats.uploads, ident)
        self._stats.add("uploads_done")
        self._stats.add("uploaded_bytes", size)
        log.info("uploaded %s to %s: file_id %s, %d bytes in %.2f s (%s)", filename, purpose, record.file_id,
                 size, seconds, _rate(size, seconds))
        return record

    def delete(self, file_id: str, purpose: str) -> None:
        try:
            size = self._size_of(file_id)
        except (OSError, MmfsError):
            size = None
        what = f"file_id {file_id} ({size} bytes)" if size is not None else f"file_id {file_id}"
        try:
            self._client.delete(file_id, purpose)
        except MmfsError as exc:
            log.info("delete refused: %s in %s: %s", what, purpose, exc)
            raise
        self._stats.add("deletes")
        log.info("deleted %s from %s", what, purpose)

    def find_landed(self, purpose: str, filename: str, size: int, started: float,
                    not_ids: frozenset[str] = frozenset()) -> FileRecord | None:
        return self._client.find_landed(purpose, filename, size, started, not_ids)


class LastErrorHandler(logging.Handler):
    """Keeps the latest WARNING or worse the mount logged, for status."""

    def __init__(self, stats: Stats) -> None:
        super().__init__(logging.WARNING)
        self._stats = stats

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # This handler runs before the log handler's filter: it redacts for itself (status is shown).
            self._stats.error(one_line(redact(f"{record.name}: {record.getMessage()}")))
        except Exception:
            self.handleError(record)
