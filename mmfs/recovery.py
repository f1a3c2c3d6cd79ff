"""What a mount that died left in ``spool/``, accounted for by the next mount: nothing stays unaccounted.

- A spool whose manifest says ``complete`` was closed by its last writer and on its way up: it is uploaded
  now (unless a file of its name and size appeared on the platform since its upload started: that upload
  landed), and the file it was overwriting, if any, is deleted after it.
- A spool still ``writing`` was cut by the crash: it goes to ``failed-uploads/`` described as cut, with its
  intended purpose and name beside it. So does a scratch file (a tool's temporary, never uploaded) and a spool
  without a readable manifest.

Each file gets one log line saying what became of it. A spool another live mount holds (its ``flock``) is
left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from mmfs import failed_uploads
from mmfs.api.client import ApiClient
from mmfs.api.records import FileRecord
from mmfs.errors import MmfsError, NotFoundError
from mmfs.platform_names import to_platform
from mmfs.spool import COMPLETE
from mmfs.upload_rules import DELETE_PURPOSES

__all__ = ["recover_spools"]

log = logging.getLogger("mmfs.recovery")

# How far a platform clock may lag ours when telling "landed before the crash" from an older namesake.
_CLOCK_SLACK = 120


def recover_spools(spool_dir: Path, failed_dir: Path, client: ApiClient,
                   remember: Callable[[FileRecord], None] = lambda record: None) -> list[str]:
    """Upload or keep every spool left in ``spool_dir``; return (and log) one line per file."""
    if not spool_dir.is_dir():
        return []
    lines = []
    for stray in spool_dir.glob("*.json.new"):
        stray.unlink(missing_ok=True)
    for spool in sorted(spool_dir.glob("spool-*.part")):
        line = _recover_one(spool, failed_dir, client, remember)
        if line:
            log.warning("%s", line)
            lines.append(line)
    for manifest in spool_dir.glob("spool-*.json"):
        if not manifest.with_suffix(".part").exists():
            manifest.unlink(missing_ok=True)
    return lines


def _recover_one(spool: Path, failed_dir: Path, client: ApiClient,
                 remember: Callable[[FileRecord], None]) -> str | None:
    try:
        fd = os.open(spool, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live mount is writing it
        manifest = spool.with_suffix(".json")
        meta = _read_manifest(manifest)
        size = os.fstat(fd).st_size
        purpose = str(meta.get("purpose") or "unknown")
        filename = str(meta.get("filename") or spool.name)
        if size == 0:
            line = None  # an empty file never had anything to lose
        elif meta.get("state") == COMPLETE and not meta.get("scratch"):
            line = _upload(spool, meta, purpose, filename, size, failed_dir, client, remember)
        else:
            why = ("it still had a temporary name when the mount stopped" if meta.get("scratch")
                   else "the mount stopped while it was being written" if meta else "its record was lost")
            line = _keep(spool, failed_dir, purpose, filename, size, complete=False, why=why)
        spool.unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        return line
    finally:
        os.close(fd)


def _read_manifest(path: Path) -> dict[str, object]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _keep(spool: Path, failed_dir: Path, purpose: str, filename: str, size: int, *, complete: bool,
          why: str) -> str:
    target = failed_uploads.keep(lambda t: os.replace(spool, t), failed_dir, purpose=purpose, filename=filename,
                                 size=size, complete=complete, why=why)
    if complete:
        return f"{filename} ({purpose}) could not be uploaded after a restart ({why}); its {size} bytes are in {target}"
    return f"{filename} ({purpose}) was cut: {why}; the {size} bytes it had are in {target}, not the whole file"


def _upload(spool: Path, meta: dict[str, object], purpose: str, filename: str, size: int, failed_dir: Path,
            client: ApiClient, remember: Callable[[FileRecord], None]) -> str:
    started = float(meta.get("started") or meta.get("since") or 0)
    uploaded_as = to_platform(filename)
    try:
        record = _landed_before(client, purpose, uploaded_as, size, started, not_id=str(meta.get("replaces") or ""))
        found = record is not None
        if record is None:
            record = client.upload(spool, purpose, uploaded_as)
    except MmfsError as exc:
        return _keep(spool, failed_dir, purpose, filename, size, complete=True, why=str(exc))
    remember(record)
    how = "had landed before the mount stopped" if found else "was uploaded after a restart"
    line = f"{filename} ({purpose}) {how}: file {record.file_id}"
    replaces = meta.get("replaces")
    if replaces and str(replaces) != record.file_id and purpose in DELETE_PURPOSES:
        with contextlib.suppress(NotFoundError):
            try:
                client.delete(str(replaces), purpose)
                line += f", replacing {replaces}"
            except MmfsError as exc:
                line += f"; the file it replaces ({replaces}) could not be deleted: {exc}"
    return line


def _landed_before(client: ApiClient, purpose: str, filename: str, size: int, started: float,
                   not_id: str) -> FileRecord | None:
    """The file this spool became if its upload landed before the crash. Never ``not_id``, the file it
    replaces: an edit that kept the size, made soon after that file landed, matches it in every other way."""
    try:
        records = client.list_files(purpose)
    except MmfsError:
        return None  # a purpose that cannot be listed: upload (a duplicate is better than a loss)
    for record in records:
        if (record.file_id != not_id and record.filename == filename and record.bytes == size
                and record.created_at is not None
                and record.created_at >= started - _CLOCK_SLACK):
            return record
    return None
