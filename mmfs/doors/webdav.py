"""The WebDAV door: the same ``FileSystem`` core the FUSE mount drives, served to WebDAV clients (Finder,
Explorer, GNOME Files, davfs2, rclone) through WsgiDAV, for machines where FUSE is not available.

Like the FUSE adapter this is thin: each WebDAV method becomes the call sequence a program would make on
the mount, so both doors share every rule of doc/SEMANTICS.md.

- GET/HEAD: ``open`` read-only, ``read`` at the asked offsets (Range is WsgiDAV's: it seeks our reader),
  ``release``. Bytes come from the block cache, fetched by Range as on the mount; nothing is held whole.
- PUT: ``create`` (or ``open`` with O_TRUNC), ``write`` chunk by chunk as the body arrives, ``flush`` (which
  uploads and raises the platform's answer, as ``close(2)`` reports it) and ``release``.
- DELETE: ``unlink``. MOVE: ``rename``, with the mount's rename rules. COPY: read and write, as ``cp`` does.
- MKCOL: the core's ``mkdir`` rules (the platform has no folders).
- PROPFIND: ``getattr`` and ``readdir``, plus the file's ``user.minimax.*`` facts as properties in the
  ``urn:mmfs:`` namespace; ETags are file ids (a file's bytes never change under its id).

Errors are the core's errno, mapped once in ``_status``.
"""

from __future__ import annotations

import errno
import io
import mimetypes
import os
import stat
from collections.abc import Callable, Iterable
from typing import TypeVar

from wsgidav.dav_error import (
    HTTP_BAD_GATEWAY,
    HTTP_CONFLICT,
    HTTP_FORBIDDEN,
    HTTP_INSUFFICIENT_STORAGE,
    HTTP_INTERNAL_ERROR,
    HTTP_MEDIATYPE_NOT_SUPPORTED,
    HTTP_METHOD_NOT_ALLOWED,
    HTTP_NOT_FOUND,
    HTTP_PRECONDITION_FAILED,
    HTTP_REQUEST_ENTITY_TOO_LARGE,
    HTTP_SERVICE_UNAVAILABLE,
    DAVError,
)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from mmfs.core.fs import Attr, FileSystem

__all__ = ["MmfsDAVProvider", "dav_status"]

T = TypeVar("T")

# Properties beside the standard ones: the facts `getfattr -d` shows on the mount.
PROP_NS = "urn:mmfs:"

# errno -> HTTP status: what a WebDAV client can act on. EIO is the platform failing after the retries,
# which to an HTTP client is a bad upstream (502), not a bug of this server (500).
_STATUS = {
    errno.ENOENT: HTTP_NOT_FOUND,
    errno.EACCES: HTTP_FORBIDDEN,
    errno.EPERM: HTTP_FORBIDDEN,
    errno.EROFS: HTTP_FORBIDDEN,
    errno.EXDEV: HTTP_FORBIDDEN,
    errno.EINVAL: HTTP_MEDIATYPE_NOT_SUPPORTED,  # a name or format the purpose does not take
    errno.EFBIG: HTTP_REQUEST_ENTITY_TOO_LARGE,
    errno.EDQUOT: HTTP_INSUFFICIENT_STORAGE,
    errno.ENOSPC: HTTP_INSUFFICIENT_STORAGE,
    errno.EEXIST: HTTP_PRECONDITION_FAILED,
    errno.EISDIR: HTTP_METHOD_NOT_ALLOWED,
    errno.ENOTDIR: HTTP_CONFLICT,
    errno.ENOTEMPTY: HTTP_CONFLICT,
    errno.EIO: HTTP_BAD_GATEWAY,
    errno.ETIMEDOUT: HTTP_SERVICE_UNAVAILABLE,
    errno.EAGAIN: HTTP_SERVICE_UNAVAILABLE,
}


def dav_status(code: int | None) -> int:
    """The HTTP status a WebDAV client gets for a core error's errno."""
    return _STATUS.get(code or errno.EIO, HTTP_INTERNAL_ERROR)


def _errno(exc: OSError) -> int | None:
    return getattr(exc, "errno_code", None) or exc.errno


def _core(call: Callable[[], T]) -> T:
    """Run one core call; its OSError becomes the DAVError of its errno, with the core's one-line reason."""
    try:
        return call()
    except DAVError:
        raise
    except OSError as exc:
        raise DAVError(dav_status(_errno(exc)), context_info=str(exc)) from None


class _Reader(io.RawIOBase):
    """A read-only descriptor on the core, as a file object WsgiDAV can seek and read for GET and Range."""

    def __init__(self, fs: FileSystem, path: str) -> None:
        super().__init__()
        self._fs = fs
        self._fh = _core(lambda: fs.open(path, os.O_RDONLY)).fh
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only absolute seeks")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        size = 1 << 20 if size is None or size < 0 else size
        data = bytes(_core(lambda: self._fs.read(self._fh, self._pos, size)))  # type: ignore[arg-type]
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            fh, self._fh = self._fh, None
            if fh is not None:
                self._fs.release(fh)
        super().close()


class _Writer:
    """A write descriptor on the core for one PUT: the body's chunks in order, then close = flush + release,
    where the upload happens and its refusal is reported."""

    def __init__(self, fs: FileSystem, path: str, *, exists: bool) -> None:
        self._fs = fs
        flags = os.O_WRONLY | os.O_TRUNC
        opened = _core(lambda: fs.open(path, flags) if exists else fs.create(path, flags | os.O_CREAT))
        self._fh: int | None = opened.fh
        self._offset = 0
        if exists:
            # The kernel's sequence for O_TRUNC on the mount: the open, then a truncate to 0 by path.
            try:
                _core(lambda: fs.truncate(path, 0))
            except BaseException:
                self.abort()
                raise

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write(self, data: bytes) -> int:
        assert self._fh is not None
        fh, offset = self._fh, self._offset
        written = _core(lambda: self._fs.write(fh, data, offset))
        self._offset += written
        return written

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            _core(lambda: self._fs.flush(fh))
        finally:
            self._fs.release(fh)

    def abort(self) -> None:
        """The body broke off: let go of the descriptor without uploading what came (a client retries)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            self._fs.release(fh)


class _File(DAVNonCollection):
    def __init__(self, path: str, environ: dict, fs: FileSystem, attr: Attr | None) -> None:
        super().__init__(path, environ)
        self._fs = fs
        self._exists = attr is not None
        self._attr = attr
        self._writer: _Writer | None = None

    def _facts(self) -> dict[str, bytes]:
        """The file's xattrs by their last part (``user.minimax.file_id`` -> ``file_id``, ``user.mmfs.state``
        -> ``state``): the properties of the ``urn:mmfs:`` namespace."""
        xattrs = _core(lambda: self._fs.xattrs(self.path)) if self._exists else {}
        return {name.rsplit(".", 1)[-1]: value for name, value in xattrs.items()}

    def get_content_length(self) -> int:
        return self._attr.size if self._attr else 0

    def get_content_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    def get_creation_date(self) -> float | None:
        return self._attr.mtime_ns / 1e9 if self._attr else None

    def get_last_modified(self) -> float | None:
        return self.get_creation_date()

    def get_etag(self) -> str | None:
        file_id = self._facts().get("file_id")
        return file_id.decode() if file_id else None

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> _Reader:
        return _Reader(self._fs, self.path)

    def begin_write(self, *, content_type: str | None = None) -> _Writer:
        self._writer = _Writer(self._fs, self.path, exists=self._exists)
        return self._writer

    def end_write(self, *, with_errors: bool) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and with_errors:
            writer.abort()
        self._exists = True

    def delete(self) -> None:
        _core(lambda: self._fs.unlink(self.path))
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> None:
        _core(lambda: self._fs.rename(self.path, dest_path))

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        if is_move:
            self.move_recursive(dest_path)
            return
        exists = _exists(self._fs, dest_path)
        with self.get_content() as src:
            writer = _Writer(self._fs, dest_path, exists=exists)
            try:
                while chunk := src.read(1 << 20):
                    writer.write(chunk)
            except BaseException:
                writer.abort()
                raise
            writer.close()

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names = super().get_property_names(is_allprop=is_allprop)
        return names + ["{" + PROP_NS + "}" + key for key in self._facts()]

    def get_property_value(self, name: str):  # type: ignore[no-untyped-def]
        if name.startswith("{" + PROP_NS + "}"):
            value = self._facts().get(name.split("}", 1)[1])
            if value is None:
                raise DAVError(HTTP_NOT_FOUND)
            return value.decode("utf-8", "replace")
        return super().get_property_value(name)


class _Folder(DAVCollection):
    def __init__(self, path: str, environ: dict, fs: FileSystem, attr: Attr) -> None:
        super().__init__(path, environ)
        self._fs = fs
        self._attr = attr

    def get_creation_date(self) -> float:
        return self._attr.mtime_ns / 1e9

    def get_last_modified(self) -> float:
        return self.get_creation_date()

    def get_member_names(self) -> list[str]:
        return _core(lambda: self._fs.readdir(self.path))

    def get_member(self, name: str) -> _File | _Folder | None:
        return _resource(self._fs, self.path.rstrip("/") + "/" + name, self.environ)

    def create_empty_resource(self, name: str) -> _File:
        # As `touch` on the mount: an empty local file, visible at once (a LOCK of a new name must find it),
        # uploaded only when a PUT gives it bytes (the platform refuses empty files).
        path = self.path.rstrip("/") + "/" + name
        _Writer(self._fs, path, exists=False).close()
        return _File(path, self.environ, self._fs, _core(lambda: self._fs.getattr(path)))

    def create_collection(self, name: str) -> None:
        _core(lambda: self._fs.refuse("mkdir"))

    def delete(self) -> None:
        _core(lambda: self._fs.refuse("rmdir"))

    def support_recursive_move(self, dest_path: str) -> bool:
        return False

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        _core(lambda: self._fs.refuse("rename of a folder" if is_move else "mkdir"))


def _exists(fs: FileSystem, path: str) -> bool:
    try:
        fs.getattr(path)
    except OSError as exc:
        if _errno(exc) == errno.ENOENT:
            return False
        raise
    return True


def _resource(fs: FileSystem, path: str, environ: dict) -> _File | _Folder | None:
    try:
        attr = fs.getattr(path)
    except OSError as exc:
        if _errno(exc) == errno.ENOENT:
            return None
        raise DAVError(dav_status(_errno(exc)), context_info=str(exc)) from None
    if stat.S_ISDIR(attr.mode):
        return _Folder(path, environ, fs, attr)
    return _File(path, environ, fs, attr)


class MmfsDAVProvider(DAVProvider):
    """Every path of the mount, as WebDAV resources over one ``FileSystem``."""

    def __init__(self, fs: FileSystem, *, read_only: bool = False) -> None:
        super().__init__()
        self.fs = fs
        self._read_only = read_only

    def is_readonly(self) -> bool:
        return self._read_only

    def get_resource_inst(self, path: str, environ: dict) -> _File | _Folder | None:
        self._count_get_resource_inst += 1
        return _resource(self.fs, path or "/", environ)
