"""mmfs: the MiniMax file platform as a FUSE filesystem.

From Python, ``mmfs.mount()`` mounts in a child process and hands back a ``Mount``; as a context manager
it unmounts on exit::

    import mmfs

    with mmfs.mount("/home/me/minimax", api_key_file="/home/me/.config/mmfs/key", read_only=True) as m:
        print(sorted(p.name for p in m.path.iterdir()))
        print(m.status()["cache"]["bytes"])

Nothing in the calling process changes (umask, signal handlers, the GIL switch interval): the mount runs
in its own process, as ``mmfs mount`` would.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["Mount", "MountFailed", "__version__", "mount"]

try:
    __version__ = version("mmfs")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    # Loaded on first use, so `import mmfs.emulator` (which must stand alone) pulls in nothing else.
    if name in ("Mount", "MountFailed", "mount"):
        from mmfs.runtime import library

        return getattr(library, name)
    raise AttributeError(f"module 'mmfs' has no attribute {name!r}")


# A library logs nothing unless its user configures logging.
logging.getLogger("mmfs").addHandler(logging.NullHandler())
