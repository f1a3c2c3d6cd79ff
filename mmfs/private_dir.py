"""Folders only the mounting user may enter: the cache and state hold file contents and ids."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["make_private_dir"]


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 and make sure it is 0700 even if it existed."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path
