"""The FUSE adapter: mfusepy callbacks -> ``FileSystem`` -> errno. Nothing else lives here.

mmfs speaks the fusepy API through mfusepy, its maintained fork: libfuse 3, ENOSYS for operations it does
not implement, ``init_with_config`` for connection settings, and a callback wrapper that lets the loop exit.

Every callback funnels errors through ``_errors``: an ``OSError`` keeps its errno (``MmfsError`` carries
the right one); anything else is a bug, logged once with its traceback and answered EIO, never a hang.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # before mfusepy loads a libfuse; see mmfs.mount

from mfusepy import FuseOSError, Operations

from mmfs.fs import FileSystem, OpenResult
from mmfs.fusebuf import new_bufvec, store_bufvec

__all__ = ["MmfsOperations"]

log = logging.getLogger("mmfs.fuse")

_FUSE_CAP_ATOMIC_O_TRUNC = 1 << 3  # libfuse's fuse_common.h

F = TypeVar("F", bound=Callable[..., Any])


def _errors(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except FuseOSError:
            raise
        except OSError as exc:
            code = exc.errno if isinstance(exc.errno, int) and exc.errno > 0 else errno.EIO
            if code not in (errno.ENOENT,):
                log.debug("%s%r -> %s: %s", method.__name__, args[:1], errno.errorcode.get(code, code), exc)
            raise FuseOSError(code) from None
        except Exception:
            log.exception("internal error in %s%r", method.__name__, args[:1])
            raise FuseOSError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


class MmfsOperations(Operations):
    use_ns = True  # st_*time in nanoseconds (mfusepy's modern mode)

    def __init__(self, fs: FileSystem, *, max_readahead: int = 1 << 20) -> None:
        self.fs = fs
        self._max_readahead = max_readahead

    def init_with_config(self, conn_info, config_3) -> None:
        if conn_info is not None:
            # The kernel caps readahead at its own default unless asked for less; ask for plenty.
            conn_info.max_readahead = self._max_readahead
            conn_info.max_write = 1 << 20
            # Without atomic O_TRUNC the kernel truncates through setattr, whose reply carries the size we
            # report: the committed file's, so readers keep seeing the old bytes until the new ones land.
            conn_info.want &= ~_FUSE_CAP_ATOMIC_O_TRUNC

    def destroy(self, path: str) -> None:
        self.fs.destroy()

    @_errors
    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        return self.fs.getattr(path).as_dict()

    @_errors
    def readdir(self, path: str, fh: Any) -> list[str]:
        return [".", "..", *self.fs.readdir(path)]

    @_errors
    def statfs(self, path: str) -> dict[str, int]:
        return self.fs.statfs()

    @staticmethod
    def _fill(fi: Any, opened: OpenResult) -> int:
        fi.fh = opened.fh
        fi.keep_cache = int(opened.keep_cache)
        fi.direct_io = int(opened.direct_io)
        return 0

    @_errors
    def open(self, path: str, fi: Any) -> int:
        return self._fill(fi, self.fs.open(path, fi.flags))

    @_errors
    def create(self, path: str, mode: int, fi: Any) -> int:
        return self._fill(fi, self.fs.create(path))

    @_errors
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        return self.fs.write(fi.fh, data, offset)

    @_errors
    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        self.fs.truncate(path, length)
        return 0

    @_errors
    def flush(self, path: str, fi: Any) -> int:
        self.fs.flush(fi.fh)  # close() waits for the upload and sees its errno
        return 0

    @_errors
    def fsync(self, path: str, datasync: int, fi: Any) -> int:
        return 0  # the spool is a local file; the upload happens at close, once

    @_errors
    def unlink(self, path: str) -> int:
        self.fs.unlink(path)
        return 0

    @_errors
    def rename(self, old: str, new: str) -> int:
        self.fs.rename(old, new)
        return 0

    @_errors
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self.fs.utimens(path, times[1] if times else None)
        return 0

    @_errors
    def mkdir(self, path: str, mode: int) -> int:
        self.fs.refuse("folders of its own")
        return 0

    @_errors
    def rmdir(self, path: str) -> int:
        self.fs.refuse("way to remove a purpose folder")
        return 0

    @_errors
    def chmod(self, path: str, mode: int) -> int:
        self.fs.refuse("permissions")
        return 0

    @_errors
    def chown(self, path: str, uid: int, gid: int) -> int:
        self.fs.refuse("owners")
        return 0

    @_errors
    def symlink(self, target: str, source: str) -> int:
        self.fs.refuse("symbolic links")
        return 0

    @_errors
    def link(self, target: str, source: str) -> int:
        self.fs.refuse("hard links")
        return 0

    @_errors
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        answer = self.fs.read(fi.fh, offset, size)
        assert isinstance(answer, bytes)
        return answer

    @_errors
    def read_buf(self, path: str, bufpp: Any, size: int, offset: int, fi: Any) -> int:
        # libfuse calls this instead of read: a block on disk goes back as its cache file's fd and offset,
        # and libfuse moves the bytes itself; anything else as bytes in a malloc'd buffer (libfuse frees it).
        store_bufvec(bufpp, new_bufvec(self.fs.read(fi.fh, offset, size, as_file=True)))
        return 0

    @_errors
    def release(self, path: str, fi: Any) -> int:
        self.fs.release(fi.fh)
        return 0
