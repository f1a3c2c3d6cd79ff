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
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mmfs.platform import (
    CONTROL_XATTR,
    FOREIGN_XATTR_ERRNO,
    FUSE_CAP_ATOMIC_O_TRUNC,
    FUSE_FILL_DIR_PLUS,
    FUSE_READDIR_PLUS,
    LIBFUSE_NAME,
    NO_XATTR_ERRNO,
    OWN_XATTR_PREFIX,
    READ_BUF_FD,
)

os.environ.setdefault("FUSE_LIBRARY_NAME", LIBFUSE_NAME)  # before mfusepy loads a libfuse; see mmfs.runtime.mount

from mfusepy import FUSE, FuseOSError, Operations, c_stat, set_st_attrs

from mmfs.core.fs import FileSystem, OpenResult
from mmfs.doors.fusebuf import new_bufvec, store_bufvec

__all__ = ["MmfsFUSE", "MmfsOperations"]

log = logging.getLogger("mmfs.fuse")

F = TypeVar("F", bound=Callable[..., Any])


def _load_libfuse() -> ctypes.CDLL | None:
    """The libfuse mfusepy loaded (dlopen hands back the same library), for the calls it does not wrap."""
    name = ctypes.util.find_library(os.environ.get("FUSE_LIBRARY_NAME", LIBFUSE_NAME))
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
        # An open folder's names as its first readdir saw them, and whether its listing hands the kernel
        # their attributes (READDIRPLUS).
        self._folders: dict[int, tuple[list[str], bool]] = {}
        self._folder_handles = itertools.count(1)
        self._folders_lock = threading.Lock()
        # Per folder: the names whose attributes the kernel was last given with a listing, and when. While the
        # kernel keeps those entries (entry/attribute timeouts), giving them again is work for nothing.
        self._attrs_given: dict[str, tuple[list[str], float]] = {}
        self._kernel_keeps = 1.0  # seconds; set from libfuse's entry and attribute timeouts in init
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
            conn_info.want &= ~FUSE_CAP_ATOMIC_O_TRUNC
        if config_3 is not None:
            # Without it libfuse turns the unlink of an open file into a rename to .fuse_hiddenXXX, which a
            # platform without rename answers EXDEV: `rm` of a file someone reads or uploads would fail.
            # The core keeps an unlinked open file usable itself (see FileSystem.unlink).
            config_3.hard_remove = 1
            # Half of what the kernel keeps a listed entry: attributes given with a listing are given again
            # well before the kernel would look the names up itself.
            self._kernel_keeps = max(0.0, min(config_3.entry_timeout, config_3.attr_timeout)) / 2
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

    def opendir(self, path: str) -> int:
        return next(self._folder_handles)

    def releasedir(self, path: str | None, fh: int) -> int:
        with self._folders_lock:
            self._folders.pop(fh, None)
        return 0

    @_errors
    def folder_names(self, path: str, fh: int, fresh: bool) -> tuple[list[str], bool]:
        """The names an open folder lists, taken at its first readdir (and again at a rewind): the kernel
        resumes a long listing at an offset, which must mean the same name however the folder changed.
        And whether to give the kernel their attributes: not while it still holds them from a listing of
        the same names (``ls -l`` again), or every listing would cost a ``getattr`` per name."""
        with self._folders_lock:
            held = None if fresh else self._folders.get(fh)
        if held is not None:
            return held
        names = [".", "..", *self.fs.readdir(path)]
        now = time.monotonic()
        with self._folders_lock:
            given = self._attrs_given.get(path)
            with_attrs = given is None or given[0] != names or now - given[1] >= self._kernel_keeps
            if with_attrs:
                self._attrs_given[path] = (names, now)
            self._folders[fh] = (names, with_attrs)
        return names, with_attrs

    def listed_attrs(self, path: str) -> dict[str, int] | None:
        """A listed entry's attributes if they cost no request; None leaves the kernel to look it up."""
        try:
            attr = self.fs.listed_attr(path)
        except OSError:  # gone since the listing: the kernel's own look-up will say so
            return None
        if attr is None:
            return None
        attrs = attr.as_dict()
        attrs["st_mode"] &= ~self._umask
        return attrs

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
        if not name.startswith(OWN_XATTR_PREFIX):
            # security.selinux and system.posix_acl_access, which `ls -l` asks of every file: ENOTSUP (this
            # namespace is not supported here) rather than ENODATA makes ls stop asking for the rest of the
            # mount, and costs no look-up. The kernel keeps nothing for either answer; ENOSYS would make it
            # stop forwarding every getxattr, the user.* ones included.
            raise FuseOSError(FOREIGN_XATTR_ERRNO)
        value = self._xattrs(path).get(name)
        if value is None:
            raise FuseOSError(NO_XATTR_ERRNO)
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
        self.fs.mkdir(path)
        return 0

    @_errors
    def rmdir(self, path: str) -> int:
        self.fs.rmdir(path)
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
        self.fs.link(source, target)  # fusepy's order: ``target`` is the new name
        return 0

    @_errors
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        answer = self.fs.read(fi.fh, offset, size)
        assert isinstance(answer, bytes)
        return answer

    @_errors
    def read_buf(self, path: str, bufpp: Any, size: int, offset: int, fi: Any) -> int:
        # libfuse calls this instead of read: a block on disk goes back as its cache file's fd and offset,
        # and libfuse moves the bytes itself (where the platform's libfuse takes such answers); anything else
        # as bytes in a malloc'd buffer (libfuse frees it).
        store_bufvec(bufpp, new_bufvec(self.fs.read(fi.fh, offset, size, as_file=READ_BUF_FD)))
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

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:
        """Entries with offsets and, for READDIRPLUS, whole attributes, so one listing answers every
        ``stat`` of ``ls -l`` with no LOOKUP per name. mfusepy's own version fills names at offset 0, which
        libfuse 3 answers with attributes the kernel is told to ignore."""
        ops = self.operations
        if path is None:
            raise FuseOSError(errno.ESTALE)
        folder = path.decode(self.encoding, self.errors)
        names, with_attrs = ops.folder_names(folder, fip.contents.fh, offset == 0)
        plus = with_attrs and FUSE_READDIR_PLUS is not None and bool(flags & FUSE_READDIR_PLUS)
        base = folder.rstrip("/")
        st = c_stat()
        for index in range(offset, len(names)):
            name = names[index]
            ctypes.memset(ctypes.byref(st), 0, ctypes.sizeof(st))
            attrs = ops.listed_attrs(f"{base}/{name}") if plus and index >= 2 else None
            if attrs is not None:
                set_st_attrs(st, attrs, use_ns=True)
            # The offset given with an entry is where the next readdir resumes: the index after it.
            if filler(buf, name.encode(self.encoding, self.errors), st, index + 1,
                      FUSE_FILL_DIR_PLUS if attrs is not None else 0) != 0:
                break
        return 0
