"""Folders only the mounting user may enter: the cache and state hold file contents and ids.

mmfs never chmods a folder it did not create. What it creates (a missing ``--cache-dir``, the account's
folder inside it, ``blocks``, ``control``...) is made 0700. A folder that already exists is used as it is,
provided no one else can change what is in it:

* a folder other users can write (mode ``o+w``, or ``g+w`` for a group not the user's own) is refused, with
  the fix, unless it has the sticky bit (as the system's temporary folders do): there others cannot touch
  what is ours, and mmfs keeps its files in its own 0700 folders inside;
* in such a shared folder, an existing entry on the way must belong to the user: a folder another user made
  under the name mmfs would use (to read or swap its files) is refused.

So a shared temporary folder given as ``--cache-dir`` stays 1777, and the cache lives in ``<it>/<account>``
(0700).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from mmfs.errors import MmfsError

__all__ = ["UnsafeFolderError", "make_private_dir"]


class UnsafeFolderError(MmfsError):
    """A folder others could write, or one another user owns where ours should be."""

    errno_code = errno.EACCES


def _others_write(st: os.stat_result) -> bool:
    if st.st_mode & stat.S_IWOTH:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and st.st_gid != os.getegid()


def make_private_dir(path: Path) -> Path:
    """Make sure ``path`` is a folder no one else can change, creating what is missing as 0700 (see the
    module docstring); ``UnsafeFolderError`` with the fix when it cannot be."""
    path = Path(os.path.abspath(path))
    chain = [*reversed(path.parents), path]
    shared = False  # the folder above is writable by others (and sticky)
    for at, folder in enumerate(chain):
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            _create(chain[at:])
            return path
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
        if shared and st.st_uid != os.geteuid():
            raise UnsafeFolderError(f"{folder} belongs to another user (uid {st.st_uid}) in a folder everyone may "
                                    "write: remove it, or give mmfs a folder of its own")
        shared = _others_write(st)
        if shared and not st.st_mode & stat.S_ISVTX:
            raise UnsafeFolderError(f"{folder} can be written by other users: run 'chmod o-w,g-w {folder}', or "
                                    "give mmfs a folder of its own")
    return path


def _create(missing: list[Path]) -> None:
    for folder in missing:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:  # made meanwhile, by another mount of ours or by someone else: check it
            make_private_dir(folder)
            continue
        os.chmod(folder, 0o700)  # ours: made so whatever the umask
