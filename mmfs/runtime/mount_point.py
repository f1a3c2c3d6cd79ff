"""The mount point as the kernel's mount table sees it: is something mounted, is it alive, may we mount here,
clear what a killed mount left behind, and unmount. Nothing here knows the filesystem it mounts."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from mmfs.errors import MmfsError
from mmfs.platform import (
    DEAD_MOUNT_ERRNOS,
    MMFS_FSTYPE,
    detach_hint,
    fuse_missing,
    mount_table,
    unmount_command,
    unmount_helpers,
)

__all__ = [
    "MountError",
    "check_libfuse",
    "check_mount_point",
    "clear_stale_mount",
    "is_live_mount",
    "is_mount_point",
    "unmount",
]

log = logging.getLogger("mmfs.mount")

# How long a dead mount's own auto-unmount helper gets before we clear the mount ourselves.
_STALE_GRACE = 3.0
# How long a mount point already mounted has to answer a listing before it counts as stuck.
_PROBE_TIMEOUT = 5.0
# Lists one folder; the exit code is the errno (0: it answered).
_LIST_ONE_FOLDER = (
    "import os, sys\n"
    "try:\n"
    "    os.listdir(os.fsencode(sys.argv[1]))\n"
    "except OSError as exc:\n"
    "    sys.exit(exc.errno or 255)\n"
)


class MountError(MmfsError):
    """The mount could not start; the message says why in words a user can act on."""


def _mount_entry(path: Path, resolved: bool = False) -> tuple[str, str] | None:
    """(fstype, source) of the topmost mount on ``path``, from the kernel's table; None if nothing is mounted
    there. ``os.path.ismount`` stats the folder, which on a dead FUSE mount answers from cached attributes
    or fails, depending on timing. ``resolved``: ``path`` is already absolute and free of symlinks, and is
    not to be touched (resolving it stats the mount's root)."""
    if resolved:
        return _table_entry(str(path))
    # The folder's parent resolved, the folder itself untouched: stat-ing a mount point asks the mount,
    # which may be stopped or stuck. Only a name that is not in the table (a symlink, say) is resolved whole.
    absolute = os.path.abspath(path)
    parent, name = os.path.split(absolute)
    found = _table_entry(os.path.join(os.path.realpath(parent), name))
    return found if found is not None else _table_entry(os.path.realpath(path))


def _table_entry(target: str) -> tuple[str, str] | None:
    found = None
    for entry in mount_table():
        if entry.target == target:  # the last one is the topmost
            found = (entry.fstype, entry.source)
    return found


def is_mount_point(path: Path, *, resolved: bool = False) -> bool:
    """Whether something is mounted on ``path``. The mount's own process passes ``resolved``: a thread of a
    FUSE server must never wait on its own mount, since a SIGKILL in that wait leaves a process that cannot
    die and a mount that answers nothing."""
    try:
        return _mount_entry(path, resolved) is not None
    except OSError:
        return False if resolved else os.path.ismount(path)


def is_live_mount(path: Path) -> bool:
    """Mounted and answering: listing the root always reaches the filesystem (nothing cached answers)."""
    if not is_mount_point(path):
        return False
    try:
        os.listdir(path)
    except OSError:
        return False
    return True


def _wait_unmounted(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_mount_point(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_for_helpers(mountpoint: Path, timeout: float) -> None:
    """A previous mount's auto-unmount helper that is still winding down would unmount by path, so it
    could take down the mount we are about to make: let it finish first."""
    deadline = time.monotonic() + timeout
    while unmount_helpers(mountpoint) and time.monotonic() < deadline:
        time.sleep(0.02)


def _is_dead_mount(mountpoint: Path) -> bool:
    """For a mount point with something mounted on it: whether its process died. Any other failure to list
    it means the folder cannot be used at all.

    The listing is made by a child process with a deadline: a mount whose server lives but does not answer
    (stopped, or stuck) would hang this process for good, and a thread waiting on a FUSE request that its
    server has taken cannot even be killed."""
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _LIST_ONE_FOLDER, os.fsencode(mountpoint)],
                              capture_output=True, timeout=_PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise MountError(f"{mountpoint} is a mount that does not answer (its process is stopped or stuck); "
                         f"detach it with: {detach_hint(mountpoint)}") from None
    code = done.returncode
    if code == 0:
        return False
    if code in DEAD_MOUNT_ERRNOS:
        return True
    reason = os.strerror(code) if 0 < code < 128 else f"listing it failed ({code})"
    raise MountError(f"cannot use mount point {mountpoint}: {reason}")


def _already_mounted(mountpoint: Path) -> MountError:
    return MountError(f"{mountpoint} is already a mount point (unmount it first: mmfs unmount {mountpoint})")


def clear_stale_mount(mountpoint: Path) -> None:
    """A FUSE mount whose process died answers ENOTCONN ("Transport endpoint is not connected")
    until it is lazily unmounted; do that, so the next mount on the same point just works."""
    if not is_mount_point(mountpoint):
        _wait_for_helpers(mountpoint, _STALE_GRACE)
        return
    if _is_dead_mount(mountpoint):
        # A mount made with auto_unmount is taken down by its helper (fusermount3's) within moments of its
        # process dying. Let a live helper finish first: unmounting it ourselves and mounting again races
        # the helper, which would then detach the new mount instead of the dead one. A dead helper (the
        # whole process group was killed) will never do it: clear at once.
        if unmount_helpers(mountpoint) and _wait_unmounted(mountpoint, _STALE_GRACE):
            _wait_for_helpers(mountpoint, _STALE_GRACE)
            return
        log.info("clearing a dead mount on %s", mountpoint)
        subprocess.run(unmount_command(mountpoint, lazy=True), check=False, capture_output=True)
        if not _wait_unmounted(mountpoint, _STALE_GRACE):
            raise MountError(f"cannot clear the dead mount on {mountpoint}; try: {detach_hint(mountpoint)}") from None
        _wait_for_helpers(mountpoint, _STALE_GRACE)
        return
    raise _already_mounted(mountpoint)


def check_mount_point(mountpoint: Path, *, allow_non_empty: bool = False) -> None:
    """Refuse a mount point that is missing, not a folder, already mounted, or (unless ``allow_non_empty``)
    not empty: mounting would hide its files. A dead mount passes: ``mount`` clears it."""
    if is_mount_point(mountpoint):
        if _is_dead_mount(mountpoint):
            return
        raise _already_mounted(mountpoint)
    try:
        is_dir = stat.S_ISDIR(os.stat(mountpoint).st_mode)
        empty = not is_dir or not os.listdir(mountpoint)
    except FileNotFoundError:
        raise MountError(f"mount point {mountpoint} does not exist (create it: mkdir -p {mountpoint})") from None
    except OSError as exc:
        raise MountError(f"cannot use mount point {mountpoint}: {exc.strerror}") from None
    if not is_dir:
        raise MountError(f"mount point {mountpoint} is not a folder (mount on an empty folder)")
    if not (empty or allow_non_empty):
        raise MountError(f"mount point {mountpoint} is not empty: mounting would hide its files "
                         "(use an empty folder, or --allow-non-empty)")


def check_libfuse() -> None:
    """Fail before anything else when the system's FUSE (libfuse 3, fusermount3 on Linux) is missing."""
    missing = fuse_missing()
    if missing:
        raise MountError(missing)


def unmount(mountpoint: Path, *, lazy: bool = False) -> None:
    """Unmount an mmfs mount; anything else mounted there is refused, not unmounted."""
    entry = _mount_entry(mountpoint)
    if entry is None:
        raise MountError(f"{mountpoint} is not mounted")
    if entry[0] != MMFS_FSTYPE:
        raise MountError(f"{mountpoint} is not an mmfs mount (it is {entry[0]}): not unmounting it")
    done = subprocess.run(unmount_command(mountpoint, lazy=lazy), check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise MountError(f"unmounting {mountpoint} failed: {done.stderr.strip() or done.returncode}")

