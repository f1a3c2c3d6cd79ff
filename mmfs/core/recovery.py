"""What a mount that stopped or died left in ``spool/``, taken back by the next mount: nothing is lost.

The spool folder is the journal of local files (see ``mmfs.core.spool`` for its states):

- a spool closed and whole (``local`` or ``complete``) is a local file again, at its path, in the state it
  had: held (a temporary name, a refused upload) or waiting to land (the mount then tries it, first checking
  the listing for the file an earlier try may have stored, so it lands exactly once);
- a manifest ``landed`` whose old ids were not all deleted: they are hidden and deleted now;
- a spool still ``writing`` was cut by the crash (a program was writing it): it goes to ``failed-uploads/``
  described as cut, with its intended purpose and name beside it; so does a spool without a readable
  manifest, or one whose path another file took meanwhile.

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

from mmfs.core import failed_uploads
from mmfs.core.spool import COMPLETE, LANDED, LOCAL

__all__ = ["recover_spools"]

log = logging.getLogger("mmfs.recovery")

# adopt(fd, spool, manifest) -> a line, or None when the file cannot be taken back (its bytes are kept then)
Adopt = Callable[[int, Path, dict[str, object]], str | None]


def recover_spools(spool_dir: Path, failed_dir: Path, *, adopt: Adopt,
                   resume_deletes: Callable[[Path, dict[str, object]], str]) -> list[str]:
    """Take back or keep every spool left in ``spool_dir``; return (and log) one line per file."""
    if not spool_dir.is_dir():
        return []
    lines = []
    for stray in spool_dir.glob("*.json.new"):
        stray.unlink(missing_ok=True)
    for spool in sorted(spool_dir.glob("spool-*.part")):
        line = _recover_one(spool, failed_dir, adopt)
        if line:
            log.warning("%s", line)
            lines.append(line)
    for manifest in sorted(spool_dir.glob("spool-*.json")):
        if manifest.with_suffix(".part").exists():
            continue
        meta = _read_manifest(manifest)
        if meta.get("state") == LANDED and meta.get("deletes"):
            line = resume_deletes(manifest, meta)
            log.warning("%s", line)
            lines.append(line)
        else:
            manifest.unlink(missing_ok=True)
    return lines


def _recover_one(spool: Path, failed_dir: Path, adopt: Adopt) -> str | None:
    try:
        fd = os.open(spool, os.O_RDWR)
    except FileNotFoundError:
        return None
    adopted = False
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
        state = meta.get("state")
        line = None
        if state in (LOCAL, COMPLETE) and meta.get("purpose") and meta.get("filename"):
            if size == 0 and meta.get("replaces"):
                line = None  # an overwrite emptied and never uploaded: the stored file is still the truth
            else:
                line = adopt(fd, spool, meta)
                adopted = line is not None
                if not adopted:
                    line = _keep(spool, failed_dir, purpose, filename, size, complete=True,
                                 why="its name was taken by another file when the mount started again")
        elif size:
            why = "the mount stopped while it was being written" if meta else "its record was lost"
            line = _keep(spool, failed_dir, purpose, filename, size, complete=False, why=why)
        if not adopted:
            spool.unlink(missing_ok=True)
            manifest.unlink(missing_ok=True)
        return line
    finally:
        if not adopted:
            with contextlib.suppress(OSError):
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
        return (f"{filename} ({purpose}) could not be taken back after a restart ({why}); its {size} bytes are "
                f"in {target}")
    return f"{filename} ({purpose}) was cut: {why}; the {size} bytes it had are in {target}, not the whole file"
