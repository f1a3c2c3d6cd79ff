"""The files being written, by path: which ``PendingFile`` a path names now, and moving it on rename.

A path is in the table from ``create`` (or the first open for writing of a stored file) until its file is
gone from the tree or landed with no descriptor left; a scratch file and an empty new file stay with no
descriptor open (``PendingFile.lingers``).

Concurrency: ``_lock`` guards ``_by_path`` only; a file's own state is under its own lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from mmfs.core.writes import PendingFile

__all__ = ["PendingFiles", "WriteDescriptor"]


@dataclass(frozen=True)
class WriteDescriptor:
    """An open descriptor on a pending file; a read-only one never makes it upload. An ``append`` one
    (O_APPEND) writes at the file's end whatever offset the kernel sends (see ``PendingFile.write``)."""

    file: PendingFile
    writable: bool
    append: bool = False


class PendingFiles:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path: dict[str, PendingFile] = {}

    def get(self, path: str) -> PendingFile | None:
        with self._lock:
            return self._by_path.get(path)

    def add(self, path: str, make: Callable[[], PendingFile]) -> tuple[PendingFile, bool]:
        """The file at ``path``, made by ``make`` if there is none; and whether it was made."""
        with self._lock:
            existing = self._by_path.get(path)
            if existing is not None:
                return existing, False
            made = self._by_path[path] = make()
            return made, True

    def remove(self, file: PendingFile) -> bool:
        """Take ``file`` out of the tree if its path still names it."""
        with self._lock:
            if self._by_path.get(file.path) is file:
                del self._by_path[file.path]
                return True
            return False

    def move(self, file: PendingFile, new_path: str) -> PendingFile | None:
        """Give ``file`` the path ``new_path``; return the file that path named before, if any."""
        with self._lock:
            if self._by_path.get(file.path) is file:
                del self._by_path[file.path]
            displaced = self._by_path.get(new_path)
            self._by_path[new_path] = file
            return displaced

    def put_back(self, file: PendingFile, path: str) -> None:
        with self._lock:
            if self._by_path.get(path) is None:
                self._by_path[path] = file

    def names_in(self, folder: str) -> list[str]:
        """Names of files being written directly in ``folder`` that readers see (not hidden overwrites)."""
        prefix = folder.rstrip("/") + "/"
        with self._lock:
            files = list(self._by_path.items())
        return [p[len(prefix):] for p, f in files
                if p.startswith(prefix) and "/" not in p[len(prefix):] and not f.shows_stored]

    def all(self) -> list[PendingFile]:
        with self._lock:
            return list(self._by_path.values())
