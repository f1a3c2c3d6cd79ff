"""libfuse's ``fuse_bufvec`` for ``read_buf`` answers: bytes in malloc'd memory, or a file descriptor span.

``read_buf`` hands libfuse a ``struct fuse_bufvec *`` that libfuse frees itself once it has replied (its
``fuse_free_buf``: ``free()`` on each memory buffer, then on the vector), so both must come from libc's
``malloc``, never from Python. A buffer flagged ``FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK`` names an fd and a
position instead: libfuse preads (or splices) the bytes itself, with no Python copy and no GIL.

The structs follow libfuse 3's ``fuse_common.h``: the vector holds its first buffer inline (``buf[1]``), which
mfusepy's own ctypes mirror gets wrong (a pointer), so mmfs defines its own. Only one buffer is ever used,
and the allocation is padded, so a newer libfuse with a longer ``fuse_buf`` still reads zeros past ours.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno

from mmfs.blocks.blockfiles import FileSpan

__all__ = ["FUSE_BUF_FD_RETRY", "FUSE_BUF_FD_SEEK", "FUSE_BUF_IS_FD", "FuseBuf", "FuseBufvec", "free_bufvec",
           "new_bufvec", "store_bufvec"]

FUSE_BUF_IS_FD = 1 << 1
FUSE_BUF_FD_SEEK = 1 << 2
FUSE_BUF_FD_RETRY = 1 << 3
_PADDING = 64  # room for fields a later libfuse may have added to fuse_buf

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.calloc.restype = ctypes.c_void_p
_libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.restype = None
_libc.free.argtypes = [ctypes.c_void_p]


class FuseBuf(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("flags", ctypes.c_int),
        ("mem", ctypes.c_void_p),
        ("fd", ctypes.c_int),
        ("pos", ctypes.c_int64),  # off_t: libfuse 3 insists on 64 bits
    ]


class FuseBufvec(ctypes.Structure):
    _fields_ = [
        ("count", ctypes.c_size_t),
        ("idx", ctypes.c_size_t),
        ("off", ctypes.c_size_t),
        ("buf", FuseBuf * 1),
    ]


def new_bufvec(answer: bytes | FileSpan) -> int:
    """A malloc'd one-buffer vector holding ``answer``; its address. The caller hands it to libfuse, which
    frees it (or frees it with ``free_bufvec`` if it never does)."""
    address = _libc.calloc(1, ctypes.sizeof(FuseBufvec) + _PADDING)
    if not address:
        raise OSError(errno.ENOMEM, "no memory for a read buffer")
    vec = FuseBufvec.from_address(address)
    vec.count = 1
    buf = vec.buf[0]
    if isinstance(answer, FileSpan):
        buf.size = answer.length
        buf.flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY
        buf.fd = answer.fd
        buf.pos = answer.offset
        return address
    buf.fd = -1
    buf.size = len(answer)
    if answer:
        mem = _libc.malloc(len(answer))
        if not mem:
            _libc.free(address)
            raise OSError(errno.ENOMEM, "no memory for a read buffer")
        ctypes.memmove(mem, answer, len(answer))
        buf.mem = mem
    return address


def free_bufvec(address: int) -> None:
    """What libfuse's ``fuse_free_buf`` does, for a vector that was never handed over (tests, errors)."""
    vec = FuseBufvec.from_address(address)
    buf = vec.buf[0]
    if not buf.flags & FUSE_BUF_IS_FD and buf.mem:
        _libc.free(buf.mem)
    _libc.free(address)


def store_bufvec(bufpp: object, address: int) -> None:
    """Write the vector's address where libfuse's ``struct fuse_bufvec **bufp`` points."""
    ctypes.cast(bufpp, ctypes.POINTER(ctypes.c_void_p))[0] = address
