"""Files mmfs has seen that a listing may not show again, and true sizes learned from downloads.

Generated outputs and ``video_understanding`` uploads never appear in a listing; a file reached through
``/.by-id/<file_id>`` or uploaded through the mount is remembered here, persisted, so it stays in its
purpose folder across remounts. Sizes probed for files listed with ``bytes`` 0 are kept too: a file's bytes
never change under its id, so a size learned once is right forever.

The state file holds file ids, names and sizes, never the key or a URL. It is written whole to a temporary
file and renamed over the old one, so a crash leaves the old state or the new, never half of one.

Concurrency: ``_lock`` guards everything; the file is rewritten under it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from mmfs.api.records import FileRecord
from mmfs.private_dir import make_private_dir

__all__ = ["KnownFiles"]

log = logging.getLogger("mmfs.known")

_FIELDS = ("file_id", "bytes", "created_at", "filename", "purpose")


class KnownFiles:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._files: dict[str, FileRecord] = {}
        self._seen_at: dict[str, float] = {}
        self._sizes: dict[str, int] = {}
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable state file %s: %s", path, exc)
            return
        for file_id, fields in (state.get("files") or {}).items():
            if isinstance(fields, dict):
                clean = {k: fields.get(k) for k in _FIELDS}
                clean["file_id"] = str(file_id)
                self._files[str(file_id)] = FileRecord(**clean)
                self._seen_at[str(file_id)] = float(fields.get("seen_at") or 0.0)
        for file_id, size in (state.get("sizes") or {}).items():
            if isinstance(size, int) and size >= 0:
                self._sizes[str(file_id)] = size

    def _save_locked(self) -> None:
        if self._path is None:
            return
        files = {}
        for file_id, record in self._files.items():
            fields = {k: v for k, v in asdict(record).items() if k in _FIELDS}
            fields["seen_at"] = self._seen_at.get(file_id, 0.0)
            files[file_id] = fields
        payload = json.dumps({"version": 1, "files": files, "sizes": self._sizes}, indent=1)
        make_private_dir(self._path.parent)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".known-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
        except OSError as exc:
            log.warning("could not save state to %s: %s", self._path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def remember(self, record: FileRecord) -> None:
        stripped = FileRecord(
            file_id=record.file_id,
            bytes=record.bytes,
            created_at=record.created_at,
            filename=record.filename,
            purpose=record.purpose,
        )
        with self._lock:
            if self._files.get(record.file_id) == stripped:
                return
            self._files[record.file_id] = stripped
            self._seen_at[record.file_id] = time.time()
            self._save_locked()

    def forget(self, file_id: str) -> None:
        with self._lock:
            removed = self._files.pop(file_id, None) is not None
            removed = self._sizes.pop(file_id, None) is not None or removed
            self._seen_at.pop(file_id, None)
            if removed:
                self._save_locked()

    def get(self, file_id: str) -> FileRecord | None:
        with self._lock:
            return self._files.get(file_id)

    def in_purpose(self, purpose: str) -> list[FileRecord]:
        with self._lock:
            return [r for r in self._files.values() if r.purpose == purpose]

    def seen_at(self, file_id: str) -> float:
        with self._lock:
            return self._seen_at.get(file_id, 0.0)

    def all(self) -> list[FileRecord]:
        with self._lock:
            return list(self._files.values())

    def size(self, file_id: str) -> int | None:
        with self._lock:
            return self._sizes.get(file_id)

    def set_size(self, file_id: str, size: int) -> None:
        with self._lock:
            if self._sizes.get(file_id) == size:
                return
            self._sizes[file_id] = size
            self._save_locked()
