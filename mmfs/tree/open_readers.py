"""Which stored file each open reader of a path holds, so an overwrite never cuts one short.

The kernel keeps one size per file (per path, under libfuse's high-level API), not per descriptor, and
clamps a cached read at it. When an overwrite lands, the path's size becomes the new file's; a reader that
opened the old file before would then meet the end of the file at the new size, silently. So while such a
reader is open the path shows the larger of the two sizes; readers that open the new file meanwhile are
opened with ``direct_io`` (the kernel neither clamps nor caches their reads: they end where the new file
ends, and never see pages the old reader brought in); and when the last old reader closes the kernel is
told to forget the path's size and pages.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["OpenReaders"]


@dataclass(frozen=True)
class _Reader:
    path: str
    file_id: str
    size: int


class OpenReaders:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_fh: dict[int, _Reader] = {}
        self._by_path: dict[str, dict[int, _Reader]] = {}
        self._held: set[str] = set()  # paths shown larger than their file for an older file's reader

    def opened(self, fh: int, path: str, file_id: str, size: int) -> None:
        reader = _Reader(path, file_id, size)
        with self._lock:
            self._by_fh[fh] = reader
            self._by_path.setdefault(path, {})[fh] = reader

    def moved_away(self, path: str) -> None:
        """``path`` was removed or renamed over: its readers keep a file of their own (libfuse's
        ``hard_remove`` gives the path a new inode), so they no longer hold its size up."""
        with self._lock:
            self._by_path.pop(path, None)
            self._held.discard(path)

    def others_open(self, path: str, file_id: str) -> bool:
        """Whether a reader of ``path`` has a file other than ``file_id`` open."""
        with self._lock:
            return any(r.file_id != file_id for r in self._by_path.get(path, {}).values())

    def size(self, path: str, file_id: str, size: int) -> int:
        """The size ``path`` shows for ``file_id`` of ``size`` bytes: never less than a file an earlier
        reader of the path still has open."""
        with self._lock:
            held = max((r.size for r in self._by_path.get(path, {}).values() if r.file_id != file_id), default=0)
            if held <= size:
                return size
            self._held.add(path)
            return held

    def closed(self, fh: int) -> str | None:
        """Forget ``fh``; the path whose size and pages the kernel must drop now, if any: the path was shown
        larger for a file whose last reader this was."""
        with self._lock:
            reader = self._by_fh.pop(fh, None)
            others = self._by_path.get(reader.path) if reader is not None else None
            if reader is None or others is None or fh not in others:
                return None  # moved away: it reads a file of its own that no path shows
            del others[fh]
            if not others:
                del self._by_path[reader.path]
            if reader.path not in self._held or any(r.file_id == reader.file_id for r in others.values()):
                return None
            if not others:
                self._held.discard(reader.path)
            return reader.path
