"""The FUSE adapter: mfusepy callbacks -> ``FileSystem`` -> errno. Nothing else lives here.

mmfs speaks the fusepy API through mfusepy, its maintained fork: libfuse 3, ENOSYS for operations it does
not implement, ``init_with_config`` for connection settings, and a callback wrapper that lets the loop exit.

Every callback funnels errors through ``_errors``: an ``OSError`` keeps its errno (``MmfsError`` carries
the right one); anything else is a bug, logged once with its traceback and answered EIO, never a hang.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # before mfusepy loads a libfuse; see mmfs.mount

from mfusepy import FUSE, FuseOSError, Operations

from mmfs.control import CONTROL_XATTR
from mmfs.fs import FileSystem, OpenResult
from mmfs.fusebuf import new_bufvec, store_bufvec

__all__ = ["MmfsFUSE", "MmfsOperations"]

log = logging.getLogger("mmfs.fuse")

_FUSE_CAP_ATOMIC_O_TRUNC = 1 << 3  # libfuse's fuse_common.h
# mmfs's own attributes (user.minimax.*, user.mmfs.*) all live in the user namespace.
_OWN_XATTR_NAMESPACE = "user."

F = TypeVar("F", bound=Callable[..., Any])


def _load_libfuse() -> ctypes.CDLL | None:
    """The libfuse mfusepy loaded (dlopen hands back the same library), for the calls it does not wrap."""
    name = ctypes.util.find_library(os.environ.get("FUSE_LIBRARY_NAME", "fuse3"))
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    if not hasattr(lib, "fuse_invalidate_path"):  # libfuse 2 has no path invalidation
        return None
    lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.fuse_invalidate_path.restype = ctypes.c_int
    return lib


_libfuse = _load_libfuse()


class _FuseContext(ctypes.Structure):
    _fields_ = [("fuse", ctypes.c_void_p)]  # the first field of libfuse's struct fuse_context


def _current_fuse() -> ctypes.c_void_p | None:
    if _libfuse is None:
        return None
    _libfuse.fuse_get_context.restype = ctypes.POINTER(_FuseContext)
    context = _libfuse.fuse_get_context()
    return ctypes.c_void_p(context.contents.fuse) if context else None


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

    def __init__(self, fs: FileSystem, *, max_readahead: int = 1 << 20, umask: int | None = None,
                 control_socket: str | None = None) -> None:
        self.fs = fs
        self._max_readahead = max_readahead
        self._umask = umask or 0
        self.control_socket = control_socket
        self._fuse: ctypes.c_void_p | None = None
        # Set once libfuse has finished the kernel's INIT handshake: the mount answers from then on.
        self.initialized = threading.Event()

    def init_with_config(self, conn_info, config_3) -> None:
        # Kept for invalidate(): libfuse's handle of this mount, only reachable from inside a callback.
        self._fuse = _current_fuse()
        if conn_info is not None:
            # The kernel caps readahead at its own default unless asked for less; ask for plenty.
            conn_info.max_readahead = self._max_readahead
            conn_info.max_write = 1 << 20
            # Without atomic O_TRUNC the kernel truncates through setattr, whose reply carries the size we
            # report: the committed file's, so readers keep seeing the old bytes until the new ones land.
            conn_info.want &= ~_FUSE_CAP_ATOMIC_O_TRUNC
        if config_3 is not None:
            # Without it libfuse turns the unlink of an open file into a rename to .fuse_hiddenXXX, which a
            # platform without rename answers EXDEV: `rm` of a file someone reads or uploads would fail.
            # The core keeps an unlinked open file usable itself (see FileSystem.unlink).
            config_3.hard_remove = 1
        self.fs.invalidate = self.invalidate  # an overwrite that landed drops the kernel's old size and pages
        self.initialized.set()

    def destroy(self, path: str) -> None:
        self.fs.destroy()

    def invalidate(self, path: str) -> int:
        """Drop the kernel's cached entry and attributes of ``path`` (libfuse's fuse_invalidate_path): the
        next look-up asks us again. Returns 1 if the kernel held the path, else 0."""
        if self._fuse is None or _libfuse is None:
            return 0
        # No lock of ours around it: libfuse's call is thread-safe, and the kernel may wait on a callback
        # (one that itself invalidates) before it answers.
        return int(_libfuse.fuse_invalidate_path(self._fuse, path.encode("utf-8", "surrogateescape")) == 0)

    @_errors
    def getattr(self, path: str | None, fh: Any = None) -> dict[str, int]:
        if path is None:  # a file unlinked while open has no path (hard_remove); libfuse answers ESTALE too
            raise FuseOSError(errno.ESTALE)
        attrs = self.fs.getattr(path).as_dict()
        attrs["st_mode"] &= ~self._umask
        return attrs

    @_errors
    def readdir(self, path: str, fh: Any) -> list[str]:
        return [".", "..", *self.fs.readdir(path)]

    @_errors
    def statfs(self, path: str) -> dict[str, int]:
        return self.fs.statfs()

    def _xattrs(self, path: str) -> dict[str, bytes]:
        attrs = self.fs.xattrs(path)
        if path == "/" and self.control_socket:
            # How `mmfs status MNT` and friends find this mount's control channel, whatever --state-dir.
            attrs[CONTROL_XATTR] = self.control_socket.encode()
        return attrs

    @_errors
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        if not name.startswith(_OWN_XATTR_NAMESPACE):
            # security.selinux and system.posix_acl_access, which `ls -l` asks of every file: ENOTSUP (this
            # namespace is not supported here) rather than ENODATA makes ls stop asking for the rest of the
            # mount, and costs no look-up. The kernel keeps nothing for either answer; ENOSYS would make it
            # stop forwarding every getxattr, the user.* ones included.
            raise FuseOSError(errno.ENOTSUP)
        value = self._xattrs(path).get(name)
        if value is None:
            raise FuseOSError(errno.ENODATA)
        return value

    @_errors
    def listxattr(self, path: str) -> list[str]:
        return list(self._xattrs(path))

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
        return self._fill(fi, self.fs.create(path, fi.flags))

    @_errors
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        return self.fs.write(fi.fh, data, offset)

    @_errors
    def truncate(self, path: str | None, length: int, fh: Any = None) -> int:
        if path is None:  # ftruncate of a file unlinked while open: mfusepy passes neither path nor handle
            raise FuseOSError(errno.ESTALE)  # (rather than an internal error)
        self.fs.truncate(path, length, fh.fh if fh is not None else None)  # raw_fi: fh is the file info
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
        self.fs.accept_metadata(path)
        return 0

    @_errors
    def chown(self, path: str, uid: int, gid: int) -> int:
        self.fs.accept_metadata(path)
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


class MmfsFUSE(FUSE):
    """mfusepy's FUSE, with ``ftruncate``'s descriptor passed on: its libfuse 3 ``truncate`` drops the file
    info, and only the descriptor tells ``ftruncate(fd)`` from an ``O_TRUNC`` open (see ``FileSystem.truncate``)."""

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        return self.ftruncate(path, length, fip)
