"""A filesystem in a process of its own, for tests that kill it mid-write: ``python crashing_writer.py
BASE_URL ROOT PATH SIZE close|keep`` creates (or truncates) PATH, writes SIZE bytes, then either closes it (the upload
starts) or keeps it open, printing ``written`` first. The API key comes from the environment."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tools import open_for_writing

from mmfs.runtime.mount import build_filesystem
from mmfs.settings.config import MountConfig


def main() -> None:
    base_url, root, path, size, then = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    config = MountConfig(mountpoint=root / "mnt", api_key=os.environ["MINIMAX_API_KEY"], base_url=base_url,
                         cache_dir=root / "cache", state_dir=root / "state", block_size=64 << 10)
    fs = build_filesystem(config)
    fh = open_for_writing(fs, path, truncate=True)
    fs.write(fh, b"w" * size, 0)
    print("written", flush=True)
    if then == "close":
        fs.flush(fh)
    time.sleep(600)


if __name__ == "__main__":
    main()
