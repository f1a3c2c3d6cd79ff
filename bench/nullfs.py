"""The ceiling: a FUSE filesystem in Python that serves the corpus bytes from memory.

It uses the same library and options mmfs uses (mfusepy, multithreaded, foreground, ``raw_fi`` with
``keep_cache``, long attribute and entry timeouts, the largest read-ahead the kernel allows), so the time a
read takes here is what Python + libfuse + the kernel cost with no network and no cache behind them. mmfs
cannot be faster than this on a cold read.

Run as ``python -m bench.nullfs MNT --file NAME:SIZE ... [--small-dir NAME:COUNT] [--stats FILE]``; the
libfuse major version is chosen by ``FUSE_LIBRARY_NAME`` (``fuse3`` or ``fuse``) in the environment, which
mfusepy reads on import. On unmount it writes the sizes of the reads the kernel sent to ``--stats``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import mfusepy

from bench.corpus import BLOCK, PATTERN, STAMP_SIZE, small_file_bytes, small_file_name, stamp_bytes

# As long as mmfs keeps them: file records never change under one id.
ATTR_TIMEOUT = 60.0
# Asked for in init; the kernel clamps it to what the backing device allows (see the report for what it kept).
WANTED_READAHEAD = 8 << 20


class NullFs(mfusepy.Operations):
    use_ns = True

    def __init__(self, files: dict[str, int], small_dirs: dict[str, int]) -> None:
        self.files = files
        self.small_dirs = small_dirs
        self.read_sizes: Counter[int] = Counter()
        self._stats_lock = threading.Lock()
        self.conn_settings: dict[str, int] = {}
        self._now = time.time_ns()

    # --- connection ---
    def init_with_config(self, conn, config) -> None:
        if conn is not None:
            # max_read stays as mounted: libfuse 3 refuses an init that changes it (EPROTO).
            conn.max_readahead = WANTED_READAHEAD
            self.conn_settings = {
                name: int(getattr(conn, name))
                for name in ("max_readahead", "max_read", "max_write", "max_background")
                if hasattr(conn, name)
            }

    # --- metadata ---
    def _attrs(self, mode: int, size: int, nlink: int) -> dict[str, int]:
        return {
            "st_mode": mode,
            "st_size": size,
            "st_nlink": nlink,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_mtime": self._now,
            "st_ctime": self._now,
            "st_atime": self._now,
        }

    def _lookup(self, path: str) -> tuple[str, int] | None:
        """('dir', 0) / ('file', size) / None for a path."""
        if path == "/":
            return ("dir", 0)
        parts = path.strip("/").split("/")
        if len(parts) == 1:
            if parts[0] in self.files:
                return ("file", self.files[parts[0]])
            if parts[0] in self.small_dirs:
                return ("dir", 0)
        elif len(parts) == 2 and parts[0] in self.small_dirs:
            index = _small_index(parts[1], self.small_dirs[parts[0]])
            if index is not None:
                return ("file", len(small_file_bytes(index)))
        return None

    def getattr(self, path: str, fh=None) -> dict[str, int]:
        found = self._lookup(path)
        if found is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        kind, size = found
        if kind == "dir":
            return self._attrs(stat.S_IFDIR | 0o555, 0, 2)
        return self._attrs(stat.S_IFREG | 0o444, size, 1)

    def readdir(self, path: str, fh) -> list[str]:
        if path == "/":
            return [".", "..", *self.files, *self.small_dirs]
        count = self.small_dirs.get(path.strip("/"))
        if count is None:
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        return [".", "..", *(small_file_name(i) for i in range(count))]

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": BLOCK, "f_frsize": 4096, "f_blocks": 1 << 20, "f_bavail": 0, "f_bfree": 0}

    # --- data ---
    def open(self, path: str, fi) -> int:
        found = self._lookup(path)
        if found is None or found[0] != "file":
            raise mfusepy.FuseOSError(errno.ENOENT)
        if fi.flags & (os.O_WRONLY | os.O_RDWR):
            raise mfusepy.FuseOSError(errno.EROFS)
        fi.keep_cache = 1
        return 0

    def read(self, path: str, size: int, offset: int, fh) -> bytes:
        with self._stats_lock:
            self.read_sizes[size] += 1
        name = path.strip("/")
        total = self.files.get(name)
        if total is None:
            parts = name.split("/")
            index = _small_index(parts[-1], self.small_dirs.get(parts[0], 0)) if len(parts) == 2 else None
            if index is None:
                raise mfusepy.FuseOSError(errno.ENOENT)
            return small_file_bytes(index)[offset : offset + size]
        end = min(offset + size, total)
        # Slices of one shared pattern plus the 8-byte stamps, joined once: building each block afresh
        # costs more in page faults on new 1 MiB buffers than the whole read path does.
        pieces = []
        while offset < end:
            block, within = divmod(offset, BLOCK)
            take = min(end - offset, BLOCK - within)
            if within < STAMP_SIZE:
                stamp = stamp_bytes(block)
                pieces.append(stamp[within : min(STAMP_SIZE, within + take)])
                if within + take > STAMP_SIZE:
                    pieces.append(PATTERN[STAMP_SIZE : within + take])
            else:
                pieces.append(PATTERN[within : within + take])
            offset += take
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _small_index(name: str, count: int) -> int | None:
    if not (name.startswith("f") and name.endswith(".txt")):
        return None
    try:
        index = int(name[1:-4])
    except ValueError:
        return None
    return index if 0 <= index < count and small_file_name(index) == name else None


def _name_value(text: str) -> tuple[str, int]:
    name, _, value = text.rpartition(":")
    return name, int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nullfs", description=__doc__.split("\n")[0])
    parser.add_argument("mountpoint")
    parser.add_argument("--file", action="append", default=[], metavar="NAME:SIZE")
    parser.add_argument("--small-dir", action="append", default=[], metavar="NAME:COUNT")
    parser.add_argument("--stats", help="write the read sizes seen to this JSON file at unmount")
    args = parser.parse_args(argv)
    stats_path = Path(args.stats).resolve() if args.stats else None  # libfuse may chdir("/")
    files = dict(_name_value(f) for f in args.file)
    small_dirs = dict(_name_value(d) for d in args.small_dir)
    ops = NullFs(files, small_dirs)
    options = {
        "foreground": True,
        "nothreads": False,
        "ro": True,
        "fsname": "nullfs",
        "subtype": "nullfs",
        "attr_timeout": ATTR_TIMEOUT,
        "entry_timeout": ATTR_TIMEOUT,
        "negative_timeout": 5.0,
        "auto_unmount": True,
    }
    if mfusepy.fuse_version_major == 2:
        options["big_writes"] = True  # what mmfs passes under libfuse 2 (writes arrive in 4 KiB otherwise)
    try:
        mfusepy.FUSE(ops, args.mountpoint, raw_fi=True, **options)
    finally:
        if stats_path is not None:
            stats_path.write_text(
                json.dumps(
                    {
                        "libfuse": f"{mfusepy.fuse_version_major}.{mfusepy.fuse_version_minor}",
                        "conn": ops.conn_settings,
                        "read_sizes": {str(k): v for k, v in sorted(ops.read_sizes.items())},
                    }
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
