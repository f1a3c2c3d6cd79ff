"""The emulator's file store: bytes as one file each, metadata in one JSON file replaced atomically.

Layout under the data dir::

    meta.json        {"version": 1, "secret": hex, "files": [{file_id, bytes, created_at, filename, purpose}]}
    blobs/<file_id>  the file's bytes, never changed once written
    tmp/             uploads in progress; emptied at start

A file's bytes are moved into ``blobs/`` before its metadata names it, and the metadata is written to a temp
file then ``os.replace``d, so a crash leaves either the old or the new state, never half of one. The URL
signing secret lives in the same JSON so download URLs stay valid across a restart.

Concurrency: ``_lock`` guards ``_files`` and every write of meta.json. Readers get copies.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["FileStore", "StoredFile"]

_META = "meta.json"
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
        self.secret = secrets.token_hex(20)
        self._load()

    def _load(self) -> None:
        path = self.data_dir / _META
        if not path.exists():
            self._write_meta_locked()
            return
        meta = json.loads(path.read_text(encoding="utf-8"))
        self.secret = meta.get("secret") or self.secret
        for entry in meta.get("files", []):
            record = StoredFile(**entry)
            if self.blob_path(record.file_id).exists():
                self._files[record.file_id] = record

    def _write_meta_locked(self) -> None:
        meta = {"version": 1, "secret": self.secret, "files": [asdict(f) for f in self._files.values()]}
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".meta-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                # No fsync: os.replace already makes a killed process leave old or new state, and an
                # emulator need not survive power loss; an fsync per upload would slow every test.
                json.dump(meta, out, ensure_ascii=False)
            os.replace(tmp, self.data_dir / _META)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
            self._files[file_id] = record
            self._write_meta_locked()
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
            self._write_meta_locked()
        self.blob_path(file_id).unlink(missing_ok=True)
        return record

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)
