"""The emulator's file store: bytes as one file each, metadata in one SQLite database.

Layout under the data dir::

    meta.sqlite      tables files(file_id, bytes, created_at, filename, purpose) and settings(secret)
    blobs/<file_id>  the file's bytes, never changed once written
    tmp/             uploads in progress; emptied at start

A file's bytes are moved into ``blobs/`` before its row is committed, and each change is one SQLite
transaction, so a crash leaves the old state or the new, never half of one; adding a file costs one
insert however many files there are (a corpus of 10,000 files seeds in seconds). The URL signing secret
is kept in the same database so download URLs stay valid across a restart. A data dir written by an
earlier version (``meta.json``) is imported once.

Concurrency: ``_lock`` guards ``_files`` and the database connection. Readers get copies.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from dataclasses import astuple, dataclass
from pathlib import Path

__all__ = ["FileStore", "StoredFile"]

_DB = "meta.sqlite"
_LEGACY_META = "meta.json"
_FIELDS = ("file_id", "bytes", "created_at", "filename", "purpose")
# 15 digits, like the ids the platform hands out (e.g. 361721749176519).
_ID_LOW = 10**14
_ID_SPAN = 9 * 10**14


@dataclass(frozen=True)
class StoredFile:
    file_id: int
    bytes: int
    created_at: int
    filename: str
    purpose: str


class FileStore:
    """Files on disk plus their metadata; safe to use from many threads."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.blob_dir = self.data_dir / "blobs"
        self.tmp_dir = self.data_dir / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)  # leftovers of uploads that never finished
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: dict[int, StoredFile] = {}
        # One connection shared under _lock. synchronous=OFF: a killed process still leaves a consistent
        # database (SQLite's journal sees to that); only power loss could lose the last changes, and an
        # emulator need not survive that, while an fsync per upload would slow every test.
        self._db = sqlite3.connect(self.data_dir / _DB, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS files (file_id INTEGER PRIMARY KEY, bytes INTEGER,"
                         " created_at INTEGER, filename TEXT, purpose TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT)")
        self.secret = self._setting("secret") or self._import_legacy() or secrets.token_hex(20)
        self._db.execute("INSERT OR REPLACE INTO settings VALUES ('secret', ?)", (self.secret,))
        for row in self._db.execute(f"SELECT {', '.join(_FIELDS)} FROM files"):
            record = StoredFile(*row)
            if self.blob_path(record.file_id).exists():
                self._files[record.file_id] = record

    def _setting(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def _import_legacy(self) -> str | None:
        """Rows and secret from a data dir written as meta.json; returns the secret it held."""
        path = self.data_dir / _LEGACY_META
        if not path.exists():
            return None
        meta = json.loads(path.read_text(encoding="utf-8"))
        rows = [tuple(entry[f] for f in _FIELDS) for entry in meta.get("files", [])]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", rows)
        path.rename(path.with_suffix(".json.imported"))
        return meta.get("secret")

    def blob_path(self, file_id: int) -> Path:
        return self.blob_dir / str(file_id)

    def new_temp_path(self) -> Path:
        """A fresh path in the store's temp folder for an upload in progress (the caller creates it)."""
        return self.tmp_dir / f"up-{secrets.token_hex(8)}"

    def add(self, temp_path: Path, purpose: str, filename: str, created_at: int | None = None) -> StoredFile:
        """Take ownership of the complete file at ``temp_path`` and record it under a new id."""
        size = temp_path.stat().st_size
        with self._lock:
            file_id = _ID_LOW + secrets.randbelow(_ID_SPAN)
            while file_id in self._files:
                file_id = _ID_LOW + secrets.randbelow(_ID_SPAN)
            os.replace(temp_path, self.blob_path(file_id))
            record = StoredFile(
                file_id=file_id,
                bytes=size,
                created_at=int(time.time()) if created_at is None else int(created_at),
                filename=filename,
                purpose=purpose,
            )
            self._db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?)", astuple(record))
            self._files[file_id] = record
        return record

    def add_bytes(self, data: bytes | Path, purpose: str, filename: str, created_at: int | None = None
                  ) -> StoredFile:
        """Store ``data`` (bytes, or a file to copy) as a new file."""
        temp = self.new_temp_path()
        if isinstance(data, bytes | bytearray):
            temp.write_bytes(data)
        else:
            shutil.copyfile(data, temp)
        return self.add(temp, purpose, filename, created_at)

    def get(self, file_id: int) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def all(self) -> list[StoredFile]:
        with self._lock:
            return list(self._files.values())

    def delete(self, file_id: int) -> StoredFile | None:
        """Forget a file and remove its bytes; downloads already streaming keep their open handle."""
        with self._lock:
            record = self._files.pop(file_id, None)
            if record is None:
                return None
            self._db.execute("DELETE FROM files WHERE file_id = ?", (file_id,))
        self.blob_path(file_id).unlink(missing_ok=True)
        return record

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)
