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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from mmfs.api.records import FileRecord
from mmfs.blocks.store import BlockStore
from mmfs.errors import MmfsError
from mmfs.redact import one_line, redact

__all__ = ["CountingSource", "CountingStore", "LastErrorHandler", "ObservedClient", "Stats"]

log = logging.getLogger("mmfs.fs")


@dataclass
class Transfer:
    what: str
    size: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    # An upload's spool: its progress is how far the client has read it (see _read_position).
    path: str | None = None

    def progress(self) -> int:
        if self.path is None:
            return self.done
        return min(self.size, _read_position(self.path))


def _read_position(path: str) -> int:
    """How far this process has read ``path``: the offset of its open descriptor, from /proc/self/fdinfo.
    The client streams the spool itself, so this is the upload's progress without reaching into it."""
    best = 0
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != path:
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("pos:"):
                        best = max(best, int(line.split()[1]))
        except (OSError, ValueError):
            continue
    return best


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

    def __init__(self, source: Any, stats: Stats) -> None:
        self._source = source
        self._stats = stats

    def fetch(self, file_id: str, start: int, end: int) -> bytes | bytearray:
        ident = self._stats.start(self._stats.downloads, f"{file_id} [{start}-{end})", end - start)
        try:
            data = self._source.fetch(file_id, start, end)
        finally:
            self._stats.finish(self._stats.downloads, ident)
        self._stats.add("downloaded_bytes", len(data))
        return data

    def fetch_into(self, file_id: str, start: int, into: bytearray | memoryview) -> None:
        from mmfs.blocks.source import fetch_into

        size = len(into)
        ident = self._stats.start(self._stats.downloads, f"{file_id} [{start}-{start + size})", size)
        try:
            fetch_into(self._source, file_id, start, into)
        finally:
            self._stats.finish(self._stats.downloads, ident)
        self._stats.add("downloaded_bytes", size)

    def stream(self, file_id: str, start: int, end: int) -> Iterator[bytes]:
        """A whole-body stream (a host that ignores Range) is one download in flight while it runs."""
        ident = self._stats.start(self._stats.downloads, f"{file_id} [{start}-{end}) stream", end - start)
        try:
            for chunk in self._source.stream(file_id, start, end):
                self._stats.add("downloaded_bytes", len(chunk))
                yield chunk
        finally:
            self._stats.finish(self._stats.downloads, ident)

    def __getattr__(self, name: str) -> Any:
        # Everything else the reader may ask of its source (ignores_range, true_size, ...) is the source's.
        return getattr(self._source, name)


class CountingStore:
    """A ``BlockStore`` whose look-ups are counted: a hit is a block read from disk, a miss one downloaded."""

    def __init__(self, store: BlockStore, stats: Stats) -> None:
        self._store = store
        self._stats = stats

    def get(self, key: str) -> Any:
        data = self._store.get(key)
        self._stats.add("hits" if data is not None else "misses")
        return data

    def open_file(self, key: str) -> Any:
        # A block read by fd (libfuse reads the file itself) is a hit too; a miss always comes through get.
        found = self._store.open_file(key)
        if found is not None:
            self._stats.add("hits")
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _rate(size: int, seconds: float) -> str:
    return f"{size / max(seconds, 1e-6) / 1e6:.1f} MB/s"


class ObservedClient:
    """The API client as the filesystem sees it: uploads and deletes are counted and logged at INFO, with
    the file_id, the size and the rate, and a refusal with the platform's reason."""

    def __init__(self, client: Any, stats: Stats, size_of: Callable[[str], int | None] = lambda _: None) -> None:
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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


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
