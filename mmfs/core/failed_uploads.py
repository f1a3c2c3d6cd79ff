"""``failed-uploads/``: where the bytes of a file that did not reach the platform are kept, and what it was.

Each kept file is ``<time>-<purpose>-<name>`` with ``<same>.json`` beside it: the purpose and name it was
meant for, its size, whether it is the whole file (``complete``) or was cut short, and why it is here.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from mmfs.private_dir import make_private_dir

__all__ = ["keep", "kept"]


def _target(failed_dir: Path, purpose: str, filename: str) -> Path:
    safe = re.sub(r"[^\w.\-]+", "_", filename)[:120] or "unnamed"
    target = failed_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{purpose}-{safe}"
    counter = 1
    while target.exists() or target.with_name(target.name + ".json").exists():
        target = target.with_name(f"{target.name}.{counter}")
        counter += 1
    return target


def keep(put: Callable[[Path], None], failed_dir: Path, *, purpose: str, filename: str, size: int,
         complete: bool, why: str) -> Path:
    """Put a file's bytes at a new name in ``failed_dir`` (``put(target)`` writes them) and describe it."""
    make_private_dir(failed_dir)
    target = _target(failed_dir, purpose, filename)
    put(target)
    info = {"purpose": purpose, "filename": filename, "bytes": size, "complete": complete, "why": why}
    with contextlib.suppress(OSError):  # a full disk: the kept file's own name still says purpose and name
        target.with_name(target.name + ".json").write_text(json.dumps(info, indent=1))
    return target


def _description(path: Path) -> dict[str, object] | None:
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(path.read_text())
        if isinstance(info, dict) and "why" in info:
            return info
    return None


def kept(failed_dir: Path | None) -> list[dict[str, object]]:
    """What waits in ``failed_dir``: each kept file with its size and, where its description survived, what
    it was meant to be. Descriptions are not kept files, even when the file they describe was removed."""
    if failed_dir is None or not failed_dir.is_dir():
        return []
    found: list[dict[str, object]] = []
    for entry in sorted(failed_dir.iterdir()):
        if not entry.is_file() or (entry.name.endswith(".json") and _description(entry) is not None):
            continue
        item: dict[str, object] = {"path": str(entry), "size": entry.stat().st_size}
        item.update(_description(entry.with_name(entry.name + ".json")) or {})
        found.append(item)
    return found
