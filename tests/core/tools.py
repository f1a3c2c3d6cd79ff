"""The calls real programs make, as the kernel hands them to the filesystem (atomic O_TRUNC is off, so an
``O_TRUNC`` open arrives as an open followed by ``truncate(path, 0)``; every ``close`` is a ``flush``, and
the last close of an open file is also a ``release``)."""

from __future__ import annotations

import os

from mmfs.core.fs import FileSystem
from mmfs.errors import NotFoundError

CHUNK = 128 << 10  # the kernel's write size with big writes, as cp and dd send them


def exists(fs: FileSystem, path: str) -> bool:
    try:
        fs.getattr(path)
    except NotFoundError:
        return False
    return True


def open_for_writing(fs: FileSystem, path: str, *, truncate: bool, append: bool = False) -> int:
    """``open(path, O_WRONLY|O_CREAT[|O_TRUNC|O_APPEND])``: create if missing, else open and truncate."""
    if not exists(fs, path):
        return fs.create(path).fh
    fh = fs.open(path, os.O_WRONLY | (os.O_APPEND if append else 0)).fh
    if truncate:
        fs.truncate(path, 0)
    return fh


def write_all(fs: FileSystem, fh: int, data: bytes, offset: int = 0, chunk: int = CHUNK) -> None:
    for start in range(0, len(data), chunk):
        assert fs.write(fh, data[start:start + chunk], offset + start) == len(data[start:start + chunk])


def close(fs: FileSystem, fh: int) -> None:
    try:
        fs.flush(fh)
    finally:
        fs.release(fh)


def shell_redirect(fs: FileSystem, path: str, data: bytes, *, append: bool = False) -> None:
    """``sh -c 'echo … > f'`` (or ``>>``): open on fd 3, ``dup2(3, 1)`` and ``close(3)`` (a flush with
    nothing written yet), the write, then the shell's exit closes fd 1."""
    fh = open_for_writing(fs, path, truncate=not append, append=append)
    fs.flush(fh)
    offset = fs.getattr(path).size if append else 0
    fs.write(fh, data, offset)
    close(fs, fh)


def copy_in(fs: FileSystem, path: str, data: bytes, *, preserve: bool = False) -> None:
    """``cp src f`` / ``cat src > f`` / ``dd if=src of=f``; with ``preserve``, ``cp -a``: owner, times and
    mode set on the open descriptor before it is closed."""
    fh = open_for_writing(fs, path, truncate=True)
    write_all(fs, fh, data)
    if preserve:
        fs.accept_metadata(path)  # fchown
        fs.utimens(path, 1_700_000_000 * 10**9)  # futimens
        fs.accept_metadata(path)  # fchmod
    close(fs, fh)


def read_all(fs: FileSystem, path: str) -> bytes:
    fh = fs.open(path, os.O_RDONLY).fh
    try:
        pieces, offset = [], 0
        while piece := fs.read(fh, offset, CHUNK):
            pieces.append(piece)
            offset += len(piece)
        return b"".join(pieces)
    finally:
        close(fs, fh)


def sed_in_place(fs: FileSystem, path: str, old: bytes, new: bytes) -> None:
    """``sed -i s/old/new/ f``: read f, write ``sedXXXXXX`` beside it (fchown, fchmod on it), close, rename."""
    text = read_all(fs, path)
    temp = f"{path.rsplit('/', 1)[0]}/sedAb12Cd"
    fh = fs.create(temp).fh
    fs.accept_metadata(temp)
    fs.accept_metadata(temp)
    write_all(fs, fh, text.replace(old, new))
    close(fs, fh)
    fs.rename(temp, path)


def rsync(fs: FileSystem, path: str, data: bytes, *, archive: bool = False) -> None:
    """``rsync src dir/`` writes ``.name.XXXXXX``, closes it, sets its mode (and with ``-a`` owner and
    times), then renames it over the name."""
    folder, name = path.rsplit("/", 1)
    temp = f"{folder}/.{name}.Xy12Ab"
    fh = fs.create(temp).fh
    write_all(fs, fh, data)
    close(fs, fh)
    if archive:
        fs.accept_metadata(temp)
        fs.utimens(temp, 1_700_000_000 * 10**9)
    fs.accept_metadata(temp)
    fs.rename(temp, path)


def atomic_save(fs: FileSystem, path: str, data: bytes, suffix: str = ".tmp") -> None:
    """An editor's or Python's atomic save: write ``f.tmp``, fsync, close, rename over ``f``."""
    temp = path + suffix
    fh = fs.create(temp).fh
    write_all(fs, fh, data)
    close(fs, fh)
    fs.rename(temp, path)
