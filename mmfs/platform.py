"""The operating system's side of a mount, chosen by ``sys.platform``: ``mmfs.platform_linux`` on Linux.

Everything mmfs does that depends on the system (the FUSE library and its mount options, the mount table
and how to unmount, /proc, extended attribute names and errnos, the service manager) is asked of this module,
by the names below; a module for another system implements the same names. doc/DESIGN.md, "Platform",
describes each and what a macOS module (macFUSE or FUSE-T) would hold. There is none yet for other systems:
importing this module there says so, naming the module that is missing.
"""

from __future__ import annotations

import sys

_SYSTEM = "linux" if sys.platform.startswith("linux") else {"darwin": "macos", "win32": "windows"}.get(
    sys.platform, sys.platform)

if _SYSTEM != "linux":
    _missing = f"mmfs.platform_{_SYSTEM}"
    raise ModuleNotFoundError(
        f"mmfs has no platform module for {sys.platform} yet: {_missing} is missing (mmfs runs on Linux; "
        f"doc/DESIGN.md, section Platform, lists what {_missing} would hold)", name=_missing)

from mmfs.platform_linux import (  # noqa: E402  (only once the system is known to have a module)
    CONTROL_XATTR,
    DEAD_MOUNT_ERRNOS,
    FOREIGN_XATTR_ERRNO,
    FUSE_CAP_ATOMIC_O_TRUNC,
    FUSE_FILL_DIR_PLUS,
    FUSE_MESSAGE_PREFIXES,
    FUSE_READDIR_PLUS,
    LIBFUSE_NAME,
    MMFS_FSTYPE,
    NAME,
    NO_XATTR_ERRNO,
    OWN_XATTR_PREFIX,
    READ_BUF_FD,
    MountEntry,
    detach_hint,
    fuse_missing,
    fuse_options,
    get_xattr,
    mount_table,
    notify,
    parse_mountinfo,
    peer_uid,
    read_offset,
    stderr_is_journal,
    unmount_command,
    unmount_helpers,
)

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
