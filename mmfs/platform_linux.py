"""Linux's side of a mount: libfuse 3 and fusermount3, the kernel's mount table, /proc, xattr namespaces,
systemd. ``mmfs.platform`` re-exports exactly ``__all__``; a module for another system implements the same
names (doc/DESIGN.md, "Platform", says what a macOS one would hold).

Nothing here knows the filesystem mmfs serves: callers pass paths and get plain answers back.
"""

from __future__ import annotations

import ctypes.util
import errno
import os
import re
import shutil
import socket
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from mmfs.sd_notify import notify

__all__ = [
    "CONTROL_XATTR",
    "DEAD_MOUNT_ERRNOS",
    "FOREIGN_XATTR_ERRNO",
    "FUSE_CAP_ATOMIC_O_TRUNC",
    "FUSE_FILL_DIR_PLUS",
    "FUSE_MESSAGE_PREFIXES",
    "FUSE_READDIR_PLUS",
    "LIBFUSE_NAME",
    "MMFS_FSTYPE",
    "NAME",
    "NO_XATTR_ERRNO",
    "OWN_XATTR_PREFIX",
    "READ_BUF_FD",
    "MountEntry",
    "detach_hint",
    "fuse_missing",
    "fuse_options",
    "get_xattr",
    "mount_table",
    "notify",
    "parse_mountinfo",
    "peer_uid",
    "read_offset",
    "stderr_is_journal",
    "unmount_command",
    "unmount_helpers",
]

NAME = "linux"

# -- libfuse -----------------------------------------------------------------------------------------------

# The library mfusepy loads (its FUSE_LIBRARY_NAME): libfuse 3, which mfusepy would skip for libfuse 2 when both
# are installed.
LIBFUSE_NAME = "fuse3"
# libfuse 3's fuse_common.h: the connection capability the adapter turns off (see MmfsOperations.init_with_config).
FUSE_CAP_ATOMIC_O_TRUNC = 1 << 3
# fuse_readdir_flags: the kernel asked READDIRPLUS (names with attributes); None where a system has none.
FUSE_READDIR_PLUS: int | None = 1 << 0
# fuse_fill_dir_flags: this entry's attributes are complete.
FUSE_FILL_DIR_PLUS = 1 << 1
# libfuse takes read_buf answers that name a file descriptor and moves the bytes itself (pread or splice).
READ_BUF_FD = True
# The type the kernel's mount table gives a FUSE mount made with subtype "mmfs".
MMFS_FSTYPE = "fuse.mmfs"
# How libfuse's and fusermount3's own messages begin (they write to stderr, which is a daemon child's log).
FUSE_MESSAGE_PREFIXES = ("fuse:", "fusermount:", "fusermount3:", "/dev/fuse")
# What a FUSE mount whose process died answers (ECONNABORTED once its connection was aborted).
DEAD_MOUNT_ERRNOS = frozenset({errno.ENOTCONN, errno.ECONNABORTED})


def fuse_options(threads: int) -> dict[str, object]:
    """libfuse 3's and fusermount3's mount options for a mount served by ``threads`` worker threads."""
    return {
        "subtype": "mmfs",  # the mount table says fuse.mmfs: how mmfs tells its own mounts (MMFS_FSTYPE)
        "default_permissions": True,
        # If this process dies, fusermount3 unmounts for it: no mount left answering ENOTCONN.
        "auto_unmount": True,
        "max_threads": threads,
        # Said explicitly: libfuse 3.14 otherwise prints "Ignoring invalid max threads value 4294967295" on
        # every mount, for its own default of no limit. At most max_threads exist anyway.
        "max_idle_threads": threads,
    }


def _fusermount() -> str:
    return shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"


def fuse_missing() -> str | None:
    """What of FUSE is missing on this machine, in words a user can act on; None when nothing is. libfuse is
    found the way mfusepy will look for it."""
    fix = "install fuse3 (Debian: apt install fuse3)"
    path = os.environ.get("FUSE_LIBRARY_PATH")
    if path:
        return None if os.path.exists(path) else f"FUSE_LIBRARY_PATH={path} does not exist: unset it, or {fix}"
    name = os.environ.get("FUSE_LIBRARY_NAME", LIBFUSE_NAME)
    if not ctypes.util.find_library(name):
        return f"libfuse3 is missing (no lib{name}.so): {fix}"
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return f"fusermount3 is missing: {fix}"
    return None


# -- the mount table -------------------------------------------------------------------------------------


class MountEntry(NamedTuple):
    """One mount of the kernel's table: where, what type (``fuse.mmfs``, ``ext4``), and its source."""

    target: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # Space, tab, newline and backslash appear as octal escapes in the table's fields.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The entries of a /proc/<pid>/mountinfo text, in its order (the last for a target is the topmost)."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        # Field 5 is the mount point; the filesystem type and source follow the "-" that ends the optional fields.
        if len(fields) > 4 and "-" in fields[5:]:
            dash = fields.index("-", 5)
            fstype = fields[dash + 1] if len(fields) > dash + 1 else ""
            source = _unescape(fields[dash + 2]) if len(fields) > dash + 2 else ""
            entries.append(MountEntry(_unescape(fields[4]), fstype, source))
    return entries


def mount_table() -> list[MountEntry]:
    """This process's view of the mounts, read from the kernel without touching any mount (a stat of a dead
    or stopped FUSE mount fails or hangs)."""
    with open("/proc/self/mountinfo") as table:
        return parse_mountinfo(table.read())


def unmount_command(mountpoint: Path, *, lazy: bool = False) -> list[str]:
    """The argv that unmounts a FUSE mount as its user (``lazy``: detach it now, even if busy or dead)."""
    return [_fusermount(), "-u", *(["-z"] if lazy else []), str(mountpoint)]


def detach_hint(mountpoint: Path) -> str:
    """The command a user runs to detach a mount mmfs could not, for messages."""
    return f"fusermount3 -u -z {mountpoint}"


def unmount_helpers(mountpoint: Path) -> list[int]:
    """Pids of live fusermount3 auto-unmount helpers watching ``mountpoint`` (a previous mount's): each
    unmounts by path once its mount's process has gone."""
    target = os.fsencode(os.path.realpath(mountpoint))
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"fusermount3") and target in argv and any(b"auto_unmount" in a for a in argv):
            found.append(int(entry.name))
    return found


# -- extended attributes ---------------------------------------------------------------------------------

# mmfs's own attributes (user.minimax.*, user.mmfs.*) all live in Linux's user namespace.
OWN_XATTR_PREFIX = "user."
# The mount root's attribute naming its control socket: how a command finds the channel whatever --state-dir.
CONTROL_XATTR = "user.mmfs.control"
# For a name outside mmfs's namespace (security.selinux, system.posix_acl_access, which `ls -l` asks of every
# file): "not supported here" makes ls stop asking for the rest of the mount and costs no look-up.
FOREIGN_XATTR_ERRNO = errno.ENOTSUP
# For an mmfs name a file does not have.
NO_XATTR_ERRNO = errno.ENODATA


def get_xattr(path: Path | str, name: str) -> bytes:
    """The value of attribute ``name`` of ``path`` (OSError where it has none, or the mount does not answer)."""
    return os.getxattr(path, name)


# -- processes -------------------------------------------------------------------------------------------


def read_offset(path: str) -> int:
    """How far this process has read ``path``: the largest offset of its descriptors open on it (0 if none),
    from /proc/self/fdinfo."""
    best = 0
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != path:
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("pos:"):
                        best = max(best, int(line.split()[1]))
        except (OSError, ValueError):
            continue
    return best


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid


# -- the service manager (systemd) -----------------------------------------------------------------------
# notify(message, env=None) -> bool: systemd's readiness protocol (mmfs.notify), re-exported above.


def stderr_is_journal(env: Mapping[str, str] | None = None) -> bool:
    """Whether stderr is the journal stream systemd connected (JOURNAL_STREAM names its device and inode)."""
    dev, _, ino = (os.environ if env is None else env).get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
        return bool(dev and ino) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False
